"""VGG-11, -16 and -19 (Simonyan & Zisserman 2014), per `feature_space_complexity_dal.md` B.2.

Conv3x3 stacks with max-pools, then FC 4096 -> FC 4096 -> FC 1000 -> [head: FC C]. The
first FC layer is sized from the input resolution (flattened last feature map), not fixed
to 224x224; a pool is skipped once the map is 1 pixel wide (28x28 inputs). The embedding is
the ReLU output of the 1000-wide layer. `width` scales the conv filters (64 in the paper) and
`fc_width` the two 4096 layers, for narrow CPU variants; `batch_norm` adds BN after convs.
`fc_dropout` (0.5, as in the paper) follows each 4096 layer; `block_dropout > 0` adds
dropout after every conv stage. Both are active in training and in MC-dropout mode.
Depth is the standard name's count (convs plus three dense layers: 11, 16, 19); the paper's
extra 1000-wide layer is not counted.
"""

from typing import Sequence

import flax.linen as nn

from jaxal.models.batch_norm import BatchNorm
from jaxal.models.layers import Conv
from jaxal.models.resnet_grid import maybe_dropout

CONFIGS = {
    11: (1, 1, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}


class VGG(nn.Module):
  convs_per_stage: Sequence[int]
  width: int = 64
  fc_width: int = 4096
  embed: int = 1000
  batch_norm: bool = True
  fc_dropout: float = 0.5
  block_dropout: float = 0.0

  def __post_init__(self):
    if min(self.width, self.fc_width, self.embed) < 1:
      raise ValueError(f"width, fc_width and embed must be >= 1, got {self.width}, {self.fc_width}, {self.embed}")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool = False, mc_dropout: bool = False):
    for s, n in enumerate(self.convs_per_stage):
      features = min(self.width * 2**s, self.width * 8)
      for c in range(n):
        x = Conv(features, (3, 3), padding="SAME", use_bias=not self.batch_norm, name=f"conv{s}_{c}")(x)
        if self.batch_norm:
          x = BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{s}_{c}")(x)
        x = nn.relu(x)
      if x.shape[1] > 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      x = maybe_dropout(x, self.block_dropout, train or mc_dropout)
    x = x.reshape((x.shape[0], -1))
    for i in range(2):
      x = nn.relu(nn.Dense(self.fc_width, name=f"fc{i}")(x))
      x = nn.Dropout(self.fc_dropout)(x, deterministic=not (train or mc_dropout))
    return nn.relu(nn.Dense(self.embed, name="fc_embed")(x))

  @property
  def depth(self) -> int:
    return sum(self.convs_per_stage) + 3

  @property
  def dropout_in_backbone(self) -> bool:
    return self.fc_dropout > 0 or self.block_dropout > 0

  @property
  def label(self) -> str:
    return f"vgg{self.depth}" + ("" if self.width == 64 else f"(w{self.width})")


def _preset(depth):
  def make(width: int = 64, fc_width: int = 4096, embed: int = 1000, batch_norm: bool = True,
           fc_dropout: float = 0.5, block_dropout: float = 0.0) -> VGG:
    return VGG(CONFIGS[depth], width, fc_width, embed, batch_norm, fc_dropout, block_dropout)
  return make


vgg11, vgg16, vgg19 = _preset(11), _preset(16), _preset(19)
