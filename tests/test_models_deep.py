"""Deep vision nets (ResNet-50, pre-activation ResNet-20/164, VGG-19) train a few steps at narrow widths."""

import pytest

from tests.zoo_helpers import fast_compiles, train_a_few_steps  # noqa: F401

DEEP = [
    ("resnet50", dict(width=2, stem="imagenet"), (16, 16, 3)),
    ("preact_resnet20", dict(width=4, block_dropout=0.1), (8, 8, 3)),
    ("preact_resnet164", dict(width=2), (8, 8, 3)),
    ("vgg19", dict(width=2, fc_width=8, embed=8), (8, 8, 3)),
]


@pytest.mark.parametrize("name,options,shape", DEEP, ids=[n for n, _, _ in DEEP])
def test_deep_model_trains_a_few_steps(name, options, shape, fast_compiles):  # noqa: F811
  train_a_few_steps(name, options, shape, steps_per_call=1)
