"""Very deep CNNs for text (VDCNN, Conneau et al. 2017): SVP's text target and proxy.

Inputs are int32 token ids `(batch, length)` with 0 = padding (characters in the paper,
any vocabulary here; `vocab_size` is filled in from the dataset by the loop). Layout:

* a `dim`-wide lookup table (16 in the paper; padding embeds to zero);
* a temporal conv3 with `width` filters (64);
* four stages of `width`, 2x, 4x, 8x filters; each stage has `blocks[s]` conv blocks,
  a block being (conv3 -> temporal BN -> ReLU) twice, optionally with an identity
  shortcut (`shortcut=True`; 1x1 conv + BN where the width changes); stages are separated
  by a max-pool of size 3 and stride 2 that halves the length;
* k-max pooling (`kmax` = 8) over time, keeping the k largest activations per channel in
  their original order (short inputs are zero-padded up to k);
* two fully connected layers of `fc_width` (2048) with ReLU; the output of the second is
  the embedding, the head (`Classifier`) adds the last layer.

Depth is the paper's count of convolutional layers: 1 + 2 * sum(blocks), i.e. 9 for
blocks (1, 1, 1, 1) and 29 for (5, 5, 2, 2). `block_dropout > 0` adds dropout after each
block and after the first FC layer, active in training and in MC-dropout mode.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxal.models.batch_norm import BatchNorm

BLOCKS = {9: (1, 1, 1, 1), 17: (2, 2, 2, 2), 29: (5, 5, 2, 2), 49: (8, 8, 5, 3)}


def kmax_pool(x: jax.Array, k: int) -> jax.Array:
  """The `k` largest values per channel of `x (batch, length, channels)`, in time order.

  Args:
    x: activations, `(batch, length, channels)`.
    k: how many values to keep per channel.
  Returns:
    `(batch, k, channels)`; inputs shorter than `k` are zero-padded at the end first.
  """
  if x.shape[1] < k:
    x = jnp.pad(x, ((0, 0), (0, k - x.shape[1]), (0, 0)))
  xt = jnp.swapaxes(x, 1, 2)  # (batch, channels, length)
  _, idx = jax.lax.top_k(xt, k)
  idx = jnp.sort(idx, axis=-1)  # keep time order
  return jnp.swapaxes(jnp.take_along_axis(xt, idx, axis=-1), 1, 2)


class ConvBlock(nn.Module):
  """(conv3 -> BN -> ReLU) x 2, with an optional shortcut around the pair."""

  filters: int
  shortcut: bool = False
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool, mc_dropout: bool = False):
    y = x
    for i in range(2):
      y = nn.Conv(self.filters, (3,), padding="SAME", use_bias=False, name=f"conv{i}")(y)
      y = BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i}")(y)
      if i == 0 or not self.shortcut:
        y = nn.relu(y)
    if self.shortcut:
      if x.shape[-1] != self.filters:
        x = nn.Conv(self.filters, (1,), use_bias=False, name="proj")(x)
        x = BatchNorm(use_running_average=not train, momentum=0.9, name="proj_bn")(x)
      y = nn.relu(x + y)
    if self.dropout > 0:
      y = nn.Dropout(self.dropout)(y, deterministic=not (train or mc_dropout))
    return y


class VDCNN(nn.Module):
  """VDCNN backbone; returns the second FC layer's ReLU output."""

  blocks: Sequence[int] = BLOCKS[9]
  vocab_size: int = 70
  dim: int = 16
  width: int = 64
  fc_width: int = 2048
  kmax: int = 8
  shortcut: bool = False
  block_dropout: float = 0.0

  def __post_init__(self):
    if len(self.blocks) != 4 or min(self.blocks) < 1:
      raise ValueError(f"blocks must be 4 positive counts, got {self.blocks}")
    if min(self.vocab_size, self.dim, self.width, self.fc_width, self.kmax) < 1:
      raise ValueError("vocab_size, dim, width, fc_width and kmax must be >= 1")
    super().__post_init__()

  @nn.compact
  def __call__(self, ids, *, train: bool = False, mc_dropout: bool = False):
    ids = ids.astype(jnp.int32)
    x = nn.Embed(self.vocab_size, self.dim, name="embed")(ids)
    x = x * (ids > 0)[..., None].astype(x.dtype)
    x = nn.Conv(self.width, (3,), padding="SAME", name="stem_conv")(x)
    for s, n in enumerate(self.blocks):
      if s > 0:
        x = nn.max_pool(x, (3,), strides=(2,), padding="SAME")
      for b in range(n):
        x = ConvBlock(self.width * 2**s, self.shortcut, self.block_dropout,
                      name=f"stage{s}_block{b}")(x, train=train, mc_dropout=mc_dropout)
    x = kmax_pool(x, self.kmax).reshape((x.shape[0], -1))
    for i in range(2):
      x = nn.relu(nn.Dense(self.fc_width, name=f"fc{i}")(x))
      if self.block_dropout > 0 and i == 0:
        x = nn.Dropout(self.block_dropout)(x, deterministic=not (train or mc_dropout))
    return x

  @property
  def depth(self) -> int:
    return 1 + 2 * sum(self.blocks)

  @property
  def dropout_in_backbone(self) -> bool:
    return self.block_dropout > 0

  @property
  def label(self) -> str:
    return f"vdcnn{self.depth}" + ("" if self.width == 64 else f"(w{self.width})")


def _preset(depth):
  def make(vocab_size: int = 70, dim: int = 16, width: int = 64, fc_width: int = 2048, kmax: int = 8,
           shortcut: bool = False, block_dropout: float = 0.0) -> VDCNN:
    return VDCNN(BLOCKS[depth], vocab_size, dim, width, fc_width, kmax, shortcut, block_dropout)
  make.__doc__ = f"VDCNN-{depth} backbone (see the module docstring for the options)."
  return make


vdcnn9, vdcnn17, vdcnn29, vdcnn49 = _preset(9), _preset(17), _preset(29), _preset(49)
