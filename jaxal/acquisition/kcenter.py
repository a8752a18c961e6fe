"""Greedy k-center (core-set; Sener & Savarese 2018; ALGORITHMS.md §3), jitted end to end.

Farthest-first traversal over Euclidean distance, starting from the labeled set as centers:
each pick is the point whose distance to its nearest center is largest, then that point
becomes a center. The whole loop runs on device (`lax.fori_loop`), with one compilation per
`(n, d, budget)` shape whatever the labeled count.

Memory is O(n*d) for the embeddings plus O(n) working space: the initial distances to the
labeled centers are computed a block of centers at a time with the expanded-norm GEMM
(clamped at 0), and each greedy step computes its distance row directly as
`sum((x - x_u)**2)`, exact and without cancellation. Squared distances are kept (argmax is
the same). Ties go to the lowest index. Picked and labeled points get `-inf`, so duplicates
can never be picked twice. With no labeled point, the first center is the point farthest
from the mean (an index-independent rule, so selections are permutation-equivariant).
`storage_dtype=jnp.bfloat16` halves the bytes read per pick; distances still accumulate in
float32. The rows are kept as their uint16 bit patterns and widened with a shift (exact):
on XLA:CPU a bfloat16 `astype` inside the loop is 2x slower than the shift, and bfloat16
row gathers are slower still. Even so, on CPU the widening costs more than the halved
reads save (see benchmarks/SELECTION.md); the option pays off on memory-bound accelerators.

`prune=True` runs the same greedy loop but reads fewer rows, with identical picks. Each point
keeps its assigned center `a_i` and squared distance `m_i`. A new center `u` can only lower
`m_i` if `|c_{a_i} - u| < 2 sqrt(m_i)` (triangle inequality), so each step computes the
distances from `u` to the centers (O(#centers * d)) and only reads the row tiles (`tile`
rows) holding a point that fails this test. Rows are grouped into tiles by their nearest
labeled center once, before the loop, so a cluster's points share tiles. When more than
`dense_fraction` of the tiles need reading, the step does the plain dense pass. The test
carries a safety margin (relative 1e-3, plus 1e-4 * max |x|^2 absolute for the round-off
of the initial GEMM), so a skipped point could not have changed in float32 either. On
isotropic Gaussians nothing is skipped (distances concentrate); on clustered embeddings
most tiles are. Without labeled points the tiles follow no structure until the first
pick, so pruning then helps less. Ties still go to the lowest original index.
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


def _init_min_d2(x, labeled_mask, block):
  """Squared distance of every point to its nearest labeled point (inf when none), and
  that point's rank among the labeled indices (its center slot)."""
  n = x.shape[0]
  xf = x.astype(jnp.float32)
  sq = jnp.sum(xf * xf, axis=1)
  num_labeled = jnp.sum(labeled_mask)
  labeled_idx = jnp.nonzero(labeled_mask, size=n, fill_value=0)[0]
  num_blocks = (num_labeled + block - 1) // block
  padded_idx = jnp.concatenate([labeled_idx, jnp.zeros((block,), labeled_idx.dtype)])

  def body(b, carry):
    min_d2, slot = carry
    idx = jax.lax.dynamic_slice(padded_idx, (b * block,), (block,))
    valid = (b * block + jnp.arange(block)) < num_labeled
    c = xf[idx]
    d2 = sq[:, None] + jnp.sum(c * c, axis=1)[None, :] - 2.0 * (xf @ c.T)
    d2 = jnp.where(valid[None, :], jnp.maximum(d2, 0.0), jnp.inf)
    best = jnp.min(d2, axis=1)
    closer = best < min_d2
    slot = jnp.where(closer, b * block + jnp.argmin(d2, axis=1).astype(jnp.int32), slot)
    return jnp.minimum(min_d2, best), slot

  init = (jnp.full((n,), jnp.inf, jnp.float32), jnp.zeros((n,), jnp.int32))
  return jax.lax.fori_loop(0, num_blocks, body, init)


@functools.partial(jax.jit, static_argnames=("budget", "block"))
def _kcenter(x, labeled_mask, valid, budget: int, block: int):
  min_d2, _ = _init_min_d2(x, labeled_mask, block)
  # The labeled set's own entries are 0 up to round-off: exclude them explicitly.
  min_d2 = jnp.where(labeled_mask, -jnp.inf, min_d2)
  any_labeled = jnp.any(labeled_mask)
  xf = x.astype(jnp.float32)
  xf_mean = jnp.sum(jnp.where(valid[:, None], xf, 0.0), axis=0) / jnp.sum(valid)
  from_mean = jnp.sum((xf - xf_mean) ** 2, axis=1)
  # Without labeled points every entry is +inf: rank by distance from the mean instead.
  min_d2 = jnp.where(any_labeled, min_d2, from_mean)
  min_d2 = jnp.where(valid, min_d2, -jnp.inf)  # padding rows (sharded runs) are never picked

  xs = _stored(x)

  def step(i, carry):
    min_d2, picks = carry
    u = jnp.argmax(min_d2)
    d2 = jnp.sum((_load(xs) - _load(xs[u])) ** 2, axis=1)
    first_without_labels = jnp.logical_and(i == 0, jnp.logical_not(any_labeled))
    min_d2 = jnp.where(first_without_labels, d2, jnp.minimum(min_d2, d2))
    min_d2 = min_d2.at[u].set(-jnp.inf)  # picked and labeled points stay at -inf
    return min_d2, picks.at[i].set(u.astype(jnp.int32))

  _, picks = jax.lax.fori_loop(0, budget, step, (min_d2, jnp.zeros((budget,), jnp.int32)))
  return picks


def _row_d2(rows, xu):
  return jnp.sum((_load(rows) - xu) ** 2, axis=-1)


@functools.partial(jax.jit, static_argnames=("budget", "block", "tile", "group", "center_chunk"))
def _kcenter_pruned(x, labeled_mask, budget: int, block: int, tile: int, dense_fraction, group: int = 8,
                    center_chunk: int = 512):
  n, d = x.shape
  min_d2, slot = _init_min_d2(x, labeled_mask, block)
  min_d2 = jnp.where(labeled_mask, -jnp.inf, min_d2)
  any_labeled = jnp.any(labeled_mask)
  num_labeled = jnp.sum(labeled_mask).astype(jnp.int32)
  xf = x.astype(jnp.float32)
  from_mean = jnp.sum((xf - jnp.mean(xf, axis=0)) ** 2, axis=1)
  min_d2 = jnp.where(any_labeled, min_d2, from_mean)
  sq = jnp.sum(xf * xf, axis=1)
  tol_abs = 1e-4 * jnp.max(sq)  # bound on the initial GEMM's round-off in m_i
  del xf, from_mean, sq

  # Group rows by nearest labeled center; pad to whole tiles with rows never picked.
  perm = jnp.argsort(slot, stable=True).astype(jnp.int32)
  pad = -n % tile
  num_tiles = (n + pad) // tile
  stored = _stored(x)
  xs = jnp.concatenate([stored[perm], jnp.zeros((pad, d), stored.dtype)])  # (n + pad, d), sorted order
  xs3 = xs.reshape(num_tiles, tile, d)
  orig = jnp.concatenate([perm, n + jnp.arange(pad, dtype=jnp.int32)])
  m = jnp.concatenate([min_d2[perm], jnp.full((pad,), -jnp.inf)]).reshape(num_tiles, tile)
  a = jnp.concatenate([slot[perm], jnp.zeros((pad,), jnp.int32)]).reshape(num_tiles, tile)
  position = jnp.zeros((n,), jnp.int32).at[perm].set(jnp.arange(n, dtype=jnp.int32))
  labeled_idx = jnp.nonzero(labeled_mask, size=n, fill_value=0)[0]
  center_pos = jnp.concatenate([position[labeled_idx], jnp.zeros((center_chunk,), jnp.int32)])
  big = jnp.iinfo(jnp.int32).max

  def center_d2(center_pos, xu, count):
    """Squared distances from `xu` to the first `count` centers, `center_chunk` at a time."""
    def body(k, cc):
      pos = jax.lax.dynamic_slice(center_pos, (k * center_chunk,), (center_chunk,))
      return jax.lax.dynamic_update_slice(cc, _row_d2(xs[pos], xu), (k * center_chunk,))
    cc = jnp.zeros((n + center_chunk,), jnp.float32)
    return jax.lax.fori_loop(0, (count + center_chunk - 1) // center_chunk, body, cc)

  def step(i, carry):
    m, a, center_pos, picks, tiles_read = carry
    flat = m.reshape(-1)
    top = jnp.max(flat)
    u = jnp.argmin(jnp.where(flat == top, orig, big))  # ties: lowest original index
    xu = _load(xs[u])
    slot_u = num_labeled + i
    first_without_labels = jnp.logical_and(i == 0, jnp.logical_not(any_labeled))
    cc = center_d2(center_pos, xu, slot_u)
    need = (m > -jnp.inf) & (cc[a] < 4.0 * (m + tol_abs) * (1.0 + 1e-3))
    tiles = jnp.any(need, axis=1)
    count = jnp.sum(tiles)
    dense = first_without_labels | (count > dense_fraction * num_tiles)

    def dense_pass(m, a):
      d2 = _row_d2(xs3, xu)
      closer = jnp.where(first_without_labels, m > -jnp.inf, d2 < m)
      return jnp.where(closer, d2, m), jnp.where(closer, slot_u, a)

    def sparse_pass(m, a):
      # `group` tiles per iteration (XLA:CPU loop iterations cost microseconds each);
      # unused slots point past the end, so their gathers clip and their scatters drop.
      ids = jnp.nonzero(tiles, size=num_tiles + group, fill_value=num_tiles)[0]

      def body(g, ma):
        m, a = ma
        t = jax.lax.dynamic_slice(ids, (g * group,), (group,))
        d2 = _row_d2(xs3.at[t].get(mode="clip"), xu)  # (group, tile)
        mt, at = m.at[t].get(mode="clip"), a.at[t].get(mode="clip")
        closer = d2 < mt
        m = m.at[t].set(jnp.where(closer, d2, mt), mode="drop")
        a = a.at[t].set(jnp.where(closer, slot_u, at), mode="drop")
        return m, a

      return jax.lax.fori_loop(0, (count + group - 1) // group, body, (m, a))

    m, a = jax.lax.cond(dense, dense_pass, sparse_pass, m, a)
    m = m.reshape(-1).at[u].set(-jnp.inf).reshape(num_tiles, tile)
    center_pos = center_pos.at[slot_u].set(u.astype(jnp.int32))
    tiles_read = tiles_read + jnp.where(dense, num_tiles, count)
    return m, a, center_pos, picks.at[i].set(orig[u]), tiles_read

  init = (m, a, center_pos, jnp.zeros((budget,), jnp.int32), jnp.zeros((), jnp.int32))
  _, _, _, picks, tiles_read = jax.lax.fori_loop(0, budget, step, init)
  return picks, tiles_read / (budget * num_tiles)


def kcenter_greedy(embeddings, labeled_mask, budget: int, *, block: int = 256,
                   storage_dtype=jnp.float32, mesh=None, prune: bool = False, tile: int = 64,
                   dense_fraction: float = 0.3, with_stats: bool = False):
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
    prune: skip row tiles that the triangle inequality proves unchanged (same picks).
    tile: rows per tile for `prune`.
    dense_fraction: with `prune`, a step reads every row when more than this fraction of
      tiles needs reading.
    with_stats: also return `{"fraction_read": ...}`, the share of row reads the greedy
      steps did (1.0 without `prune`).
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
    if prune:
      picks, read = _kcenter_pruned(x, jnp.asarray(labeled_mask), int(budget), int(block), int(tile),
                                    jnp.float32(dense_fraction))
      picks = np.asarray(picks)
      return (picks, {"fraction_read": float(read)}) if with_stats else picks
  picks = np.asarray(_kcenter(x, jnp.asarray(labeled_mask), jnp.asarray(valid), int(budget), int(block)))
  return (picks, {"fraction_read": 1.0}) if with_stats else picks
