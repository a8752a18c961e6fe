"""The residual CNN family of Depth-Dropout and BBDropout, and its fixed members.

The layout follows `kckishan/Depth_and_Dropout` (ALGORITHMS.md §9):
* layer 0: conv5x5 (padding 1, no bias) -> LeakyReLU -> BN -> avg-pool 2, changing the
  width from the input channels to `width` (non-residual);
* layers 1..L-1: conv3x3 (SAME, no bias) -> LeakyReLU -> BN, added to the residual stream;
* global average pool -> residual MLP block (dense -> LeakyReLU -> BN, + input): the
  embedding; the `Classifier` head is the final linear layer.

`PlainCNN(layers=L)` is the fixed network (every mask 1): the paper's 1-, 5- and 9-layer
baselines are `layers` = 1, 5, 9. `widths="w0,w1,..."` gives each layer its own filter
count, which is how the Bayesian read-outs become a fixed architecture: a layer computes
`w_l` filters and its output is zero-padded to the `width` channels of the residual stream,
exactly what a binary filter mask does (0 drops the layer: the identity). Depth counts
conv layers with at least one filter, as the paper counts "1, 5 and 9 layers".

Layers are applied to `(S, batch, H, W, C)` maps: axis 0 holds structure samples, and
`GroupBatchNorm` normalizes each sample separately (the reference code runs one forward
pass per sample); fixed networks use S = 1.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = Any


def parse_widths(widths: str | tuple | list, layers: int, width: int) -> tuple[int, ...]:
  """`"64,32,0"` (or a sequence) -> per-layer filter counts; "" = `width` everywhere."""
  if isinstance(widths, str):
    widths = [int(w) for w in widths.split(",") if w.strip()]
  widths = tuple(int(w) for w in widths) or (width,) * layers
  if len(widths) != layers:
    raise ValueError(f"widths has {len(widths)} entries for {layers} layers")
  if widths[0] < 1 or any(not 0 <= w <= width for w in widths):
    raise ValueError(f"widths must be in [0, width={width}] with widths[0] >= 1, got {widths}")
  return widths


class GroupBatchNorm(nn.Module):
  """BatchNorm with statistics per leading group (structure sample) and a gated update.

  In training, each group `x[s]` is normalized with its own batch statistics; the running
  statistics move towards the groups' mean statistics, only where `active` is True (a layer
  beyond the sampled depth never updates, as in the reference code). Statistics are biased
  (divide by n) and kept in float32.
  """
  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: Array, *, train: bool, active: Array = True) -> Array:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    if train:
      axes = tuple(range(1, x.ndim - 1))
      xf = x.astype(jnp.float32)
      mean = jnp.mean(xf, axes, keepdims=True)
      var = jnp.mean(jnp.square(xf - mean), axes, keepdims=True)
      if not self.is_initializing():
        m = self.momentum
        new_mean = m * ra_mean.value + (1 - m) * mean.reshape(-1, c).mean(0)
        new_var = m * ra_var.value + (1 - m) * var.reshape(-1, c).mean(0)
        ra_mean.value = jnp.where(active, new_mean, ra_mean.value)
        ra_var.value = jnp.where(active, new_var, ra_var.value)
    else:
      mean, var = ra_mean.value, ra_var.value
    y = (x - mean.astype(x.dtype)) * jax.lax.rsqrt(var + self.epsilon).astype(x.dtype)
    return y * scale.astype(x.dtype) + bias.astype(x.dtype)


class ConvBlock(nn.Module):
  """conv -> LeakyReLU -> GroupBatchNorm -> (avg-pool 2) on `(S, batch, H, W, C)`."""
  features: int
  kernel: int = 3
  padding: Any = "SAME"
  pool: bool = False

  @nn.compact
  def __call__(self, x: Array, *, train: bool, active: Array = True) -> Array:
    s, b = x.shape[:2]
    y = nn.Conv(self.features, (self.kernel, self.kernel), padding=self.padding, use_bias=False,
                name="conv")(x.reshape((s * b,) + x.shape[2:]))
    y = nn.leaky_relu(y, 0.01)
    y = GroupBatchNorm(name="bn")(y.reshape((s, b) + y.shape[1:]), train=train, active=active)
    if self.pool and y.shape[2] >= 2:
      y = nn.avg_pool(y.reshape((s * b,) + y.shape[2:]), (2, 2), strides=(2, 2))
      y = y.reshape((s, b) + y.shape[1:])
    return y


def first_block(width: int, **kwargs) -> ConvBlock:
  """Layer 0 of the reference code: conv5x5 with padding 1, then avg-pool."""
  return ConvBlock(width, kernel=5, padding=((1, 1), (1, 1)), pool=True, **kwargs)


class ResidualMLP(nn.Module):
  """dense -> LeakyReLU -> GroupBatchNorm, plus the input: the reference's output block."""

  @nn.compact
  def __call__(self, h: Array, *, train: bool) -> Array:
    y = nn.leaky_relu(nn.Dense(h.shape[-1], name="dense")(h), 0.01)
    return GroupBatchNorm(name="bn")(y, train=train) + h


class PlainCNN(nn.Module):
  """The fixed residual CNN: `layers` conv layers, `width` channels (or per-layer `widths`)."""
  layers: int = 5
  width: int = 64
  widths: str = ""

  def __post_init__(self):
    if self.layers < 1 or self.width < 1:
      raise ValueError(f"layers and width must be >= 1, got {self.layers}, {self.width}")
    parse_widths(self.widths, self.layers, self.width)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: Array, *, train: bool = False, mc_dropout: bool = False) -> Array:
    del mc_dropout
    widths = parse_widths(self.widths, self.layers, self.width)
    h = pad_channels(first_block(widths[0], name="layer0")(x[None], train=train), self.width)
    for l in range(1, self.layers):
      if widths[l]:
        h = h + pad_channels(ConvBlock(widths[l], name=f"layer{l}")(h, train=train), self.width)
    h = jnp.mean(h, axis=(2, 3))
    return ResidualMLP(name="out")(h, train=train)[0]

  @property
  def depth(self) -> int:
    return sum(1 for w in parse_widths(self.widths, self.layers, self.width) if w)

  @property
  def label(self) -> str:
    widths = parse_widths(self.widths, self.layers, self.width)
    if all(w == self.width for w in widths):
      return f"plain_cnn(l{self.layers},w{self.width})"
    return f"plain_cnn({'-'.join(map(str, widths))})"


def pad_channels(y: Array, width: int) -> Array:
  """Zero-pads the last axis up to `width` channels."""
  extra = width - y.shape[-1]
  return y if extra == 0 else jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, extra)])
