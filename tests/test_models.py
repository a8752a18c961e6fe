"""The model zoo: published parameter counts, depths, and a few training steps each."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import models
from jaxal.data import augment
from jaxal.data import pipeline
from jaxal.train import trainer as trainer_lib


@pytest.mark.parametrize("name,published", [("resnet18", 11_689_512), ("resnet34", 21_797_672),
                                            ("resnet50", 25_557_032)])
def test_imagenet_resnets_match_published_counts(name, published):
  d = models.describe(models.create(name, 1000, stem="imagenet"), (1, 224, 224, 3))
  assert abs(d["num_params"] / published - 1) < 0.005
  assert d["depth"] == int(name[6:])


@pytest.mark.parametrize("name,published,depth", [
    # Trainable parameters of the CIFAR ResNets with parameter-free shortcuts (0.27M, 0.85M,
    # 1.7M), and of pre-activation ResNet-164 with projection shortcuts (1.7M).
    ("preact_resnet20", 269_722, 20), ("preact_resnet56", 853_018, 56),
    ("preact_resnet110", 1_727_962, 110), ("preact_resnet164", 1_703_258, 164)])
def test_cifar_preact_resnets_match_published_counts(name, published, depth):
  d = models.describe(models.create(name, 10), (1, 32, 32, 3))
  assert abs(d["num_params"] / published - 1) < 0.005, d["num_params"]
  assert d["depth"] == depth


def test_vgg_head_is_sized_from_the_input():
  for size, flat in ((32, 512), (64, 2048)):
    d = models.describe(models.create("vgg11", 10), (1, size, size, 3))
    convs = d["num_params"] - (flat * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000 + 1000 * 10 + 10)
    assert convs == models.describe(models.create("vgg11", 10), (1, 32, 32, 3))["num_params"] - (
        512 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000 + 1000 * 10 + 10)
  assert [models.describe(models.create(f"vgg{n}", 10), (1, 32, 32, 3))["depth"] for n in (11, 16, 19)] == [11, 16, 19]


def test_stems_and_unknown_options():
  cifar = models.create("resnet18", 10, width=4)
  imnet = models.create("resnet18", 10, width=4, stem="imagenet")
  shapes = lambda m: jax.eval_shape(lambda k: models.init_variables(m, k, (1, 32, 32, 3)), jax.random.key(0))
  v1, v2 = shapes(cifar), shapes(imnet)
  assert v1["params"]["backbone"]["stem_conv"]["kernel"].shape[:2] == (3, 3)
  assert v2["params"]["backbone"]["stem_conv"]["kernel"].shape[:2] == (7, 7)
  with pytest.raises(ValueError, match="bad options for model 'vgg11'"):
    models.create("vgg11", 10, stem="cifar")
  with pytest.raises(ValueError, match="stem"):
    models.create("resnet18", 10, stem="huge")


TINY = [
    ("small_cnn", dict(width=4, embed=8), (8, 8, 1)),
    ("small_cnn", dict(width=4, embed=8, block_dropout=0.2), (28, 28, 1)),
    ("resnet18", dict(width=4), (8, 8, 3)),
    ("resnet50", dict(width=2, stem="imagenet"), (16, 16, 3)),
    ("vgg11", dict(width=4, fc_width=16, embed=8), (16, 16, 3)),
    ("preact_resnet20", dict(width=4), (8, 8, 3)),
    ("preact_resnet164", dict(width=2), (8, 8, 3)),
    ("resnet_grid", dict(blocks=1, stacks=2, width=4, block="bottleneck"), (8, 8, 3)),
]


@pytest.fixture
def fast_compiles():
  """Deep unrolled nets compile slowly; XLA's optimizations buy nothing for a few tiny steps."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


@pytest.mark.parametrize("name,options,shape", TINY, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(TINY)])
def test_every_model_trains_a_few_steps(name, options, shape, fast_compiles):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (64,) + shape, dtype=np.uint8)
  y = (x.reshape(64, -1).mean(1) > 127).astype(np.int32)
  c = config_lib.base_config().train
  c.batch_size, c.epochs, c.epoch_size, c.steps_per_call, c.lr_schedule = 16, 2, 32, 2, "0:0.05"
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
  # MC-dropout: dropout on (keys differ), BatchNorm frozen (one example alone gives the same result).
  xs = jnp.asarray(rng.normal(size=(4,) + shape), jnp.float32)
  v = before.variables  # fresh weights: a tiny trained net may have dead ReLUs
  a, _ = model.apply(v, xs, mc_dropout=True, rngs={"dropout": jax.random.key(1)})
  b, _ = model.apply(v, xs, mc_dropout=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(a, b)
  e_all = model.apply(v, xs)[1]
  e_one = model.apply(v, xs[:1])[1]
  np.testing.assert_allclose(e_one[0], e_all[0], rtol=1e-4, atol=1e-5)
