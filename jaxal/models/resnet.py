"""ResNet-18, -34 and -50 (He et al. 2016), per `feature_space_complexity_dal.md` appendix B.1.

Stages of 64, 128, 256 and 512 filters with [2,2,2,2] / [3,4,6,3] basic blocks (18, 34) or
[3,4,6,3] bottleneck blocks (50); the blocks are the ResNet grid's. `stem="imagenet"` is the
7x7 stride-2 conv plus 3x3 stride-2 max-pool; `stem="cifar"` (default) a 3x3 stride-1 conv
and no pool. `width` scales the filters (64 in the paper) for narrow CPU variants. The
embedding is the globally pooled last stage (512 or 2048 wide at full width). Depth counts
convs on the main path plus the dense layer: 18, 34 and 50. `block_dropout > 0` adds
dropout inside every block (before its last conv), active in training and MC-dropout mode.
"""

from typing import Sequence

import flax.linen as nn

from jaxal.models import layers
from jaxal.models.base import global_avg_pool
from jaxal.models.pooling import max_pool_3x3_s2
from jaxal.models.resnet_grid import BLOCKS, BatchNorm, Conv

STAGES = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


class ResNet(nn.Module):
  stage_sizes: Sequence[int]
  block: str = "basic"
  stem: str = "cifar"
  width: int = 64
  block_dropout: float = 0.0

  def __post_init__(self):
    if self.stem not in ("cifar", "imagenet"):
      raise ValueError(f"stem must be 'cifar' or 'imagenet', got {self.stem!r}")
    if not 0.0 <= self.block_dropout < 1.0:
      raise ValueError(f"block_dropout must be in [0, 1), got {self.block_dropout}")
    if self.width < 1:
      raise ValueError(f"width must be >= 1, got {self.width}")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool = False, mc_dropout: bool = False):
    if self.stem == "imagenet":
      x = Conv(self.width, (7, 7), strides=2, name="stem_conv")(x)
    else:
      x = Conv(self.width, (3, 3), name="stem_conv")(x)
    x = nn.relu(BatchNorm(use_running_average=not train, name="stem_bn")(x))
    if self.stem == "imagenet":
      x = max_pool_3x3_s2(x, layers.runtime_of(self))  # 3x3/2 SAME
    block_cls = BLOCKS[self.block]
    for s, n in enumerate(self.stage_sizes):
      for b in range(n):
        x = block_cls(self.width * 2**s, strides=2 if (s > 0 and b == 0) else 1, dropout=self.block_dropout,
                      name=f"stage{s}_block{b}")(x, train=train, mc_dropout=mc_dropout)
    return global_avg_pool(x)

  @property
  def depth(self) -> int:
    return sum(self.stage_sizes) * BLOCKS[self.block].convs_per_block + 2

  @property
  def dropout_in_backbone(self) -> bool:
    return self.block_dropout > 0

  @property
  def label(self) -> str:
    return f"resnet{self.depth}" + ("" if self.width == 64 else f"(w{self.width})")


def _preset(depth):
  def make(stem: str = "cifar", width: int = 64, block_dropout: float = 0.0) -> ResNet:
    block, stages = STAGES[depth]
    return ResNet(stages, block, stem, width, block_dropout)
  make.__doc__ = f"ResNet-{depth} backbone."
  return make


resnet18, resnet34, resnet50 = _preset(18), _preset(34), _preset(50)
