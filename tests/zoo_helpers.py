"""Shared checks for the model zoo tests: a few SGD steps through the trainer, MC-dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import models
from jaxal.data import augment
from jaxal.data import pipeline
from jaxal.train import trainer as trainer_lib


@pytest.fixture
def fast_compiles():
  """Deep unrolled nets compile slowly; XLA's optimizations buy nothing for a few tiny steps."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


def init_jitted(model, key, shape):
  """`models.init_variables` as one compiled program: run eagerly, a deep net's init dispatches
  hundreds of ops one by one and took over a minute on the shared test machine."""
  return jax.jit(lambda k: models.init_variables(model, k, shape))(key)


def check_mc_dropout(model, variables, xs):
  """Dropout is on with `mc_dropout=True` (keys differ) and BatchNorm stays in inference mode."""
  mc_apply = jax.jit(lambda v, x, k: model.apply(v, x, mc_dropout=True, rngs={"dropout": k})[0])
  a, b = mc_apply(variables, xs, jax.random.key(1)), mc_apply(variables, xs, jax.random.key(2))
  assert not np.allclose(a, b)
  embed = jax.jit(lambda v, x: model.apply(v, x)[1])
  e_all = embed(variables, xs)
  e_one = embed(variables, xs[:1])
  np.testing.assert_allclose(e_one[0], e_all[0], rtol=1e-4, atol=1e-5)


def train_a_few_steps(name, options, shape, steps_per_call=1):
  """Trains `name` on 64 random images through the trainer; checks params and BN statistics moved.

  Args:
    name: registered model name, or "module:attr" naming a backbone factory.
    options: backbone options (narrow widths).
    shape: one image's `(H, W, C)`.
    steps_per_call: SGD steps per compiled block (the block is unrolled: 1 compiles fastest).
  """
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (64,) + shape, dtype=np.uint8)
  y = (x.reshape(64, -1).mean(1) > 127).astype(np.int32)
  c = config_lib.base_config().train
  c.batch_size, c.epochs, c.epoch_size, c.steps_per_call, c.lr_schedule = 16, 2, 32, steps_per_call, "0:0.05"
  model = models.create(name, 2, dropout=0.3, **options)
  t = trainer_lib.Trainer(model, c, pipeline.make_preprocess(x, "image", "per_channel"), augment.AugmentConfig(),
                          shape, np.uint8)
  before = t.init(jax.random.split(jax.random.key(0))[0])
  fit = t.fit(jax.random.key(0), jnp.asarray(x), y, np.arange(64))
  assert np.isfinite(fit.train_loss)
  changed = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b), before.params, fit.state.params)
  assert any(jax.tree_util.tree_leaves(changed))
  if jax.tree_util.tree_leaves(before.batch_stats):  # BatchNorm statistics were updated
    moved = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b), before.batch_stats, fit.state.batch_stats)
    assert any(jax.tree_util.tree_leaves(moved))
  # fresh weights: a tiny trained net may have dead ReLUs
  check_mc_dropout(model, before.variables, jnp.asarray(rng.normal(size=(4,) + shape), jnp.float32))
