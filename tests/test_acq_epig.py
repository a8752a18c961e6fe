"""EPIG against a brute-force numpy double loop (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import models
import importlib
bb = importlib.import_module("jaxal.acquisition.batchbald")  # the package exports the function `batchbald`
from jaxal.acquisition import epig
from jaxal.acquisition.base import PoolView
from jaxal.inference import Predictor


def random_mc_probs(t, n, c, seed, sharpness=2.0):
  logits = np.random.default_rng(seed).normal(size=(t, n, c)) * sharpness
  p = np.exp(logits - logits.max(-1, keepdims=True))
  return p / p.sum(-1, keepdims=True)


def brute_force_epig(pool, target):
  """Mean over targets of sum_{y,y*} p(y,y*) log(p(y,y*) / (p(y) p(y*))), one pair at a time."""
  t, n, c = pool.shape
  out = np.zeros(n)
  for i in range(n):
    for j in range(target.shape[1]):
      joint = np.zeros((c, target.shape[2]))
      for s in range(t):
        joint += np.outer(pool[s, i], target[s, j]) / t
      indep = np.outer(joint.sum(1), joint.sum(0))
      out[i] += np.sum(joint * np.log(joint / indep)) / target.shape[1]
  return out


def test_epig_equals_a_brute_force_double_loop():
  pool, target = random_mc_probs(7, 11, 4, seed=0), random_mc_probs(7, 5, 4, seed=1)
  np.testing.assert_allclose(epig.epig_scores(jnp.asarray(pool, jnp.float32), jnp.asarray(target, jnp.float32)),
                             brute_force_epig(pool, target), atol=2e-6)


def test_epig_chunks_give_the_same_scores():
  pool, target = random_mc_probs(5, 23, 3, seed=2), random_mc_probs(5, 4, 3, seed=3)
  whole = np.asarray(epig.epig_scores(pool, target))
  chunked = epig.epig_scores(pool, target, elements_per_chunk=5 * 4 * 3 * 3)  # 5 pool points per chunk, 5 chunks
  np.testing.assert_allclose(chunked, whole, atol=1e-7)
  np.testing.assert_allclose(whole, brute_force_epig(pool, target), atol=2e-6)


def test_one_pass_or_independent_pool_and_target_give_zero():
  pool = random_mc_probs(1, 6, 3, seed=4)
  np.testing.assert_allclose(epig.epig_scores(pool, random_mc_probs(1, 3, 3, seed=5)), 0.0, atol=1e-6)
  constant = np.broadcast_to(random_mc_probs(1, 3, 3, seed=6), (6, 3, 3))  # target unaffected by w
  np.testing.assert_allclose(epig.epig_scores(random_mc_probs(6, 6, 3, seed=7), constant), 0.0, atol=1e-6)


def test_mismatched_passes_are_refused():
  with pytest.raises(ValueError, match="same passes"):
    epig.epig_scores(random_mc_probs(3, 4, 2, 0), random_mc_probs(4, 4, 2, 0))


def test_validate_names_the_option():
  with pytest.raises(config_lib.ConfigError, match="acquisition.options.epig_targets"):
    epig.validate({**epig.DEFAULTS, "epig_targets": 0})
  epig.validate(dict(epig.DEFAULTS))


def _identity(x):
  return x


def test_epig_acquire_is_the_top_k_of_the_scores_against_sampled_targets():
  model = models.create("resnet_grid", 4, blocks=1, stacks=1, width=4, dropout=0.5)
  x = np.random.default_rng(0).normal(size=(13, 6, 6, 1)).astype(np.float32)
  variables = models.init_variables(model, jax.random.key(0), (1, 6, 6, 1))
  predictor = Predictor(model, variables, jnp.asarray(x), _identity, chunk_size=5)
  selectable = np.ones(13, bool)
  selectable[[2, 9]] = False
  key = jax.random.key(5)
  options = {**epig.DEFAULTS, "mc_samples": 6, "epig_targets": 4, "mc_head_only": True}
  with jax.transfer_guard("disallow"):  # as a round's selection runs
    picks = epig.epig_acquire(PoolView(~selectable, selectable, predictor, options), 3, key)
  targets = np.asarray(epig._sample_targets(jnp.asarray(selectable), jax.random.fold_in(key, 2), 4))
  assert len(set(targets.tolist())) == 4 and selectable[targets].all()
  probs = np.asarray(bb.mc_probabilities(predictor, 6, key, head_only=True), np.float64)
  scores = brute_force_epig(probs, probs[:, targets])
  expected = np.flatnonzero(selectable)[np.argsort(-scores[selectable], kind="stable")[:3]]
  np.testing.assert_array_equal(picks, expected)
