"""TypiClust against a brute-force numpy reference (float64, dense distances, plain loops)."""

import importlib
import jax
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal.acquisition.base import PoolView

# The module (the package may export a function of the same name).
tc = importlib.import_module("jaxal.acquisition.typiclust")


def reference(x, labeled, assign, budget, knn=20, min_size=5):
  """The module docstring's definition, one pick at a time: `(picks, clusters, mean K-NN distance)`."""
  x = np.asarray(x, np.float64)
  n, k = len(x), int(assign.max()) + 1
  size = np.bincount(assign, minlength=k)
  mean = np.full(n, np.inf)
  for c in range(k):
    idx = np.flatnonzero(assign == c)
    if idx.size:
      d = np.sqrt(((x[idx, None] - x[None, idx]) ** 2).sum(-1))
      np.fill_diagonal(d, np.inf)
      mean[idx] = np.sort(d, 1)[:, :max(1, min(knn, idx.size - 1))].mean(1)
  represented = np.bincount(assign[labeled], minlength=k)
  left = size - represented
  taken = labeled.copy()
  picks, seq = [], []
  for _ in range(budget):
    open_ = [c for c in range(k) if left[c] > 0]
    c = min([c for c in open_ if size[c] > min_size] or open_, key=lambda c: (represented[c], -size[c], c))
    idx = np.flatnonzero((assign == c) & ~taken)
    p = idx[np.argmin(mean[idx])]
    picks.append(p), seq.append(c)
    taken[p] = True
    represented[c] += 1
    left[c] -= 1
  return np.array(picks), np.array(seq), mean


def blobs(rng, n, d, centers):
  c = rng.integers(0, centers, n)
  return (rng.normal(size=(centers, d))[c] * 3 + rng.normal(size=(n, d))).astype(np.float32)


def assert_same_picks(x, labeled, assign, picks, budget, **kw):
  """Same clusters in the same order; each pick is a most typical remaining point (ties allowed)."""
  ref_picks, ref_seq, ref_mean = reference(x, labeled, assign, budget, **kw)
  np.testing.assert_array_equal(assign[picks], ref_seq)
  taken = labeled.copy()
  for p, c in zip(picks, ref_seq):
    assert not taken[p]
    remaining = np.flatnonzero((assign == c) & ~taken)
    assert ref_mean[p] <= ref_mean[remaining].min() * (1 + 1e-5)
    taken[p] = True
  return ref_picks, ref_mean


@pytest.mark.parametrize("seed", [0, 1])
def test_select_equals_reference(seed):
  rng = np.random.default_rng(seed)
  n = 600
  x = blobs(rng, n, 8, 5)
  assign = rng.integers(0, 12, n).astype(np.int32)
  assign[:4] = 12  # a cluster of 4 points: visited last
  assign[4:6] = 13  # a cluster of 2 points: K = 1
  assign[6:16] = 14  # 10 points: K = 9
  labeled = np.zeros(n, bool)
  labeled[rng.choice(n, 25, replace=False)] = True
  budget = 40  # more than the uncovered clusters: clusters are revisited
  picks, mean = tc.typiclust_select(x, labeled, assign, budget, block=64, with_scores=True)
  ref_picks, ref_mean = assert_same_picks(x, labeled, assign, picks, budget)
  np.testing.assert_array_equal(picks, ref_picks)  # no near-ties on these inputs
  visited = np.isfinite(mean)
  np.testing.assert_allclose(mean[visited], ref_mean[visited], rtol=1e-5)
  assert set(np.unique(assign[visited])) == set(assign[picks])


def test_end_to_end_and_acquire_under_transfer_guard():
  rng = np.random.default_rng(2)
  n = 400
  x = blobs(rng, n, 6, 8)
  labeled = np.zeros(n, bool)
  labeled[:5] = True
  picks, assign = tc.typiclust(x, labeled, 12, jax.random.key(0), kmeans_iters=5, with_clusters=True)
  assert assign.max() < 17 and len(set(picks.tolist())) == 12
  xn = x / np.linalg.norm(x, axis=1, keepdims=True)
  assert_same_picks(xn, labeled, assign, picks, 12)

  class Fake:  # what PoolView.predictor offers
    def outputs(self):
      return logits, emb
  selectable = ~labeled
  selectable[5:30] = False  # held out: neither labeled nor selectable
  logits, emb = jax.device_put((np.zeros((n, 3), np.float32), x))
  view = PoolView(labeled, selectable, Fake(), dict(tc.DEFAULTS, typiclust_kmeans_iters=5))
  key = jax.random.key(0)
  with jax.transfer_guard("disallow"):
    got = tc.typiclust_acquire(view, 12, key)
  rows = np.flatnonzero(labeled | selectable)
  expect = tc.typiclust(x[rows], labeled[rows], 12, jax.random.key(0), kmeans_iters=5)
  np.testing.assert_array_equal(got, rows[expect])
  assert selectable[got].all()
  emb = emb.at[7].set(np.nan)
  with pytest.raises(FloatingPointError, match="typiclust: the embeddings hold NaN"):
    tc.typiclust_acquire(view, 12, key)


@pytest.mark.parametrize("key,value", [("typiclust_knn", 0), ("typiclust_max_clusters", 2.5),
                                       ("typiclust_min_cluster_size", -1), ("typiclust_normalize", "yes")])
def test_validate_names_the_option(key, value):
  with pytest.raises(config_lib.ConfigError, match=f"acquisition.options.{key}:"):
    tc.validate({**tc.DEFAULTS, key: value})
  tc.validate(dict(tc.DEFAULTS))
