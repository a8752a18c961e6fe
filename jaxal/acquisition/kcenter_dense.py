"""Greedy k-center (core-set; Sener & Savarese 2018; ALGORITHMS.md §3), jitted end to end.

Farthest-first traversal over Euclidean distance, starting from the labeled set as centers:
each pick is the point whose distance to its nearest center is largest, then that point
becomes a center. The whole loop runs on device (`lax.fori_loop`), with one compilation per
`(n, d, budget)` shape whatever the labeled count.

Memory is O(n*d) for the embeddings plus O(n) working space: the initial distances to the
labeled centers are computed a block of centers at a time with the expanded-norm GEMM
(clamped at 0). Each greedy step's distances are defined by the direct form `sum((x -
x_u)**2)` (no cancellation); with float32 storage a GEMV in the expanded form reads the rows
(as fast as BLAS) and only selects the rows that may change, within a proven round-off
bound, for the direct form (`_guarded_update`). Squared distances are kept (argmax is the
same). Ties go to the lowest index. Picked and labeled points get `-inf`, so duplicates can
never be picked twice. With no labeled point, the first center is the point farthest from
the mean (an index-independent rule, so selections are permutation-equivariant).
`storage_dtype=jnp.bfloat16` halves the bytes read per pick; distances still accumulate in
float32. The rows are kept as their uint16 bit patterns and widened with a shift (exact): on
XLA:CPU a bfloat16 `astype` inside the loop is 2x slower than the shift, and bfloat16 row
gathers are slower still. Even so, on CPU the widening costs more than the halved reads save
(benchmarks/NOTES.md §7); the option pays off on memory-bound accelerators.

This module holds the unpruned kernel and the pieces both kernels share (storage, the
initial pass, the guarded step); `kcenter_pruned` holds the pruned one and `kcenter` the
public entry point.
"""

import functools

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


def _from_mean(xf, valid):
  """Squared distance of every row to the mean of the valid rows (the start without labels)."""
  xf_mean = jnp.sum(jnp.where(valid[:, None], xf, 0.0), axis=0) / jnp.sum(valid)
  return jnp.sum((xf - xf_mean) ** 2, axis=1)


def _start_d2(xf, any_labeled, valid, min_d2):
  """`min_d2` when some point is labeled, else the distances from the mean; computed only
  in the case that needs it (a `lax.cond`), the same way in both kernels."""
  return jax.lax.cond(any_labeled, lambda: min_d2, lambda: _from_mean(xf, valid))


def _init_min_d2(x, labeled_mask, block):
  """Squared distance of every point to its nearest labeled point (inf when none).

  Only the minimum is kept: an argmin beside it made XLA:CPU fuse one variadic (value,
  index) reduction, which took about as long as the GEMM itself at n=50k (NOTES §7)."""
  n = x.shape[0]
  xf = x.astype(jnp.float32)
  sq = jnp.sum(xf * xf, axis=1)
  num_labeled = jnp.sum(labeled_mask)
  labeled_idx = jnp.nonzero(labeled_mask, size=n, fill_value=0)[0]
  num_blocks = (num_labeled + block - 1) // block
  padded_idx = jnp.concatenate([labeled_idx, jnp.zeros((block,), labeled_idx.dtype)])

  def body(b, min_d2):
    idx = jax.lax.dynamic_slice(padded_idx, (b * block,), (block,))
    valid = (b * block + jnp.arange(block)) < num_labeled
    c = xf[idx]
    d2 = sq[:, None] + jnp.sum(c * c, axis=1)[None, :] - 2.0 * (xf @ c.T)
    d2 = jnp.where(valid[None, :], jnp.maximum(d2, 0.0), jnp.inf)
    return jnp.minimum(min_d2, jnp.min(d2, axis=1))

  return jax.lax.fori_loop(0, num_blocks, body, jnp.full((n,), jnp.inf, jnp.float32))


def _row_d2(rows, xu):
  """Squared distances of stored rows to `xu`, as a direct sum of squared differences.

  For float32 rows the barrier keeps consumers (a `minimum`) out of the reduction's fusion:
  fused, XLA:CPU's YNNPACK reduction ran about 10x slower. (bfloat16 rows, widened by a
  shift, take XLA's own loop reduction and must not be split from their widening.) Every
  caller gets the same reduction, whatever the row count: flat, tiled or gathered rows give
  bit-equal values."""
  d2 = jnp.sum((_load(rows) - xu) ** 2, axis=-1)
  return jax.lax.optimization_barrier(d2) if rows.dtype == jnp.float32 else d2


# Unit round-off of float32, and the slack of the GEMV guard (module docstring): any float32
# evaluation order of a length-d dot or sum of squares is within (d + 2) * eps of its terms'
# absolute sum, twice over (the expanded form and the direct form), doubled again for margin.
_EPS32 = 2.0 ** -24
_GUARD = 4.0


def _guarded_update(xs, sq, norm, u, xu, min_d2, cap: int):
  """`minimum(min_d2, |x - x_u|^2)` with the direct row reduction's bits, at GEMV speed.

  The expanded-norm GEMV `|x|^2 + |x_u|^2 - 2 x.x_u` streams the rows faster than the direct
  reduction on XLA:CPU (NOTES §7) but rounds differently, so it only decides which rows may
  change: a row whose GEMV value exceeds its current entry by more than the two forms' joint
  round-off bound keeps its entry; the others (a new center's own cluster, plus near-ties)
  get the direct `_row_d2` on gathered rows, bit-equal to the dense pass. When more than
  `cap` rows qualify, the step takes the dense pass instead.
  """
  n, d = xs.shape
  approx = sq + sq[u] - 2.0 * jnp.dot(xs, xu, precision=jax.lax.Precision.HIGHEST)
  slack = (_GUARD * (d + 2) * _EPS32) * (norm + norm[u]) ** 2
  maybe = approx - slack <= min_d2  # False for -inf (picked, labeled, padding)
  count = jnp.sum(maybe, dtype=jnp.int32)

  def sparse(m):
    rows = jnp.nonzero(maybe, size=cap, fill_value=n)[0]
    d2 = _row_d2(xs.at[rows].get(mode="clip"), xu)
    return m.at[rows].min(d2, mode="drop")

  def dense(m):
    return jnp.minimum(m, _row_d2(xs, xu))

  return jax.lax.cond(count <= cap, sparse, dense, min_d2)


def _guard_cap(n: int) -> int:
  """Rows a guarded step recomputes directly at most (else it takes the dense pass)."""
  return min(n, max(64, n // 32))


def _guard(xf, cap: int):
  """Row norms for `_guarded_update` (squared, and plain), with its row cap."""
  sq = jnp.sum(xf * xf, axis=1)
  return sq, jnp.sqrt(sq), cap


def _update_all(xs, m, u, xu, first, guard=None):
  """One greedy step over every row: `m` (flat) takes the distances to the new center `xu`
  on the first pick without labels (entries at -inf stay), else `minimum(m, distances)`,
  through `_guarded_update` when `guard = (sq, norm, cap)` is given."""

  if guard is None:
    # One dense pass, outside any `cond`: inside one, XLA:CPU split the bfloat16 widening
    # from its reduction and materialized it (13x slower per pick).
    d2 = _row_d2(xs, xu)
    return jnp.where(first, jnp.where(m > -jnp.inf, d2, m), jnp.minimum(m, d2))
  sq, norm, cap = guard
  return jax.lax.cond(first, lambda m: jnp.where(m > -jnp.inf, _row_d2(xs, xu), m),
                      lambda m: _guarded_update(xs, sq, norm, u, xu, m, cap), m)


def _start_state(x, labeled_mask, valid, block):
  """The greedy loop's initial entries (squared distance to the nearest labeled point; -inf
  for labeled and padding rows; distance from the mean when nothing is labeled), the same
  in both kernels, and whether any point is labeled."""
  min_d2 = _init_min_d2(x, labeled_mask, block)
  # The labeled set's own entries are 0 up to round-off: exclude them explicitly.
  min_d2 = jnp.where(labeled_mask, -jnp.inf, min_d2)
  any_labeled = jnp.any(labeled_mask)
  # Without labeled points every entry is +inf: rank by distance from the mean instead.
  min_d2 = _start_d2(x.astype(jnp.float32), any_labeled, valid, min_d2)
  return jnp.where(valid, min_d2, -jnp.inf), any_labeled


def _greedy_dense(x, min_d2, any_labeled, budget: int, guard_cap: int):
  """`budget` farthest-first picks from the entries `min_d2`, each step updating every row."""
  xs = _stored(x)
  guard = _guard(x.astype(jnp.float32), guard_cap) if guard_cap and xs.dtype == jnp.float32 else None
  rows = jnp.arange(x.shape[0], dtype=jnp.int32)

  def step(i, carry):
    min_d2, picks = carry
    # argmax with ties to the lowest index, as a max and a masked min: XLA:CPU's variadic
    # argmax reduction took ~0.4 ms per pick at n=50k against ~35 us for these two.
    u = jnp.min(jnp.where(min_d2 == jnp.max(min_d2), rows, x.shape[0]))
    xu = _load(xs[u])
    first_without_labels = jnp.logical_and(i == 0, jnp.logical_not(any_labeled))
    min_d2 = _update_all(xs, min_d2, u, xu, first_without_labels, guard)
    min_d2 = min_d2.at[u].set(-jnp.inf)  # picked and labeled points stay at -inf
    return min_d2, picks.at[i].set(u.astype(jnp.int32))

  _, picks = jax.lax.fori_loop(0, budget, step, (min_d2, jnp.zeros((budget,), jnp.int32)))
  return picks


@functools.partial(jax.jit, static_argnames=("budget", "block", "guard_cap"))
def _kcenter(x, labeled_mask, valid, budget: int, block: int, guard_cap: int = 0):
  min_d2, any_labeled = _start_state(x, labeled_mask, valid, block)
  return _greedy_dense(x, min_d2, any_labeled, budget, guard_cap)
