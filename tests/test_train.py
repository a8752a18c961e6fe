"""Training: epochs with oversampling, optimizer pieces, early stopping, divergence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import models
from jaxal.data import augment
from jaxal.data import pipeline
from jaxal.train import optim
from jaxal.train import trainer as trainer_lib


def test_epoch_indices_oversample_with_reshuffled_passes():
  labeled = np.array([3, 8, 11, 20, 42])
  idx = trainer_lib.epoch_indices(labeled, 23, 4, np.random.default_rng(0))
  assert idx.shape == (6, 4)
  flat = idx.ravel()
  assert set(flat) <= set(labeled)
  for p in range(4):  # every full pass is a permutation of the labeled set
    assert sorted(flat[5 * p:5 * p + 5]) == sorted(labeled)
  one_pass = trainer_lib.epoch_indices(labeled, 0, 2, np.random.default_rng(0))
  assert one_pass.shape == (3, 2) and set(one_pass.ravel()[:5]) == set(labeled)


def test_lr_schedule():
  s = optim.parse_lr_schedule("0:0.1,101:0.01,151:0.001")
  assert [optim.lr_at_epoch(e, s) for e in (0, 100, 101, 150, 151, 199)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]


def test_weight_decay_mask_conv_only():
  m = models.create("resnet_grid", 3, blocks=1, stacks=1, width=2)
  params = models.init_variables(m, jax.random.key(0), (1, 8, 8, 1))["params"]
  mask = optim.decay_mask(params, "conv")
  flat = jax.tree_util.tree_leaves_with_path(mask)
  decayed = {jax.tree_util.keystr(p) for p, v in flat if v}
  assert decayed and all("kernel" in k and "classifier" not in k for k in decayed)
  assert not any(jax.tree_util.tree_leaves(optim.decay_mask(params, "none")))
  kernels = jax.tree_util.tree_leaves(optim.decay_mask(params, "kernels"))
  assert sum(kernels) == len(decayed) + 1  # + the dense classifier kernel


def test_weight_decay_matches_keras_l2():
  """One plain SGD step with weight_decay = 2*lam equals the gradient of lam*||w||^2."""
  c = config_lib.base_config().train
  c.optimizer, c.momentum, c.nesterov, c.weight_decay, c.weight_decay_on = "sgd", 0.0, False, 2 * 5e-4, "all"
  tx = optim.make_optimizer(c)
  w = {"kernel": jnp.ones((3, 3, 1, 2))}
  state = tx.init(w)
  state.hyperparams["learning_rate"] = jnp.asarray(0.1)
  zero_grad = jax.tree_util.tree_map(jnp.zeros_like, w)
  upd, _ = tx.update(zero_grad, state, w)
  l2_grad = jax.grad(lambda p: 5e-4 * jnp.sum(p["kernel"] ** 2))(w)
  np.testing.assert_allclose(upd["kernel"], -0.1 * l2_grad["kernel"], rtol=1e-6)


def _trainer(**train_overrides):
  c = config_lib.base_config().train
  c.batch_size, c.epochs, c.epoch_size, c.steps_per_call, c.lr_schedule = 16, 3, 64, 3, "0:0.05"
  for k, v in train_overrides.items():
    c[k] = v
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (80, 8, 8, 1), dtype=np.uint8)
  y = (x.reshape(80, -1).mean(1) > 127).astype(np.int32)
  m = models.create("resnet_grid", 2, blocks=1, stacks=1, width=4)
  pre = pipeline.make_preprocess(x, "image", "per_channel")
  t = trainer_lib.Trainer(m, c, pre, augment.AugmentConfig(), (8, 8, 1), np.uint8)
  return t, jnp.asarray(x), y


def test_fit_learns_and_is_deterministic():
  t, x, y = _trainer(epochs=8)
  labeled = np.arange(60)
  a = t.fit(jax.random.key(0), x, y, labeled)
  b = t.fit(jax.random.key(0), x, y, labeled)
  assert a.epochs == 8 and np.isfinite(a.train_loss)
  assert a.train_accuracy > 0.7
  chex_equal = jax.tree_util.tree_map(lambda u, v: np.array_equal(np.asarray(u), np.asarray(v)),
                                      a.state.params, b.state.params)
  assert all(jax.tree_util.tree_leaves(chex_equal))


def test_unlabeled_rows_are_never_read():
  """Labels of rows outside the labeled set may be garbage (-1): training must not see them."""
  t, x, y = _trainer(epochs=2)
  y_hidden = np.where(np.arange(80) < 30, y, -1).astype(np.int32)
  a = t.fit(jax.random.key(1), x, y_hidden, np.arange(30))
  b = t.fit(jax.random.key(1), x, y, np.arange(30))
  np.testing.assert_array_equal(jax.tree_util.tree_leaves(a.state.params)[0], jax.tree_util.tree_leaves(b.state.params)[0])


def test_stop_at_train_accuracy():
  t, x, y = _trainer(epochs=50, stop_at_train_accuracy=0.5)
  r = t.fit(jax.random.key(0), x, y, np.arange(60))
  assert r.stopped_early and r.epochs < 50 and r.train_accuracy >= 0.5


def test_patience_keeps_the_best_validation_model():
  t, x, y = _trainer(epochs=30, patience=2)
  r = t.fit(jax.random.key(0), x, y, np.arange(40), validation=(x[60:], y[60:]))
  assert r.val_accuracy is not None
  assert t.accuracy(r.state, x[60:], y[60:]) == pytest.approx(r.val_accuracy)


def test_divergence_is_an_error():
  t, x, y = _trainer(epochs=3, lr_schedule="0:1e30")
  with pytest.raises(trainer_lib.TrainingDiverged, match="train.lr_schedule"):
    t.fit(jax.random.key(0), x, y, np.arange(60))


def test_bfloat16_mixed_precision_keeps_float32_state():
  t32, x, y = _trainer(epochs=4)
  tbf, _, _ = _trainer(epochs=4, compute_dtype="bfloat16")
  a = t32.fit(jax.random.key(0), x, y, np.arange(60))
  b = tbf.fit(jax.random.key(0), x, y, np.arange(60))
  for leaf in jax.tree_util.tree_leaves((b.state.params, b.state.batch_stats, b.state.opt_state)):
    if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32
  assert np.isfinite(b.train_loss) and abs(b.train_loss - a.train_loss) < 0.25 * a.train_loss + 0.05
  differs = jax.tree_util.tree_map(lambda u, v: not np.array_equal(u, v), a.state.params, b.state.params)
  assert any(jax.tree_util.tree_leaves(differs))  # the bf16 path really computed in bf16
