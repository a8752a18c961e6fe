"""Narrow depthwise convolutions as dense convolutions with diagonal kernels, for XLA:CPU.

XLA:CPU's grouped convolution was 4-6x slower than a dense convolution whose kernel is the
taps times the identity at 16 channels (forward + backward, batch 64), and a sum of shifted
slices compiled 5x slower (a 14-edge DARTS cell took minutes). On a GPU the dense form costs
C times the FLOPs and weight bytes of the grouped one, so only the CPU policy uses it.
"""

import jax
import jax.numpy as jnp

DENSE_MAX_CHANNELS = 64


def prefers_dense(channels: int) -> bool:
  return channels <= DENSE_MAX_CHANNELS


def diagonal_depthwise_conv(x, taps, stride: int = 1, dilation: int = 1):
  """Depthwise cross-correlation of NHWC `x` with `(k, k, C)` taps as one dense convolution."""
  k, c = taps.shape[0], x.shape[-1]
  pad = dilation * (k - 1) // 2
  kernel = taps[:, :, :, None] * jnp.eye(c, dtype=taps.dtype)
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), [(pad, pad), (pad, pad)],
                                      rhs_dilation=(dilation, dilation), dimension_numbers=("NHWC", "HWIO", "NHWC"))
