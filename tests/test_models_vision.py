"""The vision zoo: published parameter counts, depths, stems, a few training steps.

The deep nets' training steps are in `test_models_deep.py`, in-block dropout in
`test_models_dropout.py`.
"""

import jax
import pytest

from jaxal import models
from tests.zoo_helpers import fast_compiles, train_a_few_steps  # noqa: F401


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
    # ResNet-18's code (basic blocks, CIFAR stem, every stride) with one block per stage
    ("jaxal.models.resnet:ResNet", dict(stage_sizes=(1, 1, 1, 1), width=4, block_dropout=0.1), (8, 8, 3)),
    ("vgg11", dict(width=4, fc_width=16, embed=8, batch_norm=False), (16, 16, 3)),
    # VGG-16/19's code (BatchNorm, in-block dropout, two convs per stage) in VGG-11's shape
    ("vgg11", dict(width=2, fc_width=8, embed=8, block_dropout=0.1), (8, 8, 3)),
    ("resnet_grid", dict(blocks=1, stacks=2, width=4, block="bottleneck"), (8, 8, 3)),
]


@pytest.mark.parametrize("name,options,shape", TINY,
                         ids=[f"{n.split(':')[-1]}-{i}" for i, (n, _, _) in enumerate(TINY)])
def test_every_model_trains_a_few_steps(name, options, shape, fast_compiles):  # noqa: F811
  train_a_few_steps(name, options, shape)
