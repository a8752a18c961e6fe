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


def check_mc_dropout(model, variables, xs):
  """Dropout is on with `mc_dropout=True` (keys differ) and BatchNorm stays in inference mode."""
  a, _ = model.apply(variables, xs, mc_dropout=True, rngs={"dropout": jax.random.key(1)})
  b, _ = model.apply(variables, xs, mc_dropout=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(a, b)
  e_all = model.apply(variables, xs)[1]
  e_one = model.apply(variables, xs[:1])[1]
  np.testing.assert_allclose(e_one[0], e_all[0], rtol=1e-4, atol=1e-5)


def train_a_few_steps(name, options, shape, steps_per_call=2):
  """Trains `name` on 64 random images through the trainer; checks params and BN statistics moved.

  Args:
    name: registered model name.
    options: backbone options (narrow widths).
    shape: one image's `(H, W, C)`.
    steps_per_call: SGD steps per compiled block (1 halves the compile time of deep nets).
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
