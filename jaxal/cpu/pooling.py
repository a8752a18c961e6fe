"""Max-pooling backward passes without select-and-scatter, for XLA:CPU.

Same forward and same gradient as `nn.max_pool` (each window's gradient goes to the first
input holding its max, row-major, as XLA's select-and-scatter does), computed as elementwise
passes in custom VJPs: 4.3-4.7x faster forward+backward on the CPU (benchmarks/NOTES.md §2, §6).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


@jax.custom_vjp
def max_pool_2x2_even(x):
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _max_pool_2x2_fwd(x):
  out = max_pool_2x2_even(x)
  return out, (x, out)


def _max_pool_2x2_bwd(res, g):
  x, out = res
  n, h, w, c = x.shape
  blocks = x.reshape(n, h // 2, 2, w // 2, 2, c)
  taken = jnp.zeros(out.shape, bool)
  parts = []
  for i in range(2):  # row-major window order: the first input holding the max gets g
    row = []
    for j in range(2):
      hit = (blocks[:, :, i, :, j] == out) & ~taken
      taken = taken | hit
      row.append(jnp.where(hit, g, jnp.zeros((), g.dtype)))
    parts.append(jnp.stack(row, axis=3))  # (n, h/2, w/2, 2, c)
  return (jnp.stack(parts, axis=2).reshape(x.shape),)


max_pool_2x2_even.defvjp(_max_pool_2x2_fwd, _max_pool_2x2_bwd)


def _pool_3x3_s2_geometry(h: int, w: int):
  """SAME 3x3/2 pooling of an h x w map: output size (oh, ow) and total padding (ph, pw),
  of which the low side gets half (rounded down), as XLA pads."""
  oh, ow = -(-h // 2), -(-w // 2)
  return oh, ow, max((oh - 1) * 2 + 3 - h, 0), max((ow - 1) * 2 + 3 - w, 0)


def _pool_3x3_s2_views(x):
  """The 9 stride-2 views of `x`, SAME-padded with -inf, in row-major window order: view
  k = 3i + j holds input (2r + i - ph // 2, 2s + j - pw // 2)."""
  n, h, w, c = x.shape
  oh, ow, ph, pw = _pool_3x3_s2_geometry(h, w)
  xp = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), constant_values=-jnp.inf)
  return [lax.slice(xp, (0, i, j, 0), (n, i + 2 * oh - 1, j + 2 * ow - 1, c), (1, 2, 2, 1))
          for i in range(3) for j in range(3)]


def _max_pool_3x3_s2_xla(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")


@jax.custom_vjp
def max_pool_3x3_s2(x):
  return _max_pool_3x3_s2_xla(x)


def _max_pool_3x3_s2_fwd(x):
  out = _max_pool_3x3_s2_xla(x)
  views = _pool_3x3_s2_views(x)
  first = jnp.full(out.shape, 8, jnp.int8)  # the first window position holding the max
  for k in range(7, -1, -1):
    first = jnp.where(views[k] == out, jnp.int8(k), first)
  return out, (first, x.shape)


def _max_pool_3x3_s2_bwd(res, g):
  first, (_, h, w, _) = res
  oh, ow, ph, pw = _pool_3x3_s2_geometry(h, w)
  total = None
  for k in range(9):
    i, j = divmod(k, 3)
    lo_h, lo_w = i - ph // 2, j - pw // 2  # output (r, s) of view k sits on input (2r + lo_h, 2s + lo_w)
    part = jnp.where(first == k, g, jnp.zeros((), g.dtype))
    placed = lax.pad(part, jnp.zeros((), g.dtype),
                     ((0, 0, 0), (lo_h, h - lo_h - 2 * oh + 1, 1), (lo_w, w - lo_w - 2 * ow + 1, 1), (0, 0, 0)))
    total = placed if total is None else total + placed
  return (total,)


max_pool_3x3_s2.defvjp(_max_pool_3x3_s2_fwd, _max_pool_3x3_s2_bwd)
