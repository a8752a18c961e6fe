"""The active-iNAS modular ResNet grid A(B, blocks, stacks).

Follows `active_inas.md` §5.2 and ALGORITHMS.md §7.1:
* initial block: conv3x3(width) -> BN -> ReLU -> max-pool 3x3 stride 2 ("same");
* `stacks` stacks of `blocks` blocks each; the width doubles per stack; the first block
  of every stack but the first has stride 2 and a 1x1 conv + BN projection shortcut;
* head (in `Classifier`): global average pool -> dropout -> dense.

Depth counts conv layers on the main path plus the dense layer:
`|A| = blocks * stacks * beta + alpha`, with beta = 2 (basic) or 3 (bottleneck) and
alpha = 2 (the initial conv and the dense layer); projections are not counted.
Kernels use He-normal init, as in the Keras reference. Dropout lives in the head only, as
in active-iNAS, unless `block_dropout > 0`, which adds dropout inside every block (after the
ReLU before a block's last conv, as in wide ResNets), active in training and MC-dropout mode.
"""

import functools

import flax.linen as nn

from jaxal.models import batch_norm, layers, pooling
from jaxal.models.base import global_avg_pool

he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
# layers.Conv: nn.Conv's parameters; im2col + matmul for tiny maps on CPU (benchmarks/NOTES.md §2).
Conv = functools.partial(layers.Conv, use_bias=False, kernel_init=he_normal, padding="SAME")
BatchNorm = functools.partial(batch_norm.BatchNorm, momentum=0.9, epsilon=1e-5)


def maybe_dropout(x, rate: float, active: bool):
  """Dropout at `rate` when `active` (training or MC-dropout); nothing when the rate is 0."""
  return nn.Dropout(rate)(x, deterministic=not active) if rate > 0 else x


class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU, conv3x3-BN, add shortcut, ReLU."""

  filters: int
  strides: int = 1
  dropout: float = 0.0
  expansion = 1
  convs_per_block = 2

  @nn.compact
  def __call__(self, x, *, train: bool, mc_dropout: bool = False):
    norm = functools.partial(BatchNorm, use_running_average=not train)
    y = Conv(self.filters, (3, 3), strides=self.strides)(x)
    y = maybe_dropout(nn.relu(norm()(y)), self.dropout, train or mc_dropout)
    y = Conv(self.filters, (3, 3))(y)
    y = norm()(y)
    if x.shape[-1] != y.shape[-1] or self.strides != 1:
      x = norm(name="proj_bn")(Conv(y.shape[-1], (1, 1), strides=self.strides, name="proj")(x))
    return nn.relu(x + y)


class BottleneckBlock(nn.Module):
  """conv1x1-BN-ReLU, conv3x3-BN-ReLU, conv1x1(4x)-BN, add shortcut, ReLU."""

  filters: int
  strides: int = 1
  dropout: float = 0.0
  expansion = 4
  convs_per_block = 3

  @nn.compact
  def __call__(self, x, *, train: bool, mc_dropout: bool = False):
    norm = functools.partial(BatchNorm, use_running_average=not train)
    y = nn.relu(norm()(Conv(self.filters, (1, 1))(x)))
    y = nn.relu(norm()(Conv(self.filters, (3, 3), strides=self.strides)(y)))
    y = maybe_dropout(y, self.dropout, train or mc_dropout)
    y = norm(scale_init=nn.initializers.zeros)(Conv(self.filters * 4, (1, 1))(y))
    if x.shape[-1] != y.shape[-1] or self.strides != 1:
      x = norm(name="proj_bn")(Conv(y.shape[-1], (1, 1), strides=self.strides, name="proj")(x))
    return nn.relu(x + y)


BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


class ResNetGrid(nn.Module):
  """Backbone of A(B, blocks, stacks); returns the pooled embedding."""

  blocks: int = 1
  stacks: int = 1
  block: str = "basic"
  width: int = 64
  block_dropout: float = 0.0

  def __post_init__(self):
    if not 0.0 <= self.block_dropout < 1.0:
      raise ValueError(f"block_dropout must be in [0, 1), got {self.block_dropout}")
    if self.blocks < 1 or self.stacks < 1 or self.width < 1:
      raise ValueError(f"blocks, stacks and width must be >= 1, got {self.blocks}, {self.stacks}, {self.width}")
    if self.block not in BLOCKS:
      raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {self.block!r}")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool = False, mc_dropout: bool = False):
    block_cls = BLOCKS[self.block]
    x = Conv(self.width, (3, 3), name="stem_conv")(x)
    x = nn.relu(BatchNorm(use_running_average=not train, name="stem_bn")(x))
    x = pooling.max_pool_3x3_s2(x, layers.runtime_of(self))  # 3x3/2 SAME
    for s in range(self.stacks):
      for b in range(self.blocks):
        strides = 2 if (s > 0 and b == 0) else 1
        x = block_cls(self.width * 2**s, strides=strides, dropout=self.block_dropout,
                      name=f"stack{s}_block{b}")(x, train=train, mc_dropout=mc_dropout)
    return global_avg_pool(x)

  @property
  def depth(self) -> int:
    return self.blocks * self.stacks * BLOCKS[self.block].convs_per_block + 2

  @property
  def dropout_in_backbone(self) -> bool:
    return self.block_dropout > 0

  @property
  def label(self) -> str:
    suffix = "" if self.block == "basic" else f",{self.block}"
    return f"resnet_grid({self.blocks},{self.stacks}{suffix})"
