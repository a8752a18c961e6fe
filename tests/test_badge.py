"""BADGE k-means++ seeding on factorized gradient embeddings (ALGORITHMS.md §4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxal import acquisition
from jaxal.acquisition import badge_seeding as badge_lib


def softmax64(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def random_probs(n, c, seed, temperature=3.0):
  z = np.random.default_rng(seed).normal(size=(n, c)) * temperature
  return softmax64(z)


def test_factorized_distances_equal_outer_products():
  rng = np.random.default_rng(0)
  p = random_probs(30, 4, 1)
  h = rng.normal(size=(30, 6))
  a = p - np.eye(4)[p.argmax(1)]
  g = np.einsum("nc,nd->ncd", a, h).reshape(30, -1)
  na, nh = (a * a).sum(1), (h * h).sum(1)
  for j in (0, 7, 29):
    got = np.asarray(badge_lib.factorized_sq_dist(jnp.asarray(a), jnp.asarray(h), jnp.asarray(na), jnp.asarray(nh), j))
    np.testing.assert_allclose(got, ((g - g[j]) ** 2).sum(1), rtol=1e-4, atol=1e-5)


def numpy_badge(p, h, labeled, budget, key):
  """k-means++ on the materialized gradient matrix, with the same Gumbel draws as jaxal."""
  a = p - np.eye(p.shape[1])[p.argmax(1)]
  g = np.einsum("nc,nd->ncd", a, h).reshape(len(p), -1).astype(np.float64)
  cand = ~labeled
  first = int(np.argmax(np.where(cand, (g ** 2).sum(1), -np.inf)))
  picks, chosen = [first], {first}
  d2 = ((g - g[first]) ** 2).sum(1)
  keys = jax.random.split(key, budget)
  for i in range(1, budget):
    open_ = cand & ~np.isin(np.arange(len(p)), list(chosen))
    logits = np.where(open_ & (d2 > 1e-12), np.log(np.maximum(d2, 1e-300)), -np.inf)
    if np.isneginf(logits).all():
      logits = np.where(open_, 0.0, -np.inf)
    noise = np.asarray(jax.random.gumbel(keys[i], (len(p),)), np.float64)
    j = int(np.argmax(logits + noise))
    picks.append(j)
    chosen.add(j)
    d2 = np.minimum(d2, ((g - g[j]) ** 2).sum(1))
  return np.array(picks)


@pytest.mark.parametrize("seed,budget", [(0, 12), (1, 12), (2, 12), (3, 33), (4, 66)])
def test_badge_matches_numpy_kmeanspp(seed, budget):
  """Budgets past one and two blocks of 32 steps check that each step uses its own key."""
  rng = np.random.default_rng(seed)
  p = random_probs(80, 5, seed).astype(np.float32)
  h = rng.normal(size=(80, 7)).astype(np.float32)
  labeled = np.zeros(80, bool)
  labeled[rng.choice(80, 10, replace=False)] = True
  key = jax.random.key(seed)
  got = acquisition.badge(p, h, labeled, budget, key)
  np.testing.assert_array_equal(got, numpy_badge(p.astype(np.float64), h.astype(np.float64), labeled, budget, key))
  a = p - np.eye(5)[p.argmax(1)]
  norms = np.where(labeled, -1, (a ** 2).sum(1) * (h ** 2).sum(1))
  assert got[0] == np.argmax(norms)
  assert len(set(got.tolist())) == budget and not labeled[got].any()


def test_badge_falls_back_to_uniform_when_all_gradients_vanish():
  p = np.eye(3, dtype=np.float32)[np.arange(20) % 3]  # confident one-hot predictions: a = 0
  h = np.ones((20, 4), np.float32)
  got = acquisition.badge(p, h, np.zeros(20, bool), 6, jax.random.key(0))
  assert len(set(got.tolist())) == 6


def test_second_pick_follows_d2_distribution():
  rng = np.random.default_rng(2)
  n = 6
  p = random_probs(n, 3, 2, temperature=1.0).astype(np.float32)
  h = rng.normal(size=(n, 4)).astype(np.float32)
  labeled = np.zeros(n, bool)
  a = p.astype(np.float64) - np.eye(3)[p.argmax(1)]
  g = np.einsum("nc,nd->ncd", a, h.astype(np.float64)).reshape(n, -1)
  first = int(np.argmax((g ** 2).sum(1)))
  d2 = ((g - g[first]) ** 2).sum(1)
  expected = d2 / d2.sum()
  draws = 4000
  seconds = jax.vmap(lambda k: badge_lib._badge(jnp.asarray(p), jnp.asarray(h), jnp.asarray(~labeled), 2, k)[1])(
      jax.random.split(jax.random.key(0), draws))
  counts = np.bincount(np.asarray(seconds), minlength=n)
  assert counts[first] == 0
  keep = expected > 0
  _, pvalue = stats.chisquare(counts[keep], expected[keep] * draws)
  assert pvalue > 1e-3


def test_badge_never_picks_labeled_points_and_budget_is_checked():
  p = random_probs(12, 3, 5).astype(np.float32)
  h = np.random.default_rng(5).normal(size=(12, 3)).astype(np.float32)
  labeled = np.zeros(12, bool)
  labeled[:4] = True
  got = acquisition.badge(p, h, labeled, 8, jax.random.key(1))
  assert sorted(got.tolist()) == list(range(4, 12))
  with pytest.raises(ValueError, match="exceeds"):
    acquisition.badge(p, h, labeled, 9, jax.random.key(1))
