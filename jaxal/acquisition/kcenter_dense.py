"""Greedy k-center (core-set; Sener & Savarese 2018; ALGORITHMS.md §3), jitted end to end.

Farthest-first traversal over Euclidean distance, starting from the labeled set as centers:
each pick is the point whose distance to its nearest center is largest, then that point
becomes a center. The whole loop runs on device (`lax.while_loop`), with one compilation per
`(n, d, budget)` shape whatever the labeled count.

Memory is O(n*d) for the embeddings plus O(n * lookahead) working space. Every distance is
defined by the direct form `sum((x - x_u)**2)` in a fixed summation order (`_row_d2`),
including the initial distances to the labeled centers (`kcenter_init`: a GEMM a block of
centers at a time finds each row's nearest center, within a proven round-off bound). A step takes up to `lookahead` picks at
once (`_lookahead`: exactly the picks one pick per step would make, in the same order); with
float32 storage the expanded form, one GEMM for all of them, reads the rows and only selects
the (row, center) pairs that may change, within a proven round-off bound, for the direct
form (`_guarded_update`). Squared distances are kept (argmax is the same). Ties go to the
lowest index. Picked and labeled points get `-inf`, so duplicates can never be picked twice.
With no labeled point, the first center is the point farthest from the mean (an
index-independent rule, so selections are permutation-equivariant). `storage_dtype=
jnp.bfloat16` halves the bytes read per pass; distances still accumulate in float32. The
rows are kept as their uint16 bit patterns and widened with a shift (exact): on XLA:CPU a
bfloat16 `astype` inside the loop is 2x slower than the shift. A bfloat16 GEMM is slower than
a float32 one on CPU, so bfloat16 steps take one dense pass per new center
(benchmarks/NOTES.md §7c); the option pays off on memory-bound accelerators.

This module holds the unpruned kernel and the pieces both kernels share (the lookahead, the
loop); `kcenter_pairs` the sparse pair update, `kcenter_rows` the row storage and distance forms,
`kcenter_init` the initial entries, `kcenter_pruned` the pruned kernel and `kcenter` the
public entry point.
"""

import functools

import jax
import jax.numpy as jnp

from jaxal import parallel
from jaxal.acquisition.kcenter_init import _prepare, _settle, _start_state
from jaxal.acquisition.kcenter_pairs import _pairs_update
from jaxal.acquisition.kcenter_rows import _expanded_lower_bound, _load, _row_d2


def _dense_min(xs, xc, count, m):
  """`minimum(m, distances)` to the first `count` centers of `xc`, one full pass each."""
  return jax.lax.fori_loop(0, count, lambda l, m: jnp.minimum(m, _row_d2(xs, xc[l])), m)


def _guarded_update(xs, sq, norm, pos, xc, active, min_d2, cap: int):
  """`minimum(min_d2, |x - c|^2)` over the `active` centers `xc` (rows `pos` of `xs`), with
  the direct row reduction's bits, at GEMM speed; returns it and the row reads.

  The expanded-norm product `|x|^2 + |c|^2 - 2 x.c` streams the rows faster than the direct
  reduction (NOTES §7) and reads them once for all the centers, but rounds differently, so it
  only decides which (row, center) pairs may change: a pair whose product value exceeds the
  row's entry by more than the two forms' joint round-off bound cannot lower it; the others
  (each center's own neighbourhood, plus near-ties) get the direct `_row_d2` on gathered
  rows, bit-equal to the dense pass. When more than `cap` pairs qualify, the step takes the
  dense pass, one center at a time.
  """
  n = xs.shape[0]
  maybe = (_expanded_lower_bound(xs, sq, norm, xc, sq[pos], norm[pos]) <= min_d2[:, None]) & active[None, :]
  num_active = jnp.sum(active, dtype=jnp.int32)
  m, reads = _pairs_update(xs, maybe, xc, min_d2, [(cap, cap)], lambda m: (_dense_min(xs, xc, num_active, m), 0))
  return m, reads + n * num_active  # the product read every row once per center


def _guard_cap(n: int) -> int:
  """Rows a guarded step recomputes directly at most (else it takes the dense pass)."""
  return min(n, max(64, n // 32))


def _guard(data, cap: int):
  """`_guarded_update`'s inputs from the rows' data (`kcenter_init._rows_data`): the row
  norms (squared, and plain) and its row cap; None (dense passes) without a cap or with
  bfloat16 storage."""
  xs, _, sq, norm = data
  return (sq, norm, cap) if cap and xs.dtype == jnp.float32 else None


def _update_many(xs, m, pos, xc, active, first, guard=None):
  """One greedy step's update of every row for the `active` new centers `xc` (rows `pos`):
  `minimum(m, distances)`, through `_guarded_update` when `guard = (sq, norm, cap)` is
  given. `first` (the first pick without labels; then only center 0 is active): `m` takes
  the distances to it instead, entries at -inf staying. Returns `(m, row reads)`."""
  n = xs.shape[0]
  num_active = jnp.sum(active, dtype=jnp.int32)

  def first_pass(m):
    return jnp.where(m > -jnp.inf, _row_d2(xs, xc[0]), m), n

  if guard is None:
    # bfloat16 storage: one dense pass per center, outside any `cond` (inside one, XLA:CPU
    # split the widening from its reduction and materialized it, 13x slower per pass).
    def body(l, m):
      d2 = _row_d2(xs, xc[l])
      return jnp.where(first, jnp.where(m > -jnp.inf, d2, m), jnp.minimum(m, d2))

    return jax.lax.fori_loop(0, num_active, body, m), n * num_active
  sq, norm, cap = guard
  return jax.lax.cond(first, first_pass, lambda m: _guarded_update(xs, sq, norm, pos, xc, active, m, cap), m)


def _lookahead(xs, m, k: int, remaining, mesh=None):
  """The greedy's next picks among the `k` largest entries: `(pos, count, xc)`, the first
  `count` of `pos` in pick order, with their float32 rows (`xc`).

  Among the candidates, the one-pick-at-a-time greedy is replayed exactly: each pick lowers
  the other candidates' entries by their direct distance to it (the same bits the update
  will give), and a candidate is the next pick while its entry is the largest among the
  candidates and still beats every row outside them. Those rows only fall and start at or
  below the `k`-th value `vals[-1]` (`top_k` orders ties by the lower index, the pick order,
  so an outside row tied with `vals[-1]` has a higher index than `pos[-1]`). The replay
  goes in rounds: each takes the leading run, in (entry desc, index asc) order, of
  candidates no earlier one in the run comes closer to (their entries are then unchanged by
  the run's picks). The count is >= 1 when `remaining` >= 1. `mesh`: see `parallel.top_k_split`."""
  vals, pos = parallel.top_k_split(m, k, mesh)
  rows = xs[pos]
  xc = _load(rows)
  d2 = _row_d2(rows[:, None, :], xc[None, :, :])  # d2[j, l]: candidate j to candidate l
  ids = jnp.arange(k)
  earlier = ids[None, :] < ids[:, None]
  # The k-th value and its index, as reductions: slicing `vals[-1]` let XLA:CPU fold the slice
  # into the sort that top_k is lowered through, which then sorted all n entries instead of
  # calling its TopK kernel (0.8 ms a step at n = 10k).
  floor = jnp.min(vals)
  floor_pos = jnp.max(jnp.where(vals == floor, pos, -1))  # ties are in index order

  def round_(state):
    e, avail, order, count, _ = state
    key = jnp.where(avail, e, -jnp.inf)
    _, _, perm = jax.lax.sort((-key, pos, ids), num_keys=2)
    ek, pk = key[perm], pos[perm]
    unchanged = jnp.all(jnp.logical_not(earlier) | (d2[perm][:, perm] >= ek[:, None]), axis=1)
    beats_outside = (ek > floor) | ((ek == floor) & (pk <= floor_pos))
    ok = unchanged & beats_outside & (ek > -jnp.inf) & (count + ids < remaining)
    run = jnp.sum(jnp.cumprod(ok.astype(jnp.int32)))
    taken = jnp.zeros((k,), bool).at[perm].set(ids < run)
    order = order.at[jnp.where(ids < run, count + ids, k)].set(perm, mode="drop")
    e = jnp.minimum(e, jnp.min(jnp.where(taken[None, :], d2, jnp.inf), axis=1))
    return e, avail & jnp.logical_not(taken), order, count + run, run > 0

  state = (vals, jnp.ones((k,), bool), ids, jnp.zeros((), jnp.int32), jnp.ones((), bool))
  _, _, order, count, _ = jax.lax.while_loop(lambda s: s[4] & (s[3] < jnp.minimum(remaining, k)), round_, state)
  return pos[order], count, xc[order]


def _greedy_dense(xs, min_d2, any_labeled, budget: int, guard, lookahead: int = 32, update=None,
                  settle=None, exact=None, mesh=None):
  """`budget` farthest-first picks from the entries `min_d2`, the row reads they took, and
  the number of steps.

  Each step takes up to `lookahead` picks at once (`_lookahead`): the same picks, in the same
  order, as one pick per step, with one read of the rows for all of them. `update(m, pos,
  xc, active, first) -> (m, reads)` lowers the entries for the new centers (default: every
  row, `_update_many` with `guard`, see `_guard`). Where some entries are only upper bounds (not `exact`),
  `settle(m, exact, k) -> (m, exact)` makes the `k` largest exact before each step. `mesh`:
  the mesh whose `data` axis splits the rows in equal shares, or None (`parallel.top_k_split`)."""
  n = xs.shape[0]
  update = update or functools.partial(_update_many, xs, guard=guard)
  k = min(lookahead, n)

  def step(carry):
    m, exact, done, picks, reads, steps = carry
    if settle is not None:
      m, exact = settle(m, exact, k)
    first = jnp.logical_and(done == 0, jnp.logical_not(any_labeled))
    pos, count, xc = _lookahead(xs, m, k, budget - done, mesh)
    count = jnp.where(first, 1, count)
    active = jnp.arange(k) < count
    m, step_reads = update(m, pos, xc, active, first)
    m = m.at[pos].min(jnp.where(active, -jnp.inf, jnp.inf))  # picked points stay at -inf
    picks = picks.at[jnp.where(active, done + jnp.arange(k), budget)].set(pos.astype(jnp.int32), mode="drop")
    return m, exact, done + count, picks, reads + step_reads, steps + 1

  zero = jnp.zeros((), jnp.int32)
  init = (min_d2, jnp.ones((), bool) if exact is None else exact, zero, jnp.zeros((budget,), jnp.int32), zero, zero)
  _, _, _, picks, reads, steps = jax.lax.while_loop(lambda c: c[2] < budget, step, init)
  return picks, reads, steps


@functools.partial(jax.jit, static_argnames=("budget", "block", "guard_cap", "lookahead", "mesh"))
def _kcenter(x, labeled_mask, valid, budget: int, block: int, guard_cap: int = 0, lookahead: int = 32, mesh=None):
  """The plain kernel. With `mesh` (rows split in equal shares over its `data` axis), every
  row-wise pass stays on its rows' device: only each share's top candidates, the new
  centers' rows and a few per-row vectors (the labeled index) cross devices (`mesh` as
  `parallel.split_mesh` gives it)."""
  shards = parallel.row_shards(x, mesh)
  data, labeled = _prepare(x, labeled_mask, block)
  min_d2, exact = _start_state(data, labeled, labeled_mask, valid, block, shards=shards)
  settle = functools.partial(_settle, data, labeled, mesh=mesh)
  picks, _, steps = _greedy_dense(data[0], min_d2, labeled[1] > 0, budget, _guard(data, guard_cap), lookahead,
                                  settle=settle, exact=exact, mesh=mesh)
  return picks, steps
