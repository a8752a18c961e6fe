"""The deep nets' block types train a few steps at narrow widths.

ResNet-50 and pre-activation ResNet-164 differ from the shallow variants built here only in
how many identical blocks each stage repeats (their presets' depths and parameter counts are
checked in `test_models_vision.py`), so one bottleneck block per stage runs the same code:
the ImageNet stem, the bottleneck blocks, the projection shortcuts and every stride. VGG-19
runs VGG-16's code path (`test_models_vision.py` trains VGG-16 and VGG-11).
"""

import pytest

from tests.zoo_helpers import fast_compiles, train_a_few_steps  # noqa: F401

DEEP = [
    # ResNet-50's blocks: bottleneck, ImageNet stem, one block per stage.
    ("jaxal.models.resnet:ResNet", dict(stage_sizes=(1, 1, 1, 1), block="bottleneck", stem="imagenet", width=2),
     (16, 16, 3)),
    ("preact_resnet20", dict(width=4, block_dropout=0.1), (8, 8, 3)),
    # ResNet-164's blocks: pre-activation bottleneck with projection shortcuts, one per stage.
    ("jaxal.models.preact_resnet:PreactResNet", dict(blocks_per_stage=1, bottleneck=True, width=2), (8, 8, 3)),
]


@pytest.mark.parametrize("name,options,shape", DEEP, ids=["resnet50_blocks", "preact_resnet20",
                                                          "preact_resnet164_blocks"])
def test_deep_model_trains_a_few_steps(name, options, shape, fast_compiles):  # noqa: F811
  train_a_few_steps(name, options, shape)
