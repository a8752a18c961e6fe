"""The greedy's initial entries: each row's squared distance to its nearest labeled point.

Both kernels define the entry as the minimum, over the labeled centers, of the direct form
`_row_d2` (not of the expanded GEMM value, whose bits depend on how the product is blocked),
so the pruned kernel can compute it for only the rows that need it and still match the plain
kernel bit for bit. Three parts:

1. A guess of each row's nearest labeled center. The plain kernel's (`_nearest_guess`) is
   the center with the smallest GEMM lower bound (`_expanded_lower_bound`), with the
   smallest bound over the other centers; the pruned kernel's the nearest in its projected
   coordinates (`kcenter_pruned`, no GEMM), with no bound.
2. One direct pass to each row's guessed center gives an upper bound `u`, which is the entry
   itself (`exact`) when no other center's bound is below it.
3. `_resolve`: the other rows, a batch at a time, by the GEMM bound against every labeled
   center and the direct form for the pairs whose bound is below the row's running minimum;
   only those that reach the greedy's top candidates (`_settle`, before each step). An upper
   bound only falls with the picks, so the other rows never need their exact entry, and
   every update stays correct on it (a pair that cannot lower the bound cannot lower the
   exact entry either). See benchmarks/NOTES.md §7f.
"""

import jax
import jax.numpy as jnp

from jaxal import parallel
from jaxal.acquisition.kcenter_rows import _expanded_lower_bound, _load, _norms, _row_d2, _stored


# Labeled centers per block in `_resolve` (a few hundred rows at a time, so a larger block
# than the first pass's: fewer loop iterations).
_RESOLVE_BLOCK = 1024


def _labeled_index(labeled_mask, pad: int):
  """The labeled rows' indices, padded by `pad` zeros, and their count."""
  n = labeled_mask.shape[0]
  idx = jnp.nonzero(labeled_mask, size=n, fill_value=0)[0].astype(jnp.int32)
  return jnp.concatenate([idx, jnp.zeros((pad,), jnp.int32)]), jnp.sum(labeled_mask, dtype=jnp.int32)


def _block(labeled, b, block: int):
  """Block `b` of labeled centers: their indices and which slots are real."""
  padded, count = labeled
  return jax.lax.dynamic_slice(padded, (b * block,), (block,)), b * block + jnp.arange(block) < count


def _num_blocks(labeled, block: int):
  return (labeled[1] + block - 1) // block


def _argmin_packed(values, real, axis: int):
  """Over the centers' `axis` of the float32 `values` (rows, centers) or (centers, rows),
  where `real`: the index of about the smallest and that value rounded down (inf where no
  center is real), per row. One min reduction over the bits of the values clamped at 0 (they
  then order as integers) with the low bits replaced by the index (XLA:CPU's argmin, a
  variadic reduction, is slower). With few dimensions (the pruned kernel's projected
  coordinates) the (centers, rows) layout reduced 1.5-2x faster; with full rows the row
  layout did, up to 2x at n = 1M (NOTES §7g)."""
  width = values.shape[axis]
  mask = (1 << max(1, (width - 1).bit_length())) - 1
  index = jnp.expand_dims(jnp.arange(width, dtype=jnp.int32), 1 - axis)
  key = jax.lax.bitcast_convert_type(jnp.maximum(values, 0.0), jnp.int32) & ~mask | index
  key = jnp.min(jnp.where(jnp.expand_dims(real, 1 - axis), key, 0x7F800000), axis=axis)  # +inf's bits
  return key & mask, jax.lax.bitcast_convert_type(key & ~mask, jnp.float32)


def _nearest_guess(lower_bound, labeled, block: int, n: int):
  """Per row: a center with about the smallest `lower_bound(cols)` (n, len(cols)), and a
  lower bound on the bounds of all the other centers: two reductions per block, the packed
  argmin (a distance is never negative, so its bound may be clamped at 0) and the smallest
  other bound."""
  j = jnp.arange(block, dtype=jnp.int32)

  def body(b, acc):
    best, center, second = acc
    cols, real = _block(labeled, b, block)
    lo = lower_bound(cols)
    j1, b1 = _argmin_packed(lo, real, axis=1)
    b2 = jnp.min(jnp.where(real[None, :] & (j[None, :] != j1[:, None]), lo, jnp.inf), axis=1)
    better = b1 < best
    return (jnp.where(better, b1, best), jnp.where(better, cols[j1], center),
            jnp.where(better, jnp.minimum(best, b2), jnp.minimum(second, b1)))

  init = (jnp.full((n,), jnp.inf), jnp.zeros((n,), jnp.int32), jnp.full((n,), jnp.inf))
  _, center, second = jax.lax.fori_loop(0, _num_blocks(labeled, block), body, init)
  return center, second


def _resolve(rows_data, rows, m, labeled, block: int = _RESOLVE_BLOCK):
  """`m` (the entries of `rows`, upper bounds) lowered to the exact minimum of the direct
  form over all labeled centers. Slots holding `n` (padding) compute garbage, to be dropped.

  Per block of centers, the GEMM bound; the direct form of the pair with the smallest bound,
  then, in index order, of each other pair whose bound is below the row's running minimum
  (a pair whose bound is not below it cannot lower it)."""
  xs, xf, sq, norm = rows_data
  xr = xs.at[rows].get(mode="clip")
  xrf, rsq, rnorm = _load(xr), sq.at[rows].get(mode="clip"), norm.at[rows].get(mode="clip")
  j = jnp.arange(block)

  def body(b, m):
    cols, real = _block(labeled, b, block)
    xc = xf[cols]
    lo = jnp.where(real[None, :], _expanded_lower_bound(xrf, rsq, rnorm, xc, sq[cols], norm[cols]), jnp.inf)
    nearest = jnp.min(jnp.where(lo == jnp.min(lo, axis=1, keepdims=True), j[None, :], block - 1), axis=1)
    m = jnp.minimum(m, jnp.where(real[nearest], _row_d2(xr, xc[nearest]), jnp.inf))
    lo = jnp.where(j[None, :] == nearest[:, None], jnp.inf, lo)

    def next_pair(m, after):
      return jnp.min(jnp.where((lo < m[:, None]) & (j[None, :] > after[:, None]), j[None, :], block), axis=1)

    def direct(state):
      m, nxt = state
      has = nxt < block
      m = jnp.where(has, jnp.minimum(m, _row_d2(xr, xc[jnp.minimum(nxt, block - 1)])), m)
      return m, next_pair(m, jnp.where(has, nxt, block))

    m, _ = jax.lax.while_loop(lambda s: jnp.any(s[1] < block), direct, (m, next_pair(m, jnp.full_like(rows, -1))))
    return m

  return jax.lax.fori_loop(0, _num_blocks(labeled, block), body, m)


def _resolve_batch(rows_data, labeled, m, exact, rows):
  """`_resolve` the rows among `rows` not yet exact; returns `(m, exact)`."""
  n = m.shape[0]
  rows = jnp.where(exact.at[rows].get(mode="fill", fill_value=True), n, rows)
  resolved = _resolve(rows_data, rows, m.at[rows].get(mode="fill", fill_value=-jnp.inf), labeled)
  return m.at[rows].set(resolved, mode="drop"), exact.at[rows].set(True, mode="drop")


def _resolve_pieces(rows_data, labeled, m, exact, rows, piece: int = 2048):
  """`_resolve_batch` of `rows`, `piece` rows at a time (each row is resolved on its own, so
  the same entries), so that its `(rows, _RESOLVE_BLOCK)` temporaries stay within 8 MB: the
  pruned kernel resolves `budget` rows at its start (82 MB at once for 10k rows)."""
  n, count = m.shape[0], rows.shape[0]
  piece = min(piece, count)
  pieces = -(-count // piece)
  rows = jnp.concatenate([rows, jnp.full((pieces * piece - count,), n, jnp.int32)])  # padding: row n, dropped

  def body(p, state):
    return _resolve_batch(rows_data, labeled, *state, jax.lax.dynamic_slice(rows, (p * piece,), (piece,)))

  return jax.lax.fori_loop(0, pieces, body, (m, exact))


def _settle(rows_data, labeled, m, exact, k: int, batch: int = 256, mesh=None):
  """Entries whose `k` largest are all exact (before each greedy step): while some of them
  is not, the rows among the `batch` largest get resolved. The rest may stay upper bounds:
  they are at or below the `k`-th value, and their exact entries are lower. `mesh`: see
  `parallel.top_k_split`."""
  batch = min(m.shape[0], max(k, batch))

  def pending(state):
    m, exact = state
    return jnp.logical_not(jnp.all(exact[parallel.top_k_split(m, k, mesh)[1]]))

  def body(state):
    m, exact = state
    return _resolve_batch(rows_data, labeled, m, exact, parallel.top_k_split(m, batch, mesh)[1].astype(jnp.int32))

  return jax.lax.while_loop(pending, body, (m, exact))


def _row_d2_to(xs, xf, center, chunk: int = 1024, shards: int = 1):
  """`_row_d2(xs, xf[center])`, a block of rows at a time (the gathered centers would
  otherwise double the input's memory). With `shards` equal shares of rows (over a mesh's
  `data` axis), every share takes its own block of rows at once, so that no device reads
  another's rows (a slice across shares would gather the whole input on each device)."""
  n, d = xs.shape
  per = n // shards
  rows = min(chunk, per)
  xs3, center2 = xs.reshape(shards, per, d), center.reshape(shards, per)

  def body(b, u):
    start = jnp.minimum(b * rows, per - rows)  # the last block overlaps: same values rewritten
    block = jax.lax.dynamic_slice(xs3, (0, start, 0), (shards, rows, d))
    centers = xf[jax.lax.dynamic_slice(center2, (0, start), (shards, rows))]
    return jax.lax.dynamic_update_slice(u, _row_d2(block, centers), (0, start))

  u = jax.lax.fori_loop(0, (per + rows - 1) // rows, body, jnp.zeros((shards, per), jnp.float32))
  return u.reshape(n)


def _from_mean(xf, valid):
  """Squared distance of every row to the mean of the valid rows (the start without labels)."""
  weights = valid.astype(jnp.float32)  # a product, not a masked copy of the rows
  xf_mean = jnp.dot(weights, xf, precision=jax.lax.Precision.HIGHEST) / jnp.sum(weights)
  return jnp.sum((xf - xf_mean) ** 2, axis=1)


def _rows_data(x):
  """(stored rows, float32 rows, squared norms, norms)."""
  xf = x.astype(jnp.float32)
  return (_stored(x), xf) + _norms(xf)


def _prepare(x, labeled_mask, block: int):
  """The rows' data and the labeled index that the functions here take."""
  return _rows_data(x), _labeled_index(labeled_mask, max(block, _RESOLVE_BLOCK))


def _start_state(data, labeled, labeled_mask, valid, block: int, guess=None, shards: int = 1):
  """The greedy loop's initial entries and which of them are exact. Labeled and padding
  rows get -inf (never picked); without labeled points every row gets its exact distance
  from the mean (an index-independent first pick). The other entries are each row's
  nearest-labeled distance, or an upper bound on it where not `exact`. `guess(labeled)`:
  each row's guessed nearest center and a lower bound on its distance to every other one
  (default `_nearest_guess` with the GEMM's bound). `shards`: the rows' equal shares over
  devices (`_row_d2_to`)."""
  xs, xf, sq, norm = data
  n = xs.shape[0]
  if guess is None:
    bound = lambda cols: _expanded_lower_bound(xf, sq, norm, xf[cols], sq[cols], norm[cols])
    guess = lambda labeled: _nearest_guess(bound, labeled, block, n)
  center, second = guess(labeled)
  u = _row_d2_to(xs, xf, center, shards=shards)
  any_labeled = labeled[1] > 0
  m = jax.lax.cond(any_labeled, lambda: u, lambda: _from_mean(xf, valid))
  exact = (second >= u) | labeled_mask | jnp.logical_not(valid) | jnp.logical_not(any_labeled)
  return jnp.where(labeled_mask | jnp.logical_not(valid), -jnp.inf, m), exact
