"""Max-pooling as the models call it: stock `nn.max_pool`, or the CPU policy's backward.

`max_pool_2x2` (non-overlapping windows, the small CNN's) and `max_pool_3x3_s2` (the ResNet
stems') give `nn.max_pool`'s values and gradients under every policy; under the CPU policy
(`runtime.kernels = "cpu"`) the backward avoids select-and-scatter (`jaxal.cpu.pooling`).
"""

import flax.linen as nn

from jaxal import runtime as runtime_lib
from jaxal.cpu import pooling as cpu_pooling


def max_pool_2x2(x, runtime: runtime_lib.Runtime = runtime_lib.STOCK):
  """`nn.max_pool(x, (2, 2), strides=(2, 2))` on NHWC maps (odd trailing rows and columns
  are dropped, as VALID pooling does)."""
  if runtime.cpu_kernels:
    _, h, w, _ = x.shape
    return cpu_pooling.max_pool_2x2_even(x[:, :h // 2 * 2, :w // 2 * 2])
  return nn.max_pool(x, (2, 2), strides=(2, 2))


def max_pool_3x3_s2(x, runtime: runtime_lib.Runtime = runtime_lib.STOCK):
  """`nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")` on NHWC maps (ResNet stems)."""
  if runtime.cpu_kernels:
    return cpu_pooling.max_pool_3x3_s2(x)
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
