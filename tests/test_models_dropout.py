"""In-block dropout (`block_dropout`): off in inference, on in training and MC-dropout mode.

BatchNorm stays in inference mode under MC-dropout, and the option adds no variables.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import models
from jaxal.models.base import Classifier
from jaxal.models.preact_resnet import PreactResNet
from jaxal.models.resnet import ResNet
from tests.zoo_helpers import check_mc_dropout, fast_compiles, init_jitted  # noqa: F401


def make(name, options):
  """A registered model, or one of the presets' backbones with one block per stage (cheap; a
  preset only sets how many identical blocks each stage repeats): `preact_bottleneck`
  (ResNet-164's blocks), `preact_basic` (ResNet-20's), `resnet_basic` (ResNet-18's)."""
  if name == "preact_bottleneck":
    return Classifier(PreactResNet(1, bottleneck=True, **options), num_classes=3)
  if name == "preact_basic":
    return Classifier(PreactResNet(1, bottleneck=False, **options), num_classes=3)
  if name == "resnet_basic":
    return Classifier(ResNet((1, 1, 1, 1), "basic", **options), num_classes=3)
  return models.create(name, 3, **options)


DROPOUT_FAMILIES = [
    ("resnet_grid", dict(blocks=1, stacks=2, width=4)),
    ("resnet_grid", dict(blocks=1, stacks=1, width=4, block="bottleneck")),
    ("resnet_basic", dict(width=2)),
    ("vgg11", dict(width=2, fc_width=8, embed=8, fc_dropout=0.0)),
    ("preact_basic", dict(width=2)),
    ("preact_bottleneck", dict(width=2)),
    ("small_cnn", dict(width=2, embed=8)),
]


@pytest.mark.parametrize("name,options", DROPOUT_FAMILIES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(DROPOUT_FAMILIES)])
def test_block_dropout_is_active_in_mc_mode_only(name, options, fast_compiles):  # noqa: F811
  shape = (2, 8, 8, 3)
  plain, m = make(name, options), make(name, dict(options, block_dropout=0.3))  # no head dropout
  assert m.backbone.dropout_in_backbone and not getattr(plain.backbone, "dropout_in_backbone", False)
  v = init_jitted(m, jax.random.key(0), shape)
  # nudge the weights: zero-initialized BN scales (bottleneck blocks) would hide in-block dropout
  def nudge(params):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    return jax.tree_util.tree_unflatten(tree, [a + 0.05 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])
  v["params"] = jax.jit(nudge)(v["params"])
  shapes = lambda mod: jax.tree_util.tree_map(
      lambda a: a.shape, jax.eval_shape(lambda k: models.init_variables(mod, k, shape), jax.random.key(0)))
  assert shapes(m) == shapes(plain)  # dropout adds no variables: checkpoints stay compatible
  xs = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 3)), jnp.float32)
  infer = lambda mod: jax.jit(lambda v, x: mod.apply(v, x)[0])(v, xs)  # compiled: eager dispatch is slower
  np.testing.assert_allclose(infer(m), infer(plain), rtol=1e-5, atol=1e-6)  # off in inference
  check_mc_dropout(m, v, xs)
  train = jax.jit(lambda v, x, k: m.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": k})[0][0])
  logits = train(v, xs, jax.random.key(3))
  assert np.all(np.isfinite(logits))


def test_block_dropout_rejects_bad_rates():
  for name in ("resnet_grid", "resnet18", "preact_resnet20"):
    with pytest.raises(ValueError, match="block_dropout"):
      models.create(name, 2, block_dropout=1.0)


