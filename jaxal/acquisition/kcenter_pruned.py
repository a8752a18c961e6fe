"""Pruned greedy k-center: the same picks as `kcenter_dense`, reading fewer rows.

`kcenter_greedy(..., prune=True)` runs the same greedy loop but reads fewer rows, with
identical picks. Before the loop, every row gets coordinates `z` in a 16-dim subspace near
the top principal directions (`proj`; a few subspace iterations on a row sample) and its
residual norm `r` outside it; then `|x_i - x_u|^2 >= |z_i - z_u|^2 + (r_i - r_u)^2` for any
two rows. Rows are reordered into the leaves of a kd-tree on `z` (median splits along the
widest coordinate), and each leaf becomes a contiguous tile of about `tile` rows with a
bounding box in `z` and an interval of `r`. Each step bounds the distance from the new
center `u` to every tile's box (O(#tiles * proj)), and reads only the tiles whose box is
within reach of the tile's largest current distance `sqrt(max m)`; when that leaves more
than 8% of the tiles, the same bound per row (proj + 3 values per row, no row reads) keeps
only the tiles holding a row that may get closer. When more than `dense_fraction` of the
tiles remain, the step reads every row. The argmax is kept per tile too (largest `m` and the
lowest original index holding it), so a step costs O(#tiles) plus the tiles it reads. The
test carries a safety margin (relative 1e-3 on the distance, plus 1e-4 times the two rows'
centered norms for the round-off of the projected coordinates), so a skipped row could not
have changed in float32 either. The initial distances are the unpruned kernel's (the same
blocked GEMM), so `m` is the same in both kernels at every step and so are the picks; ties
still go to the lowest original index. On isotropic Gaussians nothing is skipped (distances
concentrate): a probe before the tree is built (the per-row bound for the few farthest
points) detects this and runs the plain loop instead. On clustered embeddings a step reads
about one cluster's tiles.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxal.acquisition.kcenter_dense import _greedy_dense, _guard, _load, _row_d2, _start_state, _stored, _update_all

_REL = 1e-3
_ABS = 1e-4
_REFINE_ABOVE = 0.08  # share of tiles above which the per-row bound refines the box test


def _may_get_closer(lb2, m, norms):
  """Whether a row (or tile) whose squared lower bound to the new center is `lb2` may get
  closer than its current entry `m`: `lb2 <= reach^2`, with the module's safety margins
  (`norms`: the two sides' centered norms). Entries at -inf (picked, labeled) never do."""
  reach = jnp.sqrt(jnp.maximum(m, 0.0)) * (1.0 + _REL) + _ABS * norms
  return (m > -jnp.inf) & (lb2 <= reach * reach)


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
  m0, any_labeled = _start_state(x, labeled_mask, valid, block)
  z, r, ny = _projection(x.astype(jnp.float32), proj, sample)
  if not probes:
    return _pruned_loop(x, m0, any_labeled, z, r, ny, budget, tile, group, cap, proj, guard_cap)
  # Worth pruning? The rows the first `probes` picks (largest entries) may bring closer,
  # by the per-row projected bound: when that share is large (isotropic data), skip the
  # tree and run the dense loop (the same picks; fraction read 1).
  u = jax.lax.top_k(m0, probes)[1]
  lb2 = (r[None, :] - r[u][:, None]) ** 2 + jnp.sum((z[None, :, :] - z[u][:, None, :]) ** 2, axis=-1)
  share = jnp.mean(_may_get_closer(lb2, m0[None], ny[None, :] + ny[u][:, None]))
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
    need = _may_get_closer(lb2, tmax, nymax + nyflat[u])
    count = jnp.sum(need, dtype=jnp.int32)

    def refine(need):
      # The same bound per row rather than per box (k + 3 reads per row, one pass, no
      # gathers): a tile is read only if one of its rows may get closer to u.
      acc = (rs - ru) ** 2
      for j in range(proj):
        acc = acc + (zs[j] - zu[j]) ** 2
      rows_need = _may_get_closer(acc, m, nys + nyflat[u])
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
