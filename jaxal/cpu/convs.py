"""Convolutions for XLA:CPU: im2col and per-pixel matmuls for tiny maps, fenced inputs.

XLA:CPU's convolution falls off a cliff on tiny feature maps: a 3x3 conv with 512 channels
on 2x2 maps ran at ~1-2 GFLOP/s (forward and backward) against 60-200 GFLOP/s for the same
work on larger maps (benchmarks/NOTES.md §2). There, an im2col rewrite -- pad, take the
kh*kw shifted (strided) slices, concatenate them along channels, one matmul -- wins, and
1x1 convolutions (a strided slice and a matmul) win at every size measured.

Where the input map has fewer pixels than the kernel (2x2 or 1x1 maps under a 3x3 kernel),
most of im2col's patch is padding. `dense_conv` computes the convolution as the dense layer
between pixels that it is: one matmul per (output pixel, input pixel) pair that a kernel tap
joins, so no FLOP is spent on padding (NOTES §6h).

`per_shape_conv` is the CPU policy's choice per static shape (`runtime.conv_impl =
"per_shape"`): `dense_conv` where `use_dense` says so, im2col where `use_im2col` does, else
XLA's convolution with a fenced input under differentiation (`fence_input`: XLA:CPU then
does not recompute the input's elementwise producers inside the transposed copy that the
kernel gradient needs; training steps up to ~9% faster, NOTES §6f). Accelerators never get
here: `models.layers.Conv` calls XLA's convolution under the stock policy.
"""

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Largest output map (pixels) that "auto" sends to im2col for kernels bigger than 1x1:
# measured on a 2-core CPU, batch 128 (benchmarks/NOTES.md §2): im2col won at 2x2 outputs
# (25-60x), tied at 4x4 with stride 2 and lost at 4x4 with stride 1 and above.
SMALL_MAP_PIXELS = 4
# Most (output pixel, input pixel) pairs for which "auto" uses `dense_conv` (one matmul per
# pair): measured at batch 128 (NOTES §6h), 16 pairs (2x2 maps, 3x3 stride 1) won 1.5-1.8x
# over im2col and 1 pair (1x1 maps) 7x; 25 pairs (4x4 -> 2x2, stride 2) tied, and 100-121
# (4x4 and 8x8 maps) won 1.1-1.3x per conv but doubled A(2,4)'s compile for 3% of its step.
# 0 turns it off (benchmarks/train_step.py --no-dense-convs).
DENSE_MAX_PAIRS = 16


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
  return int(np.prod(_output_shape(in_spatial, kernel_spatial, strides, padding))) <= SMALL_MAP_PIXELS


def _explicit_pads(in_spatial, kernel_spatial, strides, padding):
  if isinstance(padding, str):
    return [tuple(p) for p in lax.padtype_to_pads(in_spatial, kernel_spatial, strides, padding)]
  return [tuple(p) for p in padding]


def _output_shape(in_spatial, kernel_spatial, strides, padding):
  pads = _explicit_pads(in_spatial, kernel_spatial, strides, padding)
  return [_out_size(n, k, s, p) for n, k, s, p in zip(in_spatial, kernel_spatial, strides, pads)]


@functools.lru_cache(maxsize=256)
def _pixel_pairs(in_spatial, kernel_spatial, strides, padding):
  pads = _explicit_pads(in_spatial, kernel_spatial, strides, padding)
  out = _output_shape(in_spatial, kernel_spatial, strides, padding)
  triples = []
  for o, out_pixel in enumerate(np.ndindex(*out)):
    for t, tap in enumerate(np.ndindex(*kernel_spatial)):
      source = [q * s - p[0] + k for q, s, p, k in zip(out_pixel, strides, pads, tap)]
      if all(0 <= v < n for v, n in zip(source, in_spatial)):
        triples.append((o, int(np.ravel_multi_index(source, in_spatial)), t))
  return tuple(out), tuple(triples)


def pixel_pairs(in_spatial, kernel_spatial, strides, padding):
  """The output map's shape and the (output pixel, input pixel, kernel tap) triples, as flat
  row-major indices, of every tap that lands inside the input (padding excluded)."""
  as_tuple = lambda v: tuple(int(d) for d in v)
  padding = padding if isinstance(padding, str) else tuple(as_tuple(p) for p in padding)
  return _pixel_pairs(as_tuple(in_spatial), as_tuple(kernel_spatial), as_tuple(strides), padding)


def use_dense(in_spatial: Sequence[int], kernel_spatial: Sequence[int], strides: Sequence[int], padding) -> bool:
  """The "auto" rule for `dense_conv` on CPU: few pixel pairs, and fewer than im2col's rows."""
  if all(k == 1 for k in kernel_spatial):
    return False  # a 1x1 kernel has no padding taps to skip: im2col's single matmul
  if int(np.prod(_output_shape(in_spatial, kernel_spatial, strides, padding))) > DENSE_MAX_PAIRS:
    return False  # (nearly) every output pixel has a pair of its own: too many
  out, triples = pixel_pairs(in_spatial, kernel_spatial, strides, padding)
  return 0 < len(triples) <= DENSE_MAX_PAIRS and len(triples) < int(np.prod(out)) * int(np.prod(kernel_spatial))


def dense_conv(lhs, rhs, window_strides, padding, precision=None):
  """Channels-last convolution as a sum of per-pixel matmuls: output pixel o gets
  `x[:, p] @ kernel[tap]` for every input pixel p that a kernel tap joins to it.

  Exact FLOPs (none on padding) and no patches; XLA differentiates it into the same kind of
  matmuls. Partial sums accumulate in float32 at least.
  """
  kernel_spatial, cin, cout = rhs.shape[:-2], rhs.shape[-2], rhs.shape[-1]
  n, in_spatial = lhs.shape[0], lhs.shape[1:-1]
  out, triples = pixel_pairs(in_spatial, kernel_spatial, tuple(window_strides), padding)
  # Split, not indexed: the gradient of a split is one concatenate, of each index a padded copy.
  pixels = [v.reshape(n, cin) for v in jnp.split(lhs.reshape(n, -1, cin), int(np.prod(in_spatial)), axis=1)]
  taps = [v.reshape(cin, cout) for v in jnp.split(rhs.reshape(-1, cin, cout), int(np.prod(kernel_spatial)), axis=0)]
  acc_dtype = jnp.promote_types(jnp.result_type(lhs, rhs), jnp.float32)
  sums = [None] * int(np.prod(out))
  for o, p, t in triples:
    term = lax.dot_general(pixels[p], taps[t], (((1,), (0,)), ((), ())), precision=precision,
                           preferred_element_type=acc_dtype)
    sums[o] = term if sums[o] is None else sums[o] + term
  zero = jnp.zeros((n, cout), acc_dtype)
  y = jnp.stack([zero if v is None else v for v in sums], axis=1)
  return y.reshape((n, *out, cout)).astype(jnp.result_type(lhs, rhs))


def im2col_conv(lhs, rhs, window_strides, padding, precision=None):
  """Channels-last convolution as pad + shifted strided slices + one matmul."""
  kernel_spatial, cin, cout = rhs.shape[:-2], rhs.shape[-2], rhs.shape[-1]
  in_spatial = lhs.shape[1:-1]
  padding = _explicit_pads(in_spatial, kernel_spatial, window_strides, padding)
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


def _fence(x, witness):
  """`x`, written to its own buffer: XLA:CPU fuses nothing across a conditional.

  XLA:CPU removes `lax.optimization_barrier` before fusion, so the fence is a `lax.cond`
  whose predicate XLA cannot fold but which is always true (an integer with its low bit set
  is never zero). The predicate reads the first element of `witness`, an array that is
  ready early (a weight), so it waits for nothing, and that is replicated, so it needs no
  cross-device read.
  """
  first = witness.reshape(-1)[0].astype(jnp.float32)
  bits = lax.bitcast_convert_type(first, jnp.int32)
  return lax.cond((bits | 1) != 0, lambda v: v, lambda v: -v, x)


@jax.custom_vjp
def fence_input(x, witness):
  """Identity on `x`; under `jax.grad` the value saved for the backward pass is fenced.

  The kernel gradient of XLA:CPU's convolution reads the input transposed to (C, H, W, N).
  Left alone, XLA fuses the input's producers (BatchNorm, residual add, ReLU: often two
  blocks' worth) into that transpose, which then gathers from several tensors with strided
  reads: 3-14 ms per 8 MB tensor against under 1 ms for a plain transpose (NOTES §6f).
  Fencing costs one copy. Plain evaluation runs the primal: no fence, no copy.
  """
  del witness
  return x


def _fence_input_fwd(x, witness):
  return _fence(x, witness), witness


def _fence_input_bwd(witness, g):
  return g, jnp.zeros_like(witness)  # callers pass a stop_gradient'ed witness


fence_input.defvjp(_fence_input_fwd, _fence_input_bwd)



def per_shape_conv(lhs, rhs, window_strides, padding, dimension_numbers, precision=None):
  """The CPU policy's convolution for this shape (see the module docstring). Callers check
  `applies` (channels last, no dilation or groups)."""
  strides = tuple(window_strides)
  if use_dense(lhs.shape[1:-1], rhs.shape[:-2], strides, padding):
    return dense_conv(lhs, rhs, strides, padding, precision)
  if use_im2col(lhs.shape[1:-1], rhs.shape[:-2], strides, padding):
    return im2col_conv(lhs, rhs, strides, padding, precision)
  fenced = fence_input(lhs, lax.stop_gradient(rhs))
  return lax.conv_general_dilated(fenced, rhs, strides, padding, dimension_numbers=dimension_numbers,
                                  precision=precision)
