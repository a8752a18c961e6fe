"""Softmax uncertainty scores and the acquisition registry, against float64 loops.

MC-dropout scores: test_mc_dropout.py; k-center: test_kcenter.py; BADGE: test_badge.py.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import acquisition


def softmax64(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def random_probs(n, c, seed, temperature=3.0):
  z = np.random.default_rng(seed).normal(size=(n, c)) * temperature
  return softmax64(z)


# ----------------------------------------------------------------------------- softmax scores


def ref_scores(p):
  lc, mg, en = [], [], []
  for row in p:
    s = sorted(row, reverse=True)
    lc.append(1 - s[0])
    mg.append(-(s[0] - s[1]))
    en.append(-sum(v * np.log(v) for v in row if v > 0))
  return np.array(lc), np.array(mg), np.array(en)


@pytest.mark.parametrize("seed", range(3))
def test_softmax_scores_match_loops(seed):
  p = random_probs(64, 7, seed)
  lc, mg, en = ref_scores(p)
  pf = jnp.asarray(p, jnp.float32)
  np.testing.assert_allclose(acquisition.least_confidence(pf), lc, atol=1e-6)
  np.testing.assert_allclose(acquisition.margin(pf), mg, atol=1e-6)
  np.testing.assert_allclose(acquisition.entropy(pf), en, atol=1e-5)


def test_softmax_scores_special_cases():
  c = 5
  uniform = jnp.full((1, c), 1.0 / c)
  onehot = jnp.eye(c)[:1]
  assert float(acquisition.least_confidence(uniform)[0]) == pytest.approx(1 - 1 / c)
  assert float(acquisition.entropy(uniform)[0]) == pytest.approx(np.log(c), rel=1e-6)
  assert float(acquisition.margin(uniform)[0]) == 0.0
  assert float(acquisition.entropy(onehot)[0]) == 0.0 and float(acquisition.margin(onehot)[0]) == -1.0
  with_zeros = jnp.array([[0.5, 0.5, 0.0, 0.0]])
  h = float(acquisition.entropy(with_zeros)[0])
  assert np.isfinite(h) and h == pytest.approx(np.log(2), rel=1e-6)


def test_scores_are_shift_invariant_in_logits():
  z = np.random.default_rng(0).normal(size=(30, 6))
  for fn in (acquisition.least_confidence, acquisition.margin, acquisition.entropy):
    a = fn(jax.nn.softmax(jnp.asarray(z)))
    b = fn(jax.nn.softmax(jnp.asarray(z + 7.5)))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_two_class_rankings_are_identical():
  p = random_probs(200, 2, 4, temperature=1.0)
  orders = [np.argsort(-np.asarray(fn(jnp.asarray(p))), kind="stable")
            for fn in (acquisition.least_confidence, acquisition.margin, acquisition.entropy)]
  ref = np.argsort(np.abs(p[:, 0] - 0.5), kind="stable")
  for o in orders:
    np.testing.assert_array_equal(o, ref)


def test_top_k_ties_go_to_lower_index():
  scores = np.array([0.1, 0.5, 0.5, 0.9, 0.5])
  mask = np.array([True, True, True, True, True])
  np.testing.assert_array_equal(acquisition.top_k_selectable(scores, mask, 3), [3, 1, 2])
  mask[1] = False
  np.testing.assert_array_equal(acquisition.top_k_selectable(scores, mask, 3), [3, 2, 4])


def test_least_confidence_from_logits_keeps_confident_rows_ordered():
  z = np.zeros((4, 3), np.float32)
  z[:, 0] = [18.0, 20.0, 19.0, 25.0]  # max p within 1e-7 of 1: float32 `1 - max p` is 0 for all
  p = jax.nn.softmax(jnp.asarray(z))
  assert (np.asarray(acquisition.least_confidence(p)) == 0).all()
  got = np.asarray(acquisition.least_confidence_from_logits(jnp.asarray(z)), np.float64)
  ref = np.array([2 * np.exp(-v) / (1 + 2 * np.exp(-v)) for v in z[:, 0].astype(np.float64)])
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  np.testing.assert_array_equal(np.argsort(-got), [0, 2, 1, 3])
  zr = np.random.default_rng(1).normal(size=(50, 6)) * 2
  np.testing.assert_allclose(acquisition.least_confidence_from_logits(jnp.asarray(zr)),
                             [1 - softmax64(row).max() for row in zr], atol=1e-6)


# ----------------------------------------------------------------------------- registry


@dataclasses.dataclass
class FakePredictor:
  """Fixed logits and embeddings, standing in for a model over the pool."""

  logits: np.ndarray
  embeddings: np.ndarray

  def outputs(self):
    return self.logits, self.embeddings

  def probs(self):
    return np.asarray(softmax64(self.logits), np.float32)


def test_each_method_has_an_array_level_export():
  """`jaxal.acquisition` exports every method's entry point on arrays (issue 29's contract)."""
  expected = {"batchbald": "batchbald", "typiclust": "typiclust", "probcover": "probcover",
              "epig_scores": "epig", "cluster_margin_select": "cluster_margin", "cluster_pool": "cluster_margin",
              "stochastic_top_k": "stochastic", "class_balanced_top_k": "class_balance", "badge": "badge_seeding",
              "kcenter_greedy": "kcenter", "bald": "mc_dropout"}
  for name, module in expected.items():
    fn = getattr(acquisition, name)
    assert callable(fn) and name in acquisition.__all__, name
    assert fn.__module__ == f"jaxal.acquisition.{module}", (name, fn.__module__)


def test_registry_names_and_options():
  assert set(acquisition.ACQUISITIONS) == {"random", "least_confidence", "margin", "entropy", "bald", "mc_variance",
                                           "coreset", "badge", "batchbald", "epig", "typiclust", "probcover",
                                           "cluster_margin"}
  rng = np.random.default_rng(0)
  n = 40
  pred = FakePredictor(rng.normal(size=(n, 4)).astype(np.float32) * 3, rng.normal(size=(n, 5)).astype(np.float32))
  labeled = np.zeros(n, bool)
  labeled[:6] = True
  selectable = ~labeled
  selectable[6] = False  # held out: neither labeled nor selectable
  key = jax.random.key(0)
  for name in ("random", "least_confidence", "margin", "entropy", "coreset", "badge"):
    picks = acquisition.acquire(name, acquisition.PoolView(labeled, selectable, pred), 5, key)
    assert len(set(picks.tolist())) == 5 and selectable[picks].all()
  probs = pred.probs()
  lc = acquisition.acquire("least_confidence", acquisition.PoolView(labeled, selectable, pred), 5, key)
  np.testing.assert_array_equal(lc, acquisition.top_k_selectable(1 - probs.max(1), selectable, 5))
  plain = acquisition.acquire("coreset", acquisition.PoolView(labeled, selectable, pred, {"kcenter_prune": False}), 8,
                              key)
  pruned = acquisition.acquire("coreset", acquisition.PoolView(labeled, selectable, pred, {"kcenter_prune": True}), 8,
                               key)
  np.testing.assert_array_equal(plain, pruned)
  with pytest.raises(ValueError, match="unknown acquisition"):
    acquisition.acquire("nope", acquisition.PoolView(labeled, selectable, pred), 5, key)
