"""Pruned greedy k-center: the same picks as `kcenter_dense`, computing far fewer distances.

`kcenter_greedy(..., prune=True)` runs the same greedy loop (with the same lookahead) but
screens the (row, new center) pairs before reading any row. Before the loop, every row gets
coordinates `z` in a 16-dim subspace near the top principal directions (`_projection`; a
few subspace iterations on a row sample) and its residual norm `r` outside it; then
`|x_i - x_c|^2 >= |z_i - z_c|^2 + (r_i - r_c)^2 = |w_i - w_c|^2` with `w = [z, r]`, 17 values
per row. Each step computes this bound for every row and each new center with one small
product (n x 17 x k, against n x d x k for the plain kernel's guard) and computes the direct
distance only for the pairs whose bound is within reach of the row's entry: on clustered
embeddings, each new center's own cluster. When more than `cap` pairs pass, the step takes
the plain kernel's guarded update instead. The test carries a safety margin (relative 1e-3
on the distance, plus 1e-4 times the two rows' centered norms for the round-off of the
projected coordinates, and the expanded product's own round-off bound), so a skipped pair
could not have changed in float32 either.

The initial entries skip the plain kernel's full GEMM (`kcenter_init`): each row's nearest
labeled center is guessed in the projected coordinates (`_projected_guess`), its direct
distance is an upper bound on the entry, and only the rows that reach the top are resolved
exactly (the `budget` largest in one batch before the loop, the others as they come up). The
exact entries and the updates are the same direct form as in the plain kernel, so the
picks are the same; ties still go to the lowest index.

On isotropic Gaussians the bound prunes nothing (distances concentrate): a probe before the
loop (the screen on a row sample, `_probe`) detects this, and the kernel then starts from
the plain kernel's GEMM guess and every step takes the plain update.
"""

import functools

import jax
import jax.numpy as jnp

from jaxal.acquisition.kcenter_dense import _greedy_dense, _guard, _update_many
from jaxal.acquisition.kcenter_init import (_argmin_packed, _block, _from_mean, _num_blocks, _prepare, _resolve,
                                            _resolve_pieces, _settle, _start_state)
from jaxal.acquisition.kcenter_pairs import _pairs_update

_REL = 1e-3
_ABS = 1e-4


def _projection(xf, k: int, sample: int, iters: int = 4, chunk: int = 1024):
  """A k-dim orthonormal basis close to the top principal directions (a few subspace
  iterations on a strided row sample), and per row: the coordinates `z` in it, the
  residual norm `r = |y - z q^T|` and `|y|`, where y = x - mean (computed a row block at a
  time, directly rather than by cancellation)."""
  n, d = xf.shape
  s = xf[::max(1, n // sample)][:sample]
  mu = jnp.mean(s, axis=0)
  s = s - mu
  # The transposed sample, materialized: a product contracting the rows of `s` in place ran
  # 3-4x slower on XLA:CPU (NOTES §7g).
  s_t = jax.lax.optimization_barrier(s.T)
  q = jax.random.normal(jax.random.key(0), (d, k), jnp.float32)
  for _ in range(iters):
    q, _ = jnp.linalg.qr(s_t @ (s @ q))
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


def _coordinates(z, r):
  """`w = [z, r]` per row (its squared norm is the centered row's, `|x - mean|^2`) and
  `|w|^2`."""
  w = jnp.concatenate([z, r[:, None]], axis=1)
  return w, jnp.sum(w * w, axis=1)


def _guess_block(n: int) -> int:
  """Labeled centers per block of the projected guess: its (block, n) distances stay within
  about 8 MB (the guess at n = 50k took 55 ms with blocks of 256, 25-32 ms with 64)."""
  return max(16, min(256, 2**21 // max(n, 1)))


def _projected_guess(w, wsq, labeled, block: int):
  """Per row, a labeled center near it: about the nearest in the projected coordinates `w`
  (one packed min reduction per block), and -inf for the bound on the others' distances (no
  entry is certified exact by the guess)."""
  n = w.shape[0]
  w_t = jax.lax.optimization_barrier(w.T)  # (centers, rows) products without a transposed operand

  def body(b, acc):
    best, center = acc
    cols, real = _block(labeled, b, block)
    d2 = wsq[cols][:, None] + wsq[None, :] - 2.0 * jnp.dot(w[cols], w_t, precision=jax.lax.Precision.HIGHEST)
    j1, b1 = _argmin_packed(d2, real, axis=0)
    better = b1 < best
    return jnp.where(better, b1, best), jnp.where(better, cols[j1], center)

  init = (jnp.full((n,), jnp.inf), jnp.zeros((n,), jnp.int32))
  _, center = jax.lax.fori_loop(0, _num_blocks(labeled, block), body, init)
  return center, jnp.full((n,), -jnp.inf)


def _screen(w, wsq, ny, cols, m, rows=slice(None)):
  """(n, len(cols)) flags: the (row, center `cols[j]`) pairs that may lower the row's entry
  `m` (every row's, or `rows`'). Entries at -inf (picked, labeled) never get lower.

  `|w_i - w_c|^2 = |z_i - z_c|^2 + (r_i - r_c)^2` bounds `|x_i - x_c|^2` from below; it is
  computed in the expanded form (one small product) less that form's round-off bound, twice
  over (|w_i| = ny_i), and a pair passes when it is within reach of the entry: `sqrt(m)`
  grown by the relative margin plus the absolute one (times the two rows' centered norms)."""
  lb2 = wsq[rows][:, None] + wsq[cols][None, :] - 2.0 * jnp.dot(w[rows], w[cols].T, precision=jax.lax.Precision.HIGHEST)
  norms = ny[rows][:, None] + ny[cols][None, :]
  lb2 = lb2 - 4.0 * (w.shape[1] + 2) * 2.0 ** -24 * norms * norms
  reach = jnp.sqrt(jnp.maximum(m, 0.0))[:, None] * (1.0 + _REL) + _ABS * norms
  return (m[:, None] > -jnp.inf) & (lb2 <= reach * reach)


def _probe(data, labeled, labeled_mask, valid, w, wsq, ny, probes: int, sample: int = 64):
  """The share of (row, center) pairs the screen would pass on a strided row sample, with
  the `probes` sample rows farthest from the labeled set (from the mean without labels) as
  the centers: about the share of rows each early pick would have to read."""
  xf = data[1]
  n = xf.shape[0]
  rows = jnp.arange(min(sample, n)) * max(1, n // sample)
  m = jax.lax.cond(labeled[1] > 0, lambda: _resolve(data, rows, jnp.full(rows.shape, jnp.inf), labeled),
                   lambda: _from_mean(xf, valid)[rows])
  m = jnp.where(valid[rows] & jnp.logical_not(labeled_mask[rows]), m, -jnp.inf)
  centers = rows[jax.lax.top_k(m, min(probes, rows.shape[0]))[1]]
  return jnp.mean(_screen(w, wsq, ny, centers, m, rows))


@functools.partial(jax.jit, static_argnames=("budget", "block", "cap", "proj", "sample", "guard_cap", "probes",
                                             "probe_fraction", "lookahead", "resolve_batch"))
def _kcenter_pruned(x, labeled_mask, valid, budget: int, block: int, cap: int, proj: int, sample: int = 1024,
                    guard_cap: int = 0, probes: int = 0, probe_fraction: float = 1.0, lookahead: int = 32,
                    resolve_batch: int = 256):
  n, k = x.shape[0], min(lookahead, x.shape[0])
  data, labeled = _prepare(x, labeled_mask, block)
  z, r, ny = _projection(data[1], proj, sample)
  w, wsq = _coordinates(z, r)
  screened = jnp.ones((), bool)
  if probes:
    screened = _probe(data, labeled, labeled_mask, valid, w, wsq, ny, probes) <= probe_fraction

  def lazy():
    # Only the rows that reach the top need their exact entry: resolve the `budget` largest
    # upper bounds before the loop (every pick needs it; a piece at a time, GEMMs of 2048
    # rows), the others as they come up (`settle`).
    m, exact = _start_state(data, labeled, labeled_mask, valid, block,
                            functools.partial(_projected_guess, w, wsq, block=_guess_block(n)))
    return _resolve_pieces(data, labeled, m, exact, jax.lax.top_k(m, min(n, budget))[1].astype(jnp.int32))

  # The projected guess is poor where the screen is (isotropic data): the GEMM's instead.
  plain = lambda: _start_state(data, labeled, labeled_mask, valid, block)
  m0, exact = jax.lax.cond(screened, lazy, plain)
  any_labeled = labeled[1] > 0
  xs, guard = data[0], _guard(data, guard_cap)
  # A small tier for the usual step (250-500 rows a step on MNIST features, 10k rows; its
  # compaction then costs less), and one of every row.
  tiers = [(512, cap), (n * -(-k // 32), cap)]

  def update(m, pos, xc, active, first):
    plain = functools.partial(_update_many, xs, pos=pos, xc=xc, active=active, guard=guard)

    def screen(m):
      maybe = _screen(w, wsq, ny, pos, m) & active[None, :]
      return _pairs_update(xs, maybe, xc, m, tiers, lambda m: plain(m, first=False))

    return jax.lax.cond(screened & jnp.logical_not(first), screen, lambda m: plain(m, first=first), m)

  settle = functools.partial(_settle, data, labeled, batch=resolve_batch)
  picks, reads, steps = _greedy_dense(xs, m0, any_labeled, budget, guard, lookahead, update, settle, exact)
  return picks, reads / float(budget * n), screened, steps  # a float: budget * n passes int32 at 1M x 10k
