"""Rows and distances shared by the k-center kernels: storage, the direct form, the guard.

Every entry of the greedy is a squared distance in the direct form `_row_d2` (a fixed
summation order, so a (row, center) pair gets the same bits however it is read). The
expanded form `|x|^2 + |c|^2 - 2 x.c` reads rows at GEMM speed but rounds differently; it
only decides which pairs need the direct form, through `_expanded_lower_bound`: the expanded
value less both forms' joint round-off bound, never above the direct value.
"""

import jax
import jax.numpy as jnp


def _stored(x):
  """bfloat16 rows as their uint16 bit patterns (integer gathers are fast on XLA:CPU)."""
  return jax.lax.bitcast_convert_type(x, jnp.uint16) if x.dtype == jnp.bfloat16 else x


def _load(v):
  """float32 values of stored rows; bfloat16 bits widen exactly by a 16-bit shift."""
  if v.dtype == jnp.uint16:
    return jax.lax.bitcast_convert_type(v.astype(jnp.uint32) << 16, jnp.float32)
  return v.astype(jnp.float32)


_LANES = 16


def _row_d2(rows, xu):
  """Squared distances of stored rows to `xu` (broadcast against `rows`), as a direct sum of
  squared differences in a fixed order: lane `l` of 16 adds the columns `j = l (mod 16)` in
  increasing `j`, then a halving tree adds the lanes (a short last slice is padded with
  zeros, which add exactly). Written as elementwise adds, which XLA does not reorder, the
  bits depend only on the two vectors: a library row reduction changed its order with the
  row count for d < 128 (NOTES §7c), and every kernel here relies on a row getting the same
  value whether it is read flat, tiled, gathered or as one of several centers' columns. The
  barrier keeps consumers (a `minimum`) out of the fusion. Each square passes through a
  `maximum(., 0)` (a no-op on its value) so that no fusion contracts it and the add into a
  fused multiply-add: XLA:CPU did so in some fusions and not in others, which changed the
  bits of 13% of the rows at d = 32 between two jitted programs."""
  d = rows.shape[-1]
  acc = None
  for lo in range(0, d, _LANES):
    t = _load(rows[..., lo:lo + _LANES]) - xu[..., lo:lo + _LANES]
    t = jnp.maximum(t * t, 0.0)
    if t.shape[-1] < _LANES:
      t = jnp.concatenate([t, jnp.zeros(t.shape[:-1] + (_LANES - t.shape[-1],), t.dtype)], axis=-1)
    acc = t if acc is None else acc + t
  width = _LANES
  while width > 1:
    width //= 2
    acc = acc[..., :width] + acc[..., width:2 * width]
  return jax.lax.optimization_barrier(acc[..., 0])


# Unit round-off of float32, and the guard's slack (`_expanded_lower_bound`): any float32
# evaluation order of a length-d dot or sum of squares is within (d + 2) * eps of its terms'
# absolute sum, twice over (the expanded form and the direct form), doubled again for margin.
_EPS32 = 2.0 ** -24
_GUARD = 4.0


def _norms(xf):
  """Squared and plain row norms (the guard's inputs)."""
  sq = jnp.sum(xf * xf, axis=1)
  return sq, jnp.sqrt(sq)


def _expanded_lower_bound(xr, rsq, rnorm, xc, csq, cnorm):
  """(rows, centers) lower bounds on the direct-form squared distances of float32 rows `xr`
  to centers `xc` (with their squared and plain norms): the expanded form, one GEMM, less
  the two forms' joint round-off bound."""
  d = xr.shape[1]
  approx = rsq[:, None] + csq[None, :] - 2.0 * jnp.dot(xr, xc.T, precision=jax.lax.Precision.HIGHEST)
  return approx - (_GUARD * (d + 2) * _EPS32) * (rnorm[:, None] + cnorm[None, :]) ** 2
