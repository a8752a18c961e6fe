"""Greedy k-center (core-set; Sener & Savarese 2018; ALGORITHMS.md §3), jitted end to end.

Farthest-first traversal over Euclidean distance, starting from the labeled set as centers:
each pick is the point whose distance to its nearest center is largest, then that point
becomes a center. The whole loop runs on device (`lax.fori_loop`), with one compilation per
`(n, d, budget)` shape whatever the labeled count.

Memory is O(n*d) for the embeddings plus O(n) working space: the initial distances to the
labeled centers are computed a block of centers at a time with the expanded-norm GEMM
(clamped at 0). Each greedy step's distances are defined by the direct form
`sum((x - x_u)**2)` (no cancellation); with float32 storage a GEMV in the expanded form
reads the rows (as fast as BLAS) and only selects the rows that may change, within a
proven round-off bound, for the direct form (`_guarded_update`). Squared distances are kept
(argmax is the same). Ties go to the lowest index. Picked and labeled points get `-inf`, so duplicates
can never be picked twice. With no labeled point, the first center is the point farthest
from the mean (an index-independent rule, so selections are permutation-equivariant).
`storage_dtype=jnp.bfloat16` halves the bytes read per pick; distances still accumulate in
float32. The rows are kept as their uint16 bit patterns and widened with a shift (exact):
on XLA:CPU a bfloat16 `astype` inside the loop is 2x slower than the shift, and bfloat16
row gathers are slower still. Even so, on CPU the widening costs more than the halved
reads save (benchmarks/NOTES.md §7); the option pays off on memory-bound accelerators.

`prune=True` runs the same greedy loop but reads fewer rows, with identical picks. Before
the loop, every row gets coordinates `z` in a 16-dim subspace near the top principal
directions (`proj`; a few subspace iterations on a row sample) and its residual norm `r`
outside it; then `|x_i - x_u|^2 >= |z_i - z_u|^2 + (r_i - r_u)^2` for any two rows. Rows are
reordered into the leaves of a kd-tree on `z` (median splits along the widest coordinate),
and each leaf becomes a contiguous tile of about `tile` rows with a bounding box in `z` and
an interval of `r`. Each step bounds the distance from the new center `u` to every tile's
box (O(#tiles * proj)), and reads only the tiles whose box is within reach of the tile's
largest current distance `sqrt(max m)`; when that leaves more than 8% of the tiles, the
same bound per row (proj + 3 values per row, no row reads) keeps only the tiles holding a
row that may get closer. When more than `dense_fraction` of the tiles remain, the step
reads every row. The argmax is kept per tile too (largest `m` and the lowest original
index holding it), so a step costs O(#tiles) plus the tiles it reads. The test carries a
safety margin (relative 1e-3 on the distance, plus 1e-4 times the two rows' centered norms
for the round-off of the projected coordinates), so a skipped row could not have changed
in float32 either. The initial distances are the unpruned kernel's (the same blocked GEMM),
so `m` is the same in both kernels at every step and so are the picks; ties still go to
the lowest original index. On isotropic Gaussians nothing is skipped (distances
concentrate): a probe before the tree is built (the per-row bound for the few farthest
points) detects this and runs the plain loop instead. On clustered embeddings a step reads
about one cluster's tiles.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import parallel


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
  shift, take XLA's own loop reduction and must not be split from their widening.) Every caller gets the same reduction, whatever
  the row count (flat, tiled or gathered rows give bit-equal values)."""
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


# Margins of the pruning test (see the module docstring): relative on the distance, and
# absolute per unit of the two points' norms (round-off of the projected coordinates).
_REL = 1e-3
_ABS = 1e-4
_REFINE_ABOVE = 0.08  # share of tiles above which the per-row bound refines the box test


def _projection(xf, k: int, sample: int, iters: int = 4, chunk: int = 4096):
  """A k-dim orthonormal basis close to the top principal directions (a few subspace
  iterations on a strided row sample), and per row: the coordinates `z` in it, the
  residual norm `r = |y - z q^T|` and `|y|`, where y = x - mean (computed a row block at a
  time, directly rather than by cancellation)."""
  n, d = xf.shape
  s = xf[::max(1, n // sample)][:sample]
  mu = jnp.mean(s, axis=0)
  s = s - mu
  q = jax.random.normal(jax.random.key(0), (d, k), jnp.float32)
  for _ in range(iters):
    q, _ = jnp.linalg.qr(s.T @ (s @ q))
  rows = min(chunk, n)

  def body(b, acc):
    z, r, ny = acc
    start = jnp.minimum(b * rows, n - rows)  # the last block overlaps: same values rewritten
    y = jax.lax.dynamic_slice(xf, (start, 0), (rows, d)) - mu
    zb = y @ q
    rb = jnp.sqrt(jnp.sum((y - zb @ q.T) ** 2, axis=1))
    nb = jnp.sqrt(jnp.sum(y * y, axis=1))
    return (jax.lax.dynamic_update_slice(z, zb, (start, 0)), jax.lax.dynamic_update_slice(r, rb, (start,)),
            jax.lax.dynamic_update_slice(ny, nb, (start,)))

  init = (jnp.zeros((n, k), jnp.float32), jnp.zeros((n,), jnp.float32), jnp.zeros((n,), jnp.float32))
  return jax.lax.fori_loop(0, (n + rows - 1) // rows, body, init)


def _kd_order(z, n: int, levels: int, size: int):
  """A permutation of `2**levels * size >= n` slots (slots >= n are padding) that makes each
  run of `size` a leaf of a kd-tree on `z`: every level splits each segment at its median
  along the projected coordinate of widest spread. Padding sorts last within a segment."""
  total = (2 ** levels) * size
  perm = jnp.arange(total, dtype=jnp.int32)
  zp = jnp.concatenate([z, jnp.zeros((total - n, z.shape[1]), z.dtype)])
  for level in range(levels):
    seg = perm.reshape(2 ** level, -1)
    real = (seg < n)[..., None]
    vals = zp[seg]  # (segments, length, k)
    spread = jnp.max(jnp.where(real, vals, -jnp.inf), axis=1) - jnp.min(jnp.where(real, vals, jnp.inf), axis=1)
    axis = jnp.argmax(spread, axis=1)
    key = jnp.take_along_axis(vals, axis[:, None, None], axis=2)[..., 0]
    key = jnp.where(seg < n, key, jnp.inf)
    perm = jnp.take_along_axis(seg, jnp.argsort(key, axis=1, stable=True), axis=1).reshape(-1)
  return perm


@functools.partial(jax.jit, static_argnames=("budget", "block", "tile", "group", "cap", "proj", "sample", "guard_cap",
                                             "probes", "probe_fraction"))
def _kcenter_pruned(x, labeled_mask, valid, budget: int, block: int, tile: int, group: int, cap: int, proj: int,
                    sample: int = 2048, guard_cap: int = 0, probes: int = 0, probe_fraction: float = 1.0):
  n, d = x.shape
  m0, any_labeled = _start_state(x, labeled_mask, valid, block)
  z, r, ny = _projection(x.astype(jnp.float32), proj, sample)
  if not probes:
    return _pruned_loop(x, m0, any_labeled, z, r, ny, budget, tile, group, cap, proj, guard_cap)
  # Worth pruning? The rows the first `probes` picks (largest entries) may bring closer,
  # by the per-row projected bound: when that share is large (isotropic data), skip the
  # tree and run the dense loop (the same picks; fraction read 1).
  u = jax.lax.top_k(m0, probes)[1]
  lb2 = (r[None, :] - r[u][:, None]) ** 2 + jnp.sum((z[None, :, :] - z[u][:, None, :]) ** 2, axis=-1)
  reach = jnp.sqrt(jnp.maximum(m0, 0.0))[None] * (1.0 + _REL) + _ABS * (ny[None, :] + ny[u][:, None])
  share = jnp.mean((m0 > -jnp.inf)[None] & (lb2 <= reach * reach))
  return jax.lax.cond(
      share <= probe_fraction,
      lambda: _pruned_loop(x, m0, any_labeled, z, r, ny, budget, tile, group, cap, proj, guard_cap),
      lambda: (_greedy_dense(x, m0, any_labeled, budget, guard_cap), jnp.ones((), jnp.float32), False))


def _pruned_loop(x, m0, any_labeled, z, r, ny, budget, tile, group, cap, proj, guard_cap):
  n, d = x.shape

  # Leaves of a kd-tree on the projected coordinates become row tiles, stored contiguously.
  levels = max(0, int(np.ceil(np.log2(max(n / tile, 1.0)))))
  size = -(-n // 2 ** levels)
  num_tiles = 2 ** levels
  perm = _kd_order(z, n, levels, size)  # (num_tiles * size,)
  real = perm < n
  src = jnp.minimum(perm, n - 1)
  stored = _stored(x)
  # Padding slots repeat row n-1; their entries stay at -inf, so they are never read as
  # candidates. One materialized copy (the barrier stops XLA from re-gathering per consumer).
  xs = jax.lax.optimization_barrier(stored[src])
  # Dense steps take the same guarded GEMV as `_kcenter` (padding rows sit at -inf).
  guard = _guard(xs, guard_cap) if guard_cap and xs.dtype == jnp.float32 else None

  # The same initial state as `_kcenter`, in tile order.
  m = jnp.where(real, m0[src], -jnp.inf).reshape(num_tiles, size)
  big = jnp.iinfo(jnp.int32).max
  orig = jnp.where(real, perm, big).reshape(num_tiles, size)
  position = jnp.zeros((n,), jnp.int32).at[jnp.where(real, perm, n)].set(
      jnp.arange(perm.shape[0], dtype=jnp.int32), mode="drop")
  zs, rs = z[src].reshape(num_tiles, size, proj), r[src].reshape(num_tiles, size)
  inf = jnp.inf
  lo = jnp.min(jnp.where(real.reshape(num_tiles, size, 1), zs, inf), axis=1)  # (tiles, k) bounding boxes
  hi = jnp.max(jnp.where(real.reshape(num_tiles, size, 1), zs, -inf), axis=1)
  rlo = jnp.min(jnp.where(real.reshape(num_tiles, size), rs, inf), axis=1)
  rhi = jnp.max(jnp.where(real.reshape(num_tiles, size), rs, -inf), axis=1)
  nymax = jnp.max(jnp.where(real, ny[src], 0.0).reshape(num_tiles, size), axis=1)
  zflat, rflat, nyflat = z, r, ny
  zs = tuple(zs[..., j] for j in range(proj))  # per coordinate, (tiles, size) each
  nys = jnp.where(real, ny[src], 0.0).reshape(num_tiles, size)
  refine_above = max(group, int(num_tiles * _REFINE_ABOVE))

  def summarize(mt, ot):
    """Largest entry of each tile and the lowest original index holding it."""
    top = jnp.max(mt, axis=-1)
    return top, jnp.min(jnp.where(mt == top[..., None], ot, big), axis=-1)

  tmax, targ = summarize(m, orig)

  def step(i, carry):
    m, tmax, targ, picks, rows_read = carry
    top = jnp.max(tmax)
    u = jnp.min(jnp.where(tmax == top, targ, big))  # ties: lowest original index
    p = position[u]
    xu = _load(xs[p])
    first_without_labels = jnp.logical_and(i == 0, jnp.logical_not(any_labeled))
    # Lower bound on |x_i - x_u| over each tile: the distance from u's projected coordinates
    # to the tile's bounding box, with the gap between the residual norms.
    zu, ru = zflat[u], rflat[u]
    gap = jnp.maximum(jnp.maximum(lo - zu, zu - hi), 0.0)
    rgap = jnp.maximum(jnp.maximum(rlo - ru, ru - rhi), 0.0)
    lb2 = jnp.sum(gap * gap, axis=1) + rgap * rgap
    reach = jnp.sqrt(jnp.maximum(tmax, 0.0)) * (1.0 + _REL) + _ABS * (nymax + nyflat[u])
    need = (tmax > -inf) & (lb2 <= reach * reach)
    count = jnp.sum(need, dtype=jnp.int32)

    def refine(need):
      # The same bound per row rather than per box (k + 3 reads per row, one pass, no
      # gathers): a tile is read only if one of its rows may get closer to u.
      acc = (rs - ru) ** 2
      for j in range(proj):
        acc = acc + (zs[j] - zu[j]) ** 2
      row_reach = jnp.sqrt(jnp.maximum(m, 0.0)) * (1.0 + _REL) + _ABS * (nys + nyflat[u])
      rows_need = (m > -inf) & (acc <= row_reach * row_reach)
      return need & jnp.any(rows_need, axis=1)

    need = jax.lax.cond((count > refine_above) & (count <= 2 * cap), refine, lambda need: need, need)
    count = jnp.sum(need, dtype=jnp.int32)
    dense = first_without_labels | (count > cap)

    def dense_pass(state):
      m, tmax, targ = state
      m = _update_all(xs, m.reshape(-1), p, xu, first_without_labels, guard).reshape(num_tiles, size)
      return (m, *summarize(m, orig))

    def sparse_pass(state):
      # `group` tiles per iteration; unused slots point past the end, so their gathers
      # clip and their scatters drop.
      ids = jnp.nonzero(need, size=cap + group, fill_value=num_tiles)[0].astype(jnp.int32)

      def body(g, state):
        m, tmax, targ = state
        t = jax.lax.dynamic_slice(ids, (g * group,), (group,))
        # Rows of the chosen tiles (one flat array throughout: a tiled view beside it made XLA
        # keep a second copy of the rows in the loop state).
        rows_t = jnp.minimum(t, num_tiles - 1)[:, None] * size + jnp.arange(size, dtype=jnp.int32)
        d2 = _row_d2(xs[rows_t], xu)
        mt = jnp.minimum(m.at[t].get(mode="clip"), d2)
        tt, ta = summarize(mt, orig.at[t].get(mode="clip"))
        return (m.at[t].set(mt, mode="drop"), tmax.at[t].set(tt, mode="drop"), targ.at[t].set(ta, mode="drop"))

      return jax.lax.fori_loop(0, (count + group - 1) // group, body, state)

    m, tmax, targ = jax.lax.cond(dense, dense_pass, sparse_pass, (m, tmax, targ))
    tu = p // size
    m = m.at[tu, p % size].set(-inf)
    tt, ta = summarize(m[tu], orig[tu])
    tmax, targ = tmax.at[tu].set(tt), targ.at[tu].set(ta)
    rows_read = rows_read + jnp.where(dense, n, count * size)
    return m, tmax, targ, picks.at[i].set(u), rows_read

  init = (m, tmax, targ, jnp.zeros((budget,), jnp.int32), jnp.zeros((), jnp.int32))
  _, _, _, picks, rows_read = jax.lax.fori_loop(0, budget, step, init)
  return picks, rows_read / (budget * n), True


def kcenter_greedy(embeddings, labeled_mask, budget: int, *, block: int = 256,
                   storage_dtype=jnp.float32, mesh=None, prune: bool = False, tile: int = 32,
                   dense_fraction: float = 0.3, proj: int = 16, probes: int = 8, with_stats: bool = False):
  """`budget` unlabeled indices chosen farthest-first from the labeled centers.

  Args:
    embeddings: `(n, d)` float features (penultimate layer).
    labeled_mask: `(n,)` bool, the initial centers.
    budget: number of points to pick (at most the number of unlabeled points).
    block: labeled centers per GEMM block in the initial distance pass.
    storage_dtype: dtype the embeddings are stored and read in (float32 or bfloat16).
    mesh: optional device mesh; the rows are then split over its `data` axis (padded to a
      multiple of the device count with rows that can never be picked), and each device
      scans its own share. The picks are the same as on one device. Not combined with
      `prune` (the unpruned sharded kernel runs; the picks are the same).
    prune: skip row tiles that a projected lower bound proves unchanged (same picks).
    tile: rows per tile (kd-tree leaf) for `prune`, at most.
    dense_fraction: with `prune`, a step reads every row when more than this fraction of
      tiles needs reading.
    proj: with `prune`, dimension of the projected coordinates the bounds use.
    probes: with `prune`, the kernel first bounds which rows the `probes` farthest points
      could bring closer; when that is more than half of `dense_fraction` of the rows (as
      on isotropic data, where no step skips anything), it runs the plain loop instead of
      building the tree. The picks are the same either way. 0 always builds the tree.
    with_stats: also return `{"fraction_read": ...}`, the share of row reads the greedy
      steps did (1.0 without `prune`), and with `prune`, `"tree"`: whether the probe chose
      the pruned loop.
  Returns:
    `(budget,)` int32 indices in pick order (and the stats dict with `with_stats`).
  """
  labeled_mask = np.asarray(labeled_mask, bool)
  if budget > int((~labeled_mask).sum()):
    raise ValueError(f"budget {budget} exceeds the {int((~labeled_mask).sum())} unlabeled points")
  x = np.asarray(embeddings)
  n = x.shape[0]
  valid = np.ones(n, bool)
  if mesh is not None:
    pad = -n % mesh.size
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    labeled_mask = np.concatenate([labeled_mask, np.zeros(pad, bool)])
    valid = np.concatenate([valid, np.zeros(pad, bool)])
    rows = parallel.batch_sharded(mesh)
    x, labeled_mask, valid = jax.device_put((jnp.asarray(x, storage_dtype), labeled_mask, valid), rows)
  else:
    x = jnp.asarray(x, storage_dtype)
    guard_cap = _guard_cap(n) if x.dtype == jnp.float32 else 0
    if prune:
      group = 4
      num_tiles = 2 ** max(0, int(np.ceil(np.log2(max(n / tile, 1.0)))))
      cap = max(group, int(dense_fraction * num_tiles) // group * group)
      picks, read, tree = _kcenter_pruned(x, jnp.asarray(labeled_mask), jnp.asarray(valid), int(budget), int(block),
                                    int(tile), group, cap, max(1, min(int(proj), x.shape[1])), guard_cap=guard_cap,
                                    probes=min(int(probes), n), probe_fraction=float(dense_fraction) / 2)
      picks = np.asarray(picks)
      stats = {"fraction_read": float(read), "tree": bool(tree)}
      return (picks, stats) if with_stats else picks
    picks = _kcenter(x, jnp.asarray(labeled_mask), jnp.asarray(valid), int(budget), int(block), guard_cap)
    picks = np.asarray(picks)
    return (picks, {"fraction_read": 1.0}) if with_stats else picks
  picks = np.asarray(_kcenter(x, labeled_mask, valid, int(budget), int(block)))
  return (picks, {"fraction_read": 1.0}) if with_stats else picks
