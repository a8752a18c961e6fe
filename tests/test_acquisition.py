"""Acquisition scores and selectors against brute-force float64 numpy references."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import acquisition
from jaxal import models
from jaxal.acquisition import badge_seeding as badge_lib
from jaxal.acquisition.scoring import Predictor


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


# ----------------------------------------------------------------------------- MC-dropout scores


def ref_mc(mc, pred_class):
  t, n, _ = mc.shape
  out = {k: [] for k in ("bald", "pe", "vr", "vrm", "var")}
  for i in range(n):
    mean = mc[:, i].mean(0)
    h_mean = -sum(v * np.log(v) for v in mean if v > 0)
    e_h = np.mean([-sum(v * np.log(v) for v in mc[s, i] if v > 0) for s in range(t)])
    out["bald"].append(max(h_mean - e_h, 0.0))
    out["pe"].append(h_mean)
    out["vr"].append(1 - mean.max())
    votes = np.bincount([int(np.argmax(mc[s, i])) for s in range(t)], minlength=mc.shape[2])
    out["vrm"].append(1 - votes.max() / t)
    col = [mc[s, i, pred_class[i]] for s in range(t)]
    out["var"].append(np.mean((np.array(col) - np.mean(col)) ** 2))
  return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("seed", range(3))
def test_mc_scores_match_loops_and_bounds(seed):
  rng = np.random.default_rng(seed)
  t, n, c = 8, 40, 5
  mc = softmax64(rng.normal(size=(t, n, c)) * 2)
  pred = rng.integers(0, c, n)
  ref = ref_mc(mc, pred)
  mcf = jnp.asarray(mc, jnp.float32)
  np.testing.assert_allclose(acquisition.bald(mcf), ref["bald"], atol=2e-5)
  np.testing.assert_allclose(acquisition.predictive_entropy(mcf), ref["pe"], atol=2e-5)
  np.testing.assert_allclose(acquisition.variation_ratio(mcf), ref["vr"], atol=1e-6)
  np.testing.assert_allclose(acquisition.variation_ratio_mode(mcf), ref["vrm"], atol=1e-6)
  np.testing.assert_allclose(acquisition.mc_pred_class_variance(mcf, jnp.asarray(pred)), ref["var"], atol=1e-6)
  i = np.asarray(acquisition.bald(mcf))
  h = np.asarray(acquisition.predictive_entropy(mcf))
  assert (i >= 0).all() and (i <= h + 1e-6).all() and (h <= np.log(c) + 1e-6).all()


def test_single_pass_has_zero_bald():
  mc = jnp.asarray(random_probs(10, 4, 0))[None]
  np.testing.assert_allclose(acquisition.bald(mc), 0.0, atol=1e-6)
  np.testing.assert_allclose(acquisition.variation_ratio_mode(mc), 0.0)
  np.testing.assert_allclose(acquisition.predictive_entropy(mc), acquisition.entropy(mc[0]), atol=1e-6)


# ----------------------------------------------------------------------------- MC-dropout predictor


@pytest.fixture(scope="module")
def small_predictor_parts():
  model = models.create("resnet_grid", 4, blocks=1, stacks=1, width=4, dropout=0.5)
  x = np.random.default_rng(0).normal(size=(23, 6, 6, 1)).astype(np.float32)
  variables = models.init_variables(model, jax.random.key(0), (1, 6, 6, 1))
  return model, variables, jnp.asarray(x)


def _predictor(parts, chunk):
  model, variables, x = parts
  return Predictor(model, variables, x, _identity, chunk_size=chunk)


def _identity(x):
  return x


def test_mc_statistics_match_an_explicit_loop(small_predictor_parts):
  model, variables, x = small_predictor_parts
  key, t = jax.random.key(3), 6
  stats = _predictor(small_predictor_parts, 8).mc_statistics(t, key, head_only=False)
  det = np.asarray(model.apply(variables, x)[0]).argmax(-1)
  mc = np.zeros((t, x.shape[0], 4))
  for i in range(x.shape[0]):
    for s in range(t):
      k = jax.random.fold_in(jax.random.fold_in(key, i), s)
      logits, _ = model.apply(variables, x[i:i + 1], mc_dropout=True, rngs={"dropout": k})
      mc[s, i] = softmax64(np.asarray(logits[0], np.float64))
  ref = ref_mc(mc, det)
  np.testing.assert_allclose(stats["mean_probs"], mc.mean(0), atol=1e-5)
  np.testing.assert_allclose(np.asarray(acquisition.bald_from_stats(stats["mean_probs"], stats["mean_entropy"])),
                             ref["bald"], atol=1e-4)
  np.testing.assert_allclose(stats["pred_class_variance"], ref["var"], atol=1e-5)
  np.testing.assert_array_equal(stats["pred_class"], det)
  assert not np.allclose(mc[0], mc[1])  # dropout really was active


def test_head_only_path_equals_full_path_and_chunking_does_not_matter(small_predictor_parts):
  key = jax.random.key(7)
  full = _predictor(small_predictor_parts, 8).mc_statistics(10, key, head_only=False)
  head = _predictor(small_predictor_parts, 8).mc_statistics(10, key, head_only=True)
  other_chunks = _predictor(small_predictor_parts, 5).mc_statistics(10, key, head_only=True, group=5)
  for name in ("mean_probs", "mean_entropy", "votes", "pred_class_variance"):
    np.testing.assert_allclose(head[name], full[name], atol=1e-5)
    np.testing.assert_allclose(other_chunks[name], head[name], atol=1e-5)


# ----------------------------------------------------------------------------- k-center


def naive_kcenter(x, labeled, budget):
  """Recomputes every candidate's distance to all centers at every step (float64)."""
  x = np.asarray(x, np.float64)
  centers = list(np.flatnonzero(labeled))
  picks = []
  for _ in range(budget):
    best, best_d = -1, -1.0
    for i in range(len(x)):
      if i in centers:
        continue
      if centers:
        d = min(np.sum((x[i] - x[c]) ** 2) for c in centers)
      else:
        d = np.sum((x[i] - x.mean(0)) ** 2)
      if d > best_d:
        best, best_d = i, d
    picks.append(best)
    centers.append(best)
  return np.array(picks)


@pytest.mark.parametrize("seed,num_labeled", [(0, 5), (1, 1), (2, 0), (3, 12)])
def test_kcenter_matches_naive_greedy_with_ties(seed, num_labeled):
  rng = np.random.default_rng(seed)
  x = rng.integers(-3, 4, size=(60, 3)).astype(np.float32)  # small integers: many exact ties
  x[10] = x[11] = x[12]  # duplicate rows
  labeled = np.zeros(60, bool)
  labeled[rng.choice(60, num_labeled, replace=False)] = True
  got = acquisition.kcenter_greedy(x, labeled, 15, block=4)
  np.testing.assert_array_equal(got, naive_kcenter(x, labeled, 15))
  assert len(set(got.tolist())) == 15 and not labeled[got].any()


def test_kcenter_radius_decreases_and_is_a_two_approximation():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(11, 2))
  labeled = np.zeros(11, bool)
  labeled[0] = True
  picks = acquisition.kcenter_greedy(x, labeled, 3)
  radii = []
  centers = [0]
  for p in picks:
    centers.append(int(p))
    d = np.sqrt(((x[:, None] - x[None, centers]) ** 2).sum(-1)).min(1)
    radii.append(d.max())
  assert all(b <= a + 1e-9 for a, b in zip(radii, radii[1:]))
  best = min(np.sqrt(((x[:, None] - x[None, [0, *c]]) ** 2).sum(-1)).min(1).max()
             for c in itertools.combinations(range(1, 11), 3))
  assert radii[-1] <= 2 * best + 1e-9


def test_kcenter_is_permutation_equivariant_and_bf16_close():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(200, 16)).astype(np.float32)
  labeled = np.zeros(200, bool)
  labeled[:10] = True
  picks = acquisition.kcenter_greedy(x, labeled, 20)
  perm = rng.permutation(200)
  picks_perm = acquisition.kcenter_greedy(x[perm], labeled[perm], 20)
  np.testing.assert_array_equal(perm[picks_perm], picks)
  bf16 = acquisition.kcenter_greedy(x, labeled, 20, storage_dtype=jnp.bfloat16)
  assert len(set(bf16.tolist()) & set(picks.tolist())) >= 15


# ----------------------------------------------------------------------------- BADGE


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


@pytest.mark.parametrize("seed", range(3))
def test_badge_matches_numpy_kmeanspp(seed):
  rng = np.random.default_rng(seed)
  p = random_probs(80, 5, seed).astype(np.float32)
  h = rng.normal(size=(80, 7)).astype(np.float32)
  labeled = np.zeros(80, bool)
  labeled[rng.choice(80, 10, replace=False)] = True
  key = jax.random.key(seed)
  got = acquisition.badge(p, h, labeled, 12, key)
  np.testing.assert_array_equal(got, numpy_badge(p.astype(np.float64), h.astype(np.float64), labeled, 12, key))
  a = p - np.eye(5)[p.argmax(1)]
  norms = np.where(labeled, -1, (a ** 2).sum(1) * (h ** 2).sum(1))
  assert got[0] == np.argmax(norms)
  assert len(set(got.tolist())) == 12 and not labeled[got].any()


def test_badge_falls_back_to_uniform_when_all_gradients_vanish():
  p = np.eye(3, dtype=np.float32)[np.arange(20) % 3]  # confident one-hot predictions: a = 0
  h = np.ones((20, 4), np.float32)
  got = acquisition.badge(p, h, np.zeros(20, bool), 6, jax.random.key(0))
  assert len(set(got.tolist())) == 6
