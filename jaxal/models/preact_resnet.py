"""Pre-activation CIFAR ResNets (He et al. 2016b), the SVP proxies and target.

A 3x3 conv with 16 filters, then three stages of 16, 32 and 64 filters with `n` blocks each,
then BN-ReLU and global average pooling. Basic pre-activation blocks (BN-ReLU-conv3x3, twice)
give depth 6n+2 (ResNet-20/56/110: n = 3, 9, 18); bottleneck blocks (BN-ReLU-conv1x1(c),
BN-ReLU-conv3x3(c), BN-ReLU-conv1x1(4c)) give 9n+2 (ResNet-164: n = 18).

Shortcuts that change shape: parameter-free for basic blocks (stride-2 subsampling and zero
channel padding, the CIFAR ResNets' "option A", which is what the published 0.27M/0.85M/1.7M
counts assume), a 1x1 projection for bottleneck blocks (as in the ResNet-164 paper).
`width` scales the filters (16 in the paper); `block_dropout > 0` adds dropout before the
last conv of every block (as in wide ResNets), active in training and MC-dropout mode.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from jaxal.models.base import global_avg_pool
from jaxal.models.resnet_grid import BatchNorm, Conv, maybe_dropout


def _shortcut_a(x, filters: int, strides: int):
  if strides > 1:
    x = x[:, ::strides, ::strides, :]
  pad = filters - x.shape[-1]
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (pad // 2, pad - pad // 2))) if pad else x


class PreactBasic(nn.Module):
  """BN-ReLU-conv3x3, BN-ReLU-[dropout]-conv3x3, plus the shortcut."""

  filters: int
  strides: int = 1
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool, mc_dropout: bool = False):
    norm = functools.partial(BatchNorm, use_running_average=not train)
    y = nn.relu(norm()(x))
    shortcut = _shortcut_a(x, self.filters, self.strides)
    y = Conv(self.filters, (3, 3), strides=self.strides)(y)
    y = maybe_dropout(nn.relu(norm()(y)), self.dropout, train or mc_dropout)
    y = Conv(self.filters, (3, 3))(y)
    return y + shortcut


class PreactBottleneck(nn.Module):
  """BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-[dropout]-conv1x1(4c), plus the shortcut."""

  filters: int
  strides: int = 1
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool, mc_dropout: bool = False):
    norm = functools.partial(BatchNorm, use_running_average=not train)
    pre = nn.relu(norm()(x))
    out = self.filters * 4
    shortcut = x
    if self.strides != 1 or x.shape[-1] != out:
      shortcut = Conv(out, (1, 1), strides=self.strides, name="proj")(pre)
    y = Conv(self.filters, (1, 1))(pre)
    y = Conv(self.filters, (3, 3), strides=self.strides)(nn.relu(norm()(y)))
    y = maybe_dropout(nn.relu(norm()(y)), self.dropout, train or mc_dropout)
    y = Conv(out, (1, 1))(y)
    return y + shortcut


class PreactResNet(nn.Module):
  blocks_per_stage: int
  bottleneck: bool = False
  width: int = 16
  block_dropout: float = 0.0

  def __post_init__(self):
    if self.blocks_per_stage < 1 or self.width < 1:
      raise ValueError(f"blocks and width must be >= 1, got {self.blocks_per_stage}, {self.width}")
    if not 0.0 <= self.block_dropout < 1.0:
      raise ValueError(f"block_dropout must be in [0, 1), got {self.block_dropout}")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, *, train: bool = False, mc_dropout: bool = False):
    block = PreactBottleneck if self.bottleneck else PreactBasic
    x = Conv(self.width, (3, 3), name="stem_conv")(x)
    for s in range(3):
      for b in range(self.blocks_per_stage):
        x = block(self.width * 2**s, strides=2 if (s > 0 and b == 0) else 1, dropout=self.block_dropout,
                  name=f"stage{s}_block{b}")(x, train=train, mc_dropout=mc_dropout)
    x = nn.relu(BatchNorm(use_running_average=not train, name="final_bn")(x))
    return global_avg_pool(x)

  @property
  def depth(self) -> int:
    return self.blocks_per_stage * (9 if self.bottleneck else 6) + 2

  @property
  def dropout_in_backbone(self) -> bool:
    return self.block_dropout > 0

  @property
  def label(self) -> str:
    return f"preact_resnet{self.depth}" + ("" if self.width == 16 else f"(w{self.width})")


def _preset(n, bottleneck):
  def make(width: int = 16, block_dropout: float = 0.0) -> PreactResNet:
    return PreactResNet(n, bottleneck, width, block_dropout)
  return make


preact_resnet20 = _preset(3, False)
preact_resnet56 = _preset(9, False)
preact_resnet110 = _preset(18, False)
preact_resnet164 = _preset(18, True)
