"""ProbCover against brute-force numpy references (float64, dense n x n distances)."""

import importlib
import jax
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal.acquisition.base import PoolView

# The module (the package may export a function of the same name).
pc = importlib.import_module("jaxal.acquisition.probcover")


def distances(x):
  x = np.asarray(x, np.float64)
  return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))


def purity_reference(x, clusters, alpha, step):
  """scikit-activeml's loop: grid deltas upwards, stop when purity drops below alpha."""
  d = distances(x)
  impure = clusters[:, None] != clusters[None]
  purity = lambda delta: 1 - ((d <= delta) & impure).any(1).mean()
  best, g = round(step, 12), 1
  while purity(round(step * g, 12)) >= alpha:
    best, g = round(step * g, 12), g + 1
  return best, purity(best)


def greedy_reference(x, labeled, budget, delta):
  """The plain greedy on the dense ball graph; ties to the lower index."""
  edges = distances(x) <= delta
  covered = edges[labeled].any(0)
  candidate = ~labeled
  picks = []
  for _ in range(budget):
    p = int(np.argmax(np.where(candidate, (edges & ~covered).sum(1), -1)))
    picks.append(p)
    candidate[p] = False
    covered |= edges[p]
  return np.array(picks)


def clustered(seed, n=400, d=16, centers=6):
  rng = np.random.default_rng(seed)
  c = rng.integers(0, centers, n)
  x = rng.normal(size=(centers, d))[c] * 2 + rng.normal(size=(n, d))
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  labeled = np.zeros(n, bool)
  labeled[rng.choice(n, 8, replace=False)] = True
  return x.astype(np.float32), c, labeled


def far_from_grid(x, deltas):
  """Float32 and float64 agree on every ball only if no distance sits on a radius."""
  d = distances(x)
  return all(np.abs(d - delta).min() > 1e-5 for delta in deltas)


@pytest.mark.parametrize("seed,alpha", [(0, 0.9), (1, 0.95)])
def test_purity_radius_equals_reference(seed, alpha):
  x, c, _ = clustered(seed)
  got = pc.purity_radius(x, c, alpha=alpha, step=0.05, block=48)
  want = purity_reference(x, c, alpha, 0.05)
  assert got[0] == want[0] and abs(got[1] - want[1]) < 1e-12, (got, want)
  assert 0.05 < got[0] < 1.9  # a real choice, neither end of the grid


@pytest.mark.parametrize("seed,lookahead", [(0, 1), (3, 8)])
def test_greedy_equals_reference(seed, lookahead):
  x, c, labeled = clustered(seed)
  delta = pc.purity_radius(x, c, alpha=0.9, step=0.05)[0]
  assert far_from_grid(x, [delta])
  budget = 150  # past full coverage: then every gain is 0 and picks go in index order
  got = pc.probcover(x, labeled, budget, delta=delta, block=48, lookahead=lookahead)
  np.testing.assert_array_equal(got, greedy_reference(x, labeled, budget, delta))


def test_acquire_under_transfer_guard_skips_held_out_rows():
  x, _, labeled = clustered(5, n=300)
  selectable = ~labeled
  selectable[:40] = False  # held out: not in the graph
  labeled[:40] = False

  class Fake:  # what PoolView.predictor offers
    def outputs(self):
      return logits, emb
  logits, emb = jax.device_put((np.zeros((300, 6), np.float32), x))
  view = PoolView(labeled, selectable, Fake(), dict(pc.DEFAULTS, probcover_kmeans_iters=5))
  key = jax.random.key(0)
  with jax.transfer_guard("disallow"):
    got = pc.probcover_acquire(view, 10, key)
  rows = np.arange(40, 300)
  picks, delta = pc.probcover_full(x[rows], labeled[rows], 10, key, num_clusters=6, kmeans_iters=5)
  np.testing.assert_array_equal(got, rows[picks])
  np.testing.assert_array_equal(picks, greedy_reference(x[rows], labeled[rows], 10, delta))
  emb = emb.at[50].set(np.inf)
  with pytest.raises(FloatingPointError, match="probcover: the embeddings hold NaN or inf"):
    pc.probcover_acquire(view, 10, key)


@pytest.mark.parametrize("key,value", [("probcover_alpha", 1.0), ("probcover_delta", -0.1),
                                       ("probcover_delta_step", 0), ("probcover_clusters", 1),
                                       ("probcover_normalize", None)])
def test_validate_names_the_option(key, value):
  with pytest.raises(config_lib.ConfigError, match=f"acquisition.options.{key}:"):
    pc.validate({**pc.DEFAULTS, key: value})
  pc.validate(dict(pc.DEFAULTS))
