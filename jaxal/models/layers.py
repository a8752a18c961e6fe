"""`Conv`: `nn.Conv` with a faster convolution for small maps on XLA:CPU.

XLA:CPU's convolution falls off a cliff on tiny feature maps: a 3x3 conv with 512 channels
on 2x2 maps ran at ~1-2 GFLOP/s (forward and backward) against 60-200 GFLOP/s for the same
work on larger maps (benchmarks/NOTES.md §2). There, an im2col rewrite -- pad, take the
kh*kw shifted (strided) slices, concatenate them along channels, one matmul -- reaches
80-200 GFLOP/s. 1x1 convolutions (a strided slice and a matmul) also win at every size
measured. Elsewhere XLA's own convolution is kept.

`Conv` is `nn.Conv` itself (a subclass: same parameters `kernel` (kh, kw, cin, cout) and
`bias`, same auto names `Conv_N`), so checkpoints and parameter counts do not change. Its
`conv_impl` picks the algorithm at trace time from static shapes:
* "auto" (default): im2col where `use_im2col` says so and the default backend is CPU,
  XLA's convolution otherwise (GPUs and TPUs keep it);
* "xla": always `lax.conv_general_dilated`;
* "im2col": im2col wherever it applies (no dilation, no feature groups).
`override(impl)` (a context manager) or the environment variable `JAXAL_CONV_IMPL` force an
implementation for every "auto" layer traced meanwhile, e.g. to compare models; functions
already jitted keep what they traced.
"""

import contextlib
import os
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

IMPLS = ("auto", "xla", "im2col")
# Largest output map (pixels) that "auto" sends to im2col for kernels bigger than 1x1:
# measured on a 2-core CPU, batch 128 (benchmarks/NOTES.md §2): im2col won at 2x2 outputs
# (25-60x), tied at 4x4 with stride 2 and lost at 4x4 with stride 1 and above.
SMALL_MAP_PIXELS = 4
_override: Optional[str] = None


@contextlib.contextmanager
def override(impl: Optional[str]):
  """Forces `impl` for "auto" layers traced inside the block (None: no override)."""
  global _override
  if impl is not None and impl not in IMPLS:
    raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")
  old, _override = _override, impl
  try:
    yield
  finally:
    _override = old


def _channels_last(ndim: int, dimension_numbers) -> bool:
  """Whether `dimension_numbers` is nn.Conv's (N, spatial..., C) x (spatial..., I, O)."""
  spatial = tuple(range(1, ndim - 1))
  want = lax.ConvDimensionNumbers((0, ndim - 1) + spatial, (ndim - 1, ndim - 2) + tuple(range(ndim - 2)),
                                  (0, ndim - 1) + spatial)
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return tuple(map(tuple, dimension_numbers)) == tuple(map(tuple, want))
  shape = (1,) * ndim
  return lax.conv_dimension_numbers(shape, shape, dimension_numbers) == want


def _ones(v) -> bool:
  return v is None or all(int(d) == 1 for d in np.atleast_1d(v))


def applies(lhs, rhs, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
            feature_group_count: int = 1) -> bool:
  """Whether im2col can compute this convolution (no dilation or groups, channels last)."""
  return (feature_group_count == 1 and _ones(lhs_dilation) and _ones(rhs_dilation)
          and _channels_last(lhs.ndim, dimension_numbers))


def _out_size(size: int, k: int, s: int, pad) -> int:
  return (size + pad[0] + pad[1] - k) // s + 1


def use_im2col(in_spatial: Sequence[int], kernel_spatial: Sequence[int], strides: Sequence[int], padding) -> bool:
  """The "auto" rule on CPU: 1x1 kernels always, others when the output map is tiny."""
  if all(k == 1 for k in kernel_spatial):
    return True
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(in_spatial, kernel_spatial, strides, padding)
  else:
    pads = padding
  out = [_out_size(n, k, s, p) for n, k, s, p in zip(in_spatial, kernel_spatial, strides, pads)]
  return int(np.prod(out)) <= SMALL_MAP_PIXELS


def im2col_conv(lhs, rhs, window_strides, padding, precision=None):
  """Channels-last convolution as pad + shifted strided slices + one matmul."""
  kernel_spatial, cin, cout = rhs.shape[:-2], rhs.shape[-2], rhs.shape[-1]
  in_spatial = lhs.shape[1:-1]
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(in_spatial, kernel_spatial, window_strides, padding)
  padding = [tuple(p) for p in padding]
  out = [_out_size(n, k, s, p) for n, k, s, p in zip(in_spatial, kernel_spatial, window_strides, padding)]
  if any(p != (0, 0) for p in padding):
    # lax.pad also crops for negative padding, as the convolution does.
    lhs = lax.pad(lhs, jnp.zeros((), lhs.dtype), [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in padding] + [(0, 0, 0)])
  n = lhs.shape[0]
  cols = []
  for offset in np.ndindex(*kernel_spatial):
    start = (0,) + offset + (0,)
    limit = (n,) + tuple(o + (m - 1) * s + 1 for o, m, s in zip(offset, out, window_strides)) + (cin,)
    cols.append(lax.slice(lhs, start, limit, (1,) + tuple(window_strides) + (1,)))
  patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
  y = lax.dot_general(patches, rhs.reshape(-1, cout), (((patches.ndim - 1,), (0,)), ((), ())), precision=precision)
  return y


def _conv(impl: str, lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
          dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
          preferred_element_type=None):
  if impl == "auto":
    impl = _override or os.environ.get("JAXAL_CONV_IMPL") or "auto"
  xla = lambda: lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision, preferred_element_type=preferred_element_type)
  if (impl == "xla" or batch_group_count != 1 or preferred_element_type is not None
      or not applies(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count)):
    return xla()
  strides = tuple(window_strides)
  if impl == "auto" and not (jax.default_backend() == "cpu"
                             and use_im2col(lhs.shape[1:-1], rhs.shape[:-2], strides, padding)):
    return xla()
  return im2col_conv(lhs, rhs, strides, padding, precision)


def conv_auto(*args, **kwargs):
  return _conv("auto", *args, **kwargs)


def conv_xla(*args, **kwargs):
  return _conv("xla", *args, **kwargs)


def conv_im2col(*args, **kwargs):
  return _conv("im2col", *args, **kwargs)


_FNS = {"auto": conv_auto, "xla": conv_xla, "im2col": conv_im2col}


def max_pool_2x2(x):
  """`nn.max_pool(x, (2, 2), strides=(2, 2))` on NHWC maps as a reshape and a max.

  Same forward; its backward is an elementwise mask instead of XLA's select-and-scatter,
  4.7x faster on CPU (benchmarks/NOTES.md §2). On exact ties the gradient is shared among
  the tied inputs instead of going to one of them (ties after a ReLU sit at 0, where the
  ReLU's own gradient is 0, so the gradient reaching its input is the same).
  """
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class Conv(nn.Conv):
  """`nn.Conv` (identical parameters) whose algorithm `conv_impl` picks; see the module doc."""

  conv_impl: str = "auto"

  def __post_init__(self):
    if self.conv_impl not in IMPLS:
      raise ValueError(f"conv_impl must be one of {IMPLS}, got {self.conv_impl!r}")
    if self.conv_general_dilated_cls is None and self.conv_general_dilated in (None, *_FNS.values()):
      object.__setattr__(self, "conv_general_dilated", _FNS[self.conv_impl])
    super().__post_init__()

