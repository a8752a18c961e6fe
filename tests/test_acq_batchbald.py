"""BatchBALD against an exhaustive joint-entropy computation in numpy (float64)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import models
import importlib
bb = importlib.import_module("jaxal.acquisition.batchbald")  # the package exports the function `batchbald`
from jaxal.acquisition.base import PoolView
from jaxal.inference import Predictor


def random_mc_probs(t, n, c, seed, sharpness=2.0):
  logits = np.random.default_rng(seed).normal(size=(t, n, c)) * sharpness
  p = np.exp(logits - logits.max(-1, keepdims=True))
  return p / p.sum(-1, keepdims=True)


def exact_joint_mi(p, indices):
  """I(y_S; w) = H(y_S) - sum_i E_w H(y_i|w), every class configuration enumerated."""
  p = np.asarray(p, np.float64)[:, list(indices)]  # (T, k, C)
  t, k, c = p.shape
  joint = np.zeros(c ** k)
  for m, ys in enumerate(itertools.product(range(c), repeat=k)):
    joint[m] = np.mean(np.prod(p[:, np.arange(k), list(ys)], axis=1))
  h_joint = -np.sum(joint[joint > 0] * np.log(joint[joint > 0]))
  cond = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)) / t
  return h_joint - cond


def greedy_exact(p, budget, selectable):
  """Greedy BatchBALD with exhaustive joint entropies; returns (picks, objective per step)."""
  picks, values = [], []
  for _ in range(budget):
    scores = {i: exact_joint_mi(p, picks + [i]) for i in np.flatnonzero(selectable) if i not in picks}
    best = max(scores.values())
    picks.append(min(i for i, v in scores.items() if v >= best - 1e-9))
    values.append(best)
  return picks, values


@pytest.mark.parametrize("t,n,c,budget,lazy", [(6, 9, 3, 4, 0), (5, 14, 2, 6, 2)])
def test_exact_path_equals_exhaustive_greedy(t, n, c, budget, lazy):
  """Plain greedy, and lazy greedy recomputing 2 candidates per step (the rest bounded)."""
  p = random_mc_probs(t, n, c, seed=c)
  selectable = np.ones(n, bool)
  selectable[[1, 4]] = False
  assert bb.exact_steps(c, budget, 10 ** 6) == budget
  picks = np.asarray(bb.batchbald(jnp.asarray(p, jnp.float32), budget, num_samples=10 ** 6, selectable_mask=selectable,
                                  lazy=lazy))
  ref_picks, ref_values = greedy_exact(p, budget, selectable)
  assert selectable[picks].all() and len(set(picks.tolist())) == budget
  values = [exact_joint_mi(p, picks[:k + 1]) for k in range(budget)]
  np.testing.assert_allclose(values, ref_values, rtol=1e-5, atol=1e-6)  # same objective, ties allowed
  assert picks.tolist() == ref_picks  # no near-ties on these inputs


def test_first_pick_is_the_bald_argmax():
  p = random_mc_probs(10, 40, 5, seed=7)
  pbar = p.mean(0)
  bald = -(pbar * np.log(pbar)).sum(-1) + (p * np.log(p)).sum(-1).mean(0)
  picks = np.asarray(bb.batchbald(p, 3, num_samples=100))
  assert picks[0] == np.argmax(bald)


def test_sampled_path_is_close_to_exact():
  """C = 3, T = 10: exact for 3 steps with 30 samples; the rest sampled. The sampled picks'
  exact objective is within 2% of the exhaustive greedy's, and picks differ from the exact run."""
  t, n, c, budget = 10, 16, 3, 6
  p = random_mc_probs(t, n, c, seed=11, sharpness=1.5)
  exact = np.asarray(bb.batchbald(p, budget, num_samples=10 ** 6))
  assert bb.exact_steps(c, budget, 30) == 4
  sampled = [np.asarray(bb.batchbald(p, budget, num_samples=20000, key=jax.random.key(s))) for s in (0, 1)]
  np.testing.assert_array_equal(bb.batchbald(p, budget, num_samples=20000, key=jax.random.key(0)), sampled[0])
  assert bb.exact_steps(c, budget, 20000) == budget  # 3^5 <= 20000: exact, so force sampling below
  few = np.asarray(bb.batchbald(p, budget, num_samples=30, key=jax.random.key(0)))
  best = exact_joint_mi(p, exact)
  assert exact_joint_mi(p, few) == pytest.approx(best, rel=0.05)
  assert few[:4].tolist() == exact[:4].tolist()  # the exact steps agree


def numpy_sampled_entropy(samples, probs):
  """Importance-weighted estimate H(y_S, y_x) from sampled configurations (T, M) (float64)."""
  samples, probs = np.asarray(samples, np.float64), np.asarray(probs, np.float64)
  t, m = samples.shape
  a = np.einsum("tm,tnc->nmc", samples, probs) / t
  q = samples.mean(0)
  return -np.sum(np.where(a > 0, a * np.log(np.where(a > 0, a, 1)), 0) / q[None, :, None], axis=(1, 2)) / m


def test_sampled_estimator_matches_numpy_on_the_same_samples_and_the_exact_entropy():
  t, n, c = 8, 12, 3
  p = random_mc_probs(t, n, c, seed=3)
  chosen = [0, 5, 7, 9, 2]
  rng = np.random.default_rng(0)
  per_w = 2000
  owner = np.repeat(np.arange(t), per_w)
  samples = np.ones((t, t * per_w))
  for i in chosen:  # y_i ~ p_{t_m}(y | x_i), independent given w
    u = rng.random(t * per_w)
    y = (np.cumsum(p[owner, i], -1) < u[:, None]).sum(-1).clip(max=c - 1)
    samples *= p[:, i, y]
  scale = samples.max(0)
  weights = 1.0 / (samples.shape[1] * (samples / scale).mean(0))
  chunks, _ = bb._candidate_chunks(jnp.asarray(p, jnp.float32), samples.shape[1])
  ours = np.asarray(bb._joint_entropies(jnp.asarray(samples / scale, jnp.float32), jnp.asarray(weights, jnp.float32),
                                        chunks, n, c)) - np.mean(np.log(scale))
  reference = numpy_sampled_entropy(samples, p)
  np.testing.assert_allclose(ours, reference, rtol=2e-5)
  cond = -(p * np.log(p)).sum(-1).mean(0)
  exact = np.array([exact_joint_mi(p, chosen + [i]) + cond[chosen].sum() + cond[i] for i in range(n)])
  np.testing.assert_allclose(reference, exact, atol=0.03)  # 16000 samples of 3^6 configurations


def test_budget_beyond_the_selectable_points_is_refused():
  with pytest.raises(ValueError, match="exceeds"):
    bb.batchbald(random_mc_probs(3, 5, 2, 0), 3, selectable_mask=np.array([1, 1, 0, 0, 0], bool))


def test_validate_names_the_option():
  with pytest.raises(config_lib.ConfigError, match="acquisition.options.batchbald_candidates"):
    bb.validate({**bb.DEFAULTS, "batchbald_candidates": 0})
  with pytest.raises(config_lib.ConfigError, match="acquisition.options.batchbald_samples"):
    bb.validate({**bb.DEFAULTS, "batchbald_samples": 2.5})
  bb.validate(dict(bb.DEFAULTS))


def _identity(x):
  return x


@pytest.fixture(scope="module")
def predictor():
  model = models.create("resnet_grid", 4, blocks=1, stacks=1, width=4, dropout=0.5)
  x = np.random.default_rng(0).normal(size=(13, 6, 6, 1)).astype(np.float32)
  variables = models.init_variables(model, jax.random.key(0), (1, 6, 6, 1))
  return Predictor(model, variables, jnp.asarray(x), _identity, chunk_size=5)


def test_mc_probabilities_share_each_pass_across_rows_and_chunks(predictor):
  """Pass t of every row uses the dropout key fold_in(key, t): equal to one model call on all rows."""
  key = jax.random.key(4)
  probs = np.asarray(bb.mc_probabilities(predictor, 3, key, head_only=True))
  assert probs.shape == (3, 13, 4)
  model, variables, x = predictor.model, predictor.variables, predictor.inputs
  _, h = model.apply(variables, x)
  for t in range(3):
    k = jax.random.fold_in(key, t)
    rows = [model.apply(variables, h[i:i + 1], mc_dropout=True, method="head", rngs={"dropout": k})[0] for i in range(13)]
    np.testing.assert_allclose(probs[t], jax.nn.softmax(jnp.stack(rows), -1), atol=1e-6)
  subset = np.asarray(bb.mc_probabilities(predictor, 3, key, rows=np.array([12, 3]), head_only=True))
  np.testing.assert_allclose(subset, probs[:, [12, 3]], atol=1e-6)
  assert not np.allclose(probs[0], probs[1])  # dropout is on


def test_batchbald_acquire_picks_selectable_points_among_bald_candidates(predictor):
  selectable = np.ones(13, bool)
  selectable[[0, 6]] = False
  options = {**bb.DEFAULTS, "mc_samples": 6, "batchbald_candidates": 8, "mc_head_only": True}
  view = PoolView(~selectable, selectable, predictor, options)
  key = jax.random.key(1)
  with jax.transfer_guard("disallow"):  # as a round's selection runs
    picks = bb.batchbald_acquire(view, 4, key)
  probs = bb.mc_probabilities(predictor, 6, jax.random.key(1), head_only=True)
  assert len(set(picks.tolist())) == 4 and selectable[picks].all()
  bald = np.asarray(bb._bald(probs))
  assert picks[0] == np.flatnonzero(selectable)[np.argmax(bald[selectable])]
