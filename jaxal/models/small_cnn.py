"""A small CNN for 28x28 and 8x8 inputs: the CPU workhorse.

conv3x3(w) -> BN -> ReLU -> max-pool 2 -> conv3x3(2w) -> BN -> ReLU -> max-pool 2 ->
flatten -> dense(embed) -> ReLU (the embedding) -> [head: dropout -> dense]. A pool is
skipped when the map is already 2 pixels or smaller, so 8x8 inputs work. Depth counts the
two convs and two dense layers (4). `block_dropout > 0` adds dropout after each conv block
and before the embedding layer (as in MC-dropout CNNs such as BaaL's), active in training
and in MC-dropout mode.
"""

import flax.linen as nn

from jaxal.models import layers
from jaxal.models.batch_norm import BatchNorm
from jaxal.models.layers import Conv
from jaxal.models.pooling import max_pool_2x2


class SmallCNN(nn.Module):
  width: int = 32
  embed: int = 128
  block_dropout: float = 0.0

  def __post_init__(self):
    if self.width < 1 or self.embed < 1:
      raise ValueError(f"width and embed must be >= 1, got {self.width}, {self.embed}")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool = False, mc_dropout: bool = False):
    drop = lambda h: nn.Dropout(self.block_dropout)(h, deterministic=not (train or mc_dropout)) \
        if self.block_dropout > 0 else h
    for i, features in enumerate((self.width, 2 * self.width)):
      x = Conv(features, (3, 3), padding="SAME", use_bias=False, name=f"conv{i}")(x)
      x = nn.relu(BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i}")(x))
      if x.shape[1] > 2:
        x = max_pool_2x2(x, layers.runtime_of(self))  # the CPU policy's backward is faster
      x = drop(x)
    x = x.reshape((x.shape[0], -1))
    return nn.relu(nn.Dense(self.embed, name="embed")(x))

  depth = 4

  @property
  def dropout_in_backbone(self) -> bool:
    return self.block_dropout > 0

  @property
  def label(self) -> str:
    return f"small_cnn(w{self.width})"
