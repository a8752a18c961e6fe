"""Stochastic batch acquisition and class-balanced selection against numpy references.

The Gumbel noise is re-drawn here row by row with the public `jax.random` calls and the draw
is redone in float64 numpy, so the picks must match exactly. JAX fixes its device count at
start-up, so the 8-device check runs in a subprocess.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import rankdata

from jaxal import config as config_lib
from jaxal.acquisition import class_balance, stochastic
from jaxal.acquisition.base import PoolView
from tests.conftest import run_on_host_devices


def numpy_gumbel(key, n):
  """Row `i`'s noise from `fold_in(key, i)`, one public `jax.random` call per row, in float64."""
  tiny = np.finfo(np.float32).tiny
  u = np.array([float(jax.random.uniform(jax.random.fold_in(key, i), (), jnp.float32, tiny, 1.0)) for i in range(n)])
  return -np.log(-np.log(u))


def numpy_draw(scores, mask, budget, noise, mode, temperature):
  s = np.asarray(scores, np.float64)
  beta = 1.0 / temperature
  if mode == "power":
    logw = beta * np.log(np.maximum(s, stochastic.POWER_FLOOR))
  elif mode == "softmax":
    logw = beta * s
  else:
    logw = np.zeros_like(s)
    logw[mask] = -beta * np.log(rankdata(-s[mask]))  # average ranks of the selectable scores
  keyed = np.where(mask, logw + noise, -np.inf)
  return np.argsort(-keyed, kind="stable")[:budget]


def test_gumbel_top_k_equals_numpy_draw():
  rng = np.random.default_rng(0)
  n = 240
  key = jax.random.key(7)
  noise = numpy_gumbel(key, n)
  scores = rng.random(n).astype(np.float32)
  scores[:20] = 0.0  # power: clipped at POWER_FLOOR
  scores[20:30] = -0.5
  scores[30:60] = np.round(scores[30:60], 1)  # ties for softrank
  mask = rng.random(n) < 0.8
  for mode, temperature in itertools.product(stochastic.MODES, (0.5, 3.0)):
    got = stochastic.stochastic_top_k(scores, mask, 50, key, mode=mode, temperature=temperature)
    want = numpy_draw(scores, mask, 50, noise, mode, temperature)
    np.testing.assert_array_equal(got, want, err_msg=f"{mode} T={temperature}")
    assert mask[got].all() and len(set(got.tolist())) == 50


def exact_inclusion(weights, budget):
  """P(i in sample) for sequential sampling without replacement, by enumerating every order."""
  weights = np.asarray(weights, np.float64)
  prob = np.zeros(len(weights))
  for order in itertools.permutations(range(len(weights)), budget):
    p, left = 1.0, weights.sum()
    for i in order:
      p *= weights[i] / left
      left -= weights[i]
    prob[list(order)] += p
  return prob


@pytest.mark.parametrize("mode", stochastic.MODES)
def test_inclusion_frequencies_match_the_target_distribution(mode):
  scores = np.array([0.9, 0.5, 0.2, 0.05, 0.5], np.float32)
  mask = np.array([True, True, True, True, False])
  temperature = 0.5
  beta = 1 / temperature
  weights = {"power": scores[:4] ** beta, "softmax": np.exp(beta * scores[:4]),
             "softrank": rankdata(-scores[:4]) ** -beta}[mode]
  want = exact_inclusion(weights, 2)
  draws = 20000
  keys = jax.random.split(jax.random.key(1), draws)
  noisy = jax.vmap(lambda k: stochastic.perturbed_scores(jnp.asarray(scores), jnp.asarray(mask), k, mode=mode,
                                                         temperature=temperature)[0])(keys)
  picks = np.argsort(-np.asarray(noisy), axis=1, kind="stable")[:, :2]
  freq = np.bincount(picks.ravel(), minlength=5) / draws
  assert freq[4] == 0
  np.testing.assert_allclose(freq[:4], want, atol=4 * np.sqrt(0.25 / draws))


def test_padding_and_host_or_device_scores_give_the_same_picks():
  rng = np.random.default_rng(1)
  scores = rng.random(301).astype(np.float32)
  mask = rng.random(301) < 0.9
  key = jax.random.key(3)
  want = stochastic.stochastic_top_k(scores, mask, 40, key, mode="softrank")
  padded = np.concatenate([scores, np.ones(3, np.float32)])
  got = stochastic.stochastic_top_k(jnp.asarray(padded), np.concatenate([mask, np.zeros(3, bool)]), 40, key,
                                    mode="softrank")
  np.testing.assert_array_equal(got, want)


def test_bad_input_is_refused():
  scores = np.array([0.1, np.nan, 0.3], np.float32)
  with pytest.raises(FloatingPointError):
    stochastic.stochastic_top_k(scores, np.ones(3, bool), 2, jax.random.key(0), mode="power")
  with pytest.raises(ValueError, match="exceeds the 2 selectable"):
    stochastic.stochastic_top_k(np.ones(3), np.array([1, 1, 0], bool), 3, jax.random.key(0), mode="power")
  for options, field in (({"stochastic": "gibbs"}, "stochastic"), ({"temperature": 0.0}, "temperature"),
                         ({"temperature": "1"}, "temperature"), ({"class_balanced": 1}, "class_balanced")):
    with pytest.raises(config_lib.ConfigError, match=f"acquisition.options.{field}:"):
      stochastic.validate(options)
  stochastic.validate(dict(stochastic.DEFAULTS))


def numpy_round_robin(scores, classes, mask, budget):
  """The rule literally: each round, every class's best remaining point; highest score first."""
  remaining = {c: sorted(np.flatnonzero(mask & (classes == c)), key=lambda i: (-scores[i], i)) for c in set(classes)}
  picks = []
  while len(picks) < budget:
    heads = sorted((remaining[c].pop(0) for c in remaining if remaining[c]), key=lambda i: (-scores[i], i))
    picks.extend(heads[:budget - len(picks)])
  return np.array(picks)


def test_class_balanced_equals_round_robin_reference():
  rng = np.random.default_rng(2)
  for trial in range(4):
    n, num_classes = 200, 5
    scores = rng.integers(0, 6, n).astype(np.float32)  # many exact ties
    classes = rng.choice(num_classes, n, p=[0.6, 0.25, 0.1, 0.04, 0.01])
    mask = rng.random(n) < 0.85
    budget = [7, 30, 60, int(mask.sum())][trial]
    got = class_balance.class_balanced_top_k(scores, classes, mask, budget, num_classes)
    np.testing.assert_array_equal(got, numpy_round_robin(scores, classes, mask, budget))


class _KnownModel:
  """A predictor whose probabilities are given."""

  def __init__(self, probs):
    self._probs = jnp.asarray(probs)

  def probs(self):
    return self._probs


def test_class_balance_queries_the_rare_class_on_a_1_to_50_pool():
  # 1000 points of class 0, 20 of class 1 (1:50); the model predicts the true class, and is
  # less sure of the common class (max p in [0.55, 0.75]) than of the rare one ([0.7, 0.9]).
  rng = np.random.default_rng(3)
  truth = np.r_[np.zeros(1000, int), np.ones(20, int)]
  top = np.where(truth == 0, rng.uniform(0.55, 0.75, truth.size), rng.uniform(0.7, 0.9, truth.size))
  probs = np.where(truth[:, None] == np.arange(2), top[:, None], 1 - top[:, None]).astype(np.float32)
  least_confidence = 1 - probs.max(1)
  view = PoolView(np.zeros(truth.size, bool), np.ones(truth.size, bool), _KnownModel(probs),
                  {"class_balanced": True})
  budget = 30
  plain_picks = np.argsort(-least_confidence, kind="stable")[:budget]
  balanced = stochastic.select_with_options(jnp.asarray(least_confidence), view, budget, jax.random.key(0))
  rare_plain, rare_balanced = int(truth[plain_picks].sum()), int(truth[balanced].sum())
  assert rare_plain == 0  # the rare class's least confidence is at most 0.3, 30 common ones exceed 0.44
  assert rare_balanced == 15  # one per class each round
  # With a stochastic draw as well: still half the batch from the rare class.
  view.options = {"class_balanced": True, "stochastic": "power"}
  assert int(truth[stochastic.select_with_options(jnp.asarray(least_confidence), view, budget,
                                                  jax.random.key(0))].sum()) == 15


def _one_and_eight_devices_agree():
  from jax.sharding import NamedSharding, PartitionSpec as P

  assert jax.device_count() == 8
  rng = np.random.default_rng(5)
  scores = rng.random(304).astype(np.float32)
  classes = rng.integers(0, 3, 304).astype(np.int32)
  mask = rng.random(304) < 0.9
  mesh = jax.make_mesh((8,), ("data",))
  sharded = jax.device_put(scores, NamedSharding(mesh, P("data")))
  one = jax.device_put(scores, jax.devices()[0])
  key = jax.random.key(11)
  for mode in stochastic.MODES:
    want = stochastic.stochastic_top_k(one, mask, 64, key, mode=mode, temperature=0.7)
    got = stochastic.stochastic_top_k(sharded, mask, 64, key, mode=mode, temperature=0.7)
    np.testing.assert_array_equal(got, want, err_msg=mode)
    print(mode, ",".join(map(str, got)))
  noisy = {name: stochastic.perturbed_scores(s, jax.device_put(mask, s.sharding), key, mode="softmax")[0]
           for name, s in (("one", one), ("sharded", sharded))}
  np.testing.assert_array_equal(
      class_balance.class_balanced_top_k(noisy["sharded"], jax.device_put(classes, sharded.sharding), mask, 50, 3),
      class_balance.class_balanced_top_k(noisy["one"], classes, mask, 50, 3))
  print("OK")


def test_same_picks_on_one_and_eight_devices():
  out = run_on_host_devices("tests.test_acq_stochastic:_one_and_eight_devices_agree")
  # ... and the same as this process's own (one-device) draw.
  rng = np.random.default_rng(5)
  scores = rng.random(304).astype(np.float32)
  rng.integers(0, 3, 304)
  mask = rng.random(304) < 0.9
  for line in out.splitlines()[:3]:
    mode, picks = line.split()
    want = stochastic.stochastic_top_k(scores, mask, 64, jax.random.key(11), mode=mode, temperature=0.7)
    assert picks == ",".join(map(str, want))
