"""A round's scoring and selection keep the scores on the device: no implicit transfer.

Under `jax.transfer_guard("disallow")` every implicit host<->device transfer raises (a numpy
index array passed to a jitted function, a Python scalar in an eager op, ...); explicit
`jax.device_put` / `jax.device_get` stay allowed. On the CPU backend a device->host read
is not a transfer (the buffer is host memory), so there only the host->device half is
checked; on a GPU or TPU the same test checks both.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import acquisition
from jaxal import models
from jaxal import proxy
from jaxal import stages
from jaxal.acquisition import base
from jaxal.data import augment
from jaxal.data import pipeline
from jaxal.data import pool as pool_lib
from jaxal.train import trainer as trainer_lib
from tests.conftest import tiny_config

N, LABELED, BUDGET = 150, 30, 12


@pytest.fixture(scope="module")
def trained():
  """A tiny model trained for one step on random 8x8 images, and the pool it scores."""
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (N, 8, 8, 1), dtype=np.uint8)
  y = (np.arange(N) % 3).astype(np.int32)
  config = tiny_config(**{"train.epochs": 1, "train.epoch_size": 32, "train.steps_per_call": 1,
                          "acquisition.chunk_size": 64, "al.query_schedule": f"0:{BUDGET}"})
  model = models.create("resnet_grid", 3, blocks=1, stacks=1, width=4, dropout=0.5)
  trainer = trainer_lib.Trainer(model, config.train, pipeline.make_preprocess(x, "image", "per_channel"),
                                augment.AugmentConfig(), (8, 8, 1), np.uint8)
  inputs = jax.device_put(x)
  fit = trainer.fit(jax.random.key(0), inputs, y, np.arange(LABELED, dtype=np.int32))
  labeled = np.arange(N) < LABELED
  pool = pool_lib.PoolState(labeled, np.where(labeled, y, pool_lib.UNKNOWN).astype(np.int32), 0)
  return config, trainer, fit, inputs, pool


def _round(trained, name: str):
  """What `stages.score_and_select` reads, for acquisition `name`."""
  config, trainer, fit, inputs, pool = trained
  with config.unlocked():
    config.acquisition.name = name
    config.acquisition.options = {"mc_samples": 4}
  run = types.SimpleNamespace(config=config, schedule=pool_lib.parse_schedule(config.al.query_schedule, "q"),
                              data=types.SimpleNamespace(pool_inputs=inputs),
                              oracle=types.SimpleNamespace(wants_predictions=True))
  keys = jax.random.split(jax.random.key(1), 4)
  state = stages.RoundState(pool, [], np.zeros(0, np.int32))
  return run, stages.Round(0, state, *keys, trainer=trainer, fit=fit)


@pytest.mark.parametrize("name", ["least_confidence", "margin", "entropy", "bald", "mc_variance", "coreset",
                                  "badge", "random"])
def test_score_and_select_under_transfer_guard(trained, name):
  run, rnd = _round(trained, name)
  with jax.transfer_guard("disallow"):
    out = stages.score_and_select(run, rnd)
  picked = out.picked
  assert isinstance(picked, np.ndarray) and picked.shape == (BUDGET,) and len(set(picked.tolist())) == BUDGET
  assert not rnd.state.pool.labeled_mask[picked].any()
  # The picks' predictions (for an oracle that wants them) are the host softmax's.
  logits = np.asarray(jax.device_get(out.predictor.outputs()[0]), np.float64)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  assert out.predictions["predicted_class"] == probs[picked].argmax(-1).tolist()
  np.testing.assert_allclose(out.predictions["confidence"], probs[picked].max(-1), rtol=1e-5)
  score = acquisition.ACQUISITIONS[name].score
  if score is not None:  # the device ranking is numpy's float64 stable sort of the same scores
    scores = np.asarray(jax.device_get(score(out.predictor.probs())))
    if name == "least_confidence":
      scores = np.asarray(jax.device_get(acquisition.least_confidence_from_logits(out.predictor.outputs()[0])))
    np.testing.assert_array_equal(picked, base.top_k_selectable(scores, ~rnd.state.pool.labeled_mask, BUDGET))


@pytest.mark.parametrize("name", ["margin", "coreset"])
def test_svp_agreement_under_transfer_guard(trained, name):
  """SVP's proxy-target agreement: rank correlations of device scores, or the target's picks."""
  run, rnd = _round(trained, name)
  selected = stages.score_and_select(run, rnd)
  config, trainer, fit, inputs, pool = trained
  target = trainer.predictor(fit.state, inputs, chunk_size=32)  # the same model, other chunks
  with jax.transfer_guard("disallow"):
    agreement = proxy.agreement(config, pool, selected.predictor, target, selected.picked, rnd.select_key)
  assert agreement["topk_overlap"] == 1.0
  if name == "margin":
    assert agreement["spearman"] == pytest.approx(1.0)


def test_device_top_k_ranks_as_the_host_sort():
  """Ties (0.0 against -0.0 included) go to the lower index, -inf scores rank last, and
  NaN is refused only where selectable."""
  scores = np.array([0.5, -0.0, 0.0, 0.5, -np.inf, np.nan, 0.0, -0.0, 1.0, 0.5], np.float32)
  selectable = np.array([1, 1, 1, 1, 1, 0, 1, 1, 0, 1], bool)
  for budget in (1, 3, 6, 8):
    np.testing.assert_array_equal(base.top_k_selectable(jnp.asarray(scores), selectable, budget),
                                  base.top_k_selectable(scores, selectable, budget))
  np.testing.assert_array_equal(base.top_k_selectable(jnp.asarray(scores), selectable, 6), [0, 3, 9, 1, 2, 6])
  selectable[5] = True
  with pytest.raises(FloatingPointError):
    base.top_k_selectable(jnp.asarray(scores), selectable, 2)
  with pytest.raises(ValueError, match="exceeds"):
    base.top_k_selectable(jnp.asarray(scores), np.arange(10) < 2, 3)
