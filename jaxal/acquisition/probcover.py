"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering Lens",
NeurIPS 2022).

Definition: with balls B_delta(x) = {x' : ||x' - x||_2 <= delta} in embedding space, pick
greedily `b` points that maximise the number of pool points covered by the union of the
balls of the labeled and picked points: each pick is the point whose ball holds the most
uncovered points (points covered by the labeled set are covered from the start; a point
covers itself).

delta by purity: k-means with k = number of classes; a ball is pure when every pool point
in it has the centre's cluster; purity(delta) = share of points with a pure ball; delta is
the largest value on the grid {step, 2 step, ...} with purity >= alpha = 0.95 (the paper's
alpha). purity is non-increasing in delta, so this is also "the last delta before purity
drops below alpha" (scikit-activeml's loop).

The paper uses self-supervised (SimCLR / DINO) embeddings; jaxal uses the round model's
penultimate embeddings (`predictor.outputs()[1]`), those of the pretrained backbone when
DeepCluster pretraining ran.

Choices where the paper is ambiguous (authors' code: github.com/avihu111/TypiClust,
`deep-al/pycls/al/prob_cover.py`):
* Embeddings are L2-normalised first (`normalize`; the authors' `load_features` does so),
  so distances lie in [0, 2] and the grid step (default 0.05) is in those units.
* Balls are closed (`<=`, the paper's and scikit-activeml's; the authors' graph uses `<`).
* If no grid value reaches purity alpha, delta is the smallest grid value (scikit-activeml).
* k-means: jaxal's jitted Lloyd k-means (`pretrain.deepcluster.kmeans`), k = the number of
  classes (the logits' width), `kmeans_iters` iterations from k random pool points.
* Greedy ties go to the lower pool index (the authors' `argmax`); once everything is
  covered every gain is 0 and picks continue in index order. Only selectable points are
  picked; points neither labeled nor selectable are left out of the graph.

Bounded memory, no n x n matrix: distances are computed on the device in `block x block`
tiles, each unordered pair of row blocks once (distances are symmetric). One pass finds
each point's squared distance to the nearest point of another cluster (purity at every
grid delta at once), one pass over the labeled rows marks the covered points, one pass
counts each point's uncovered neighbours. The greedy is lazy and
exact: counts are upper bounds that only fall; a pick re-reads one row to cover its ball
and marks stale only the points within 2 delta of it (no other ball meets the new cover);
when the best bound is stale, the `lookahead` best bounds are recomputed from their rows.
Ties and picks are those of the plain greedy.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxal.acquisition.typiclust import _check, _is_int, l2_normalize, pool_embeddings
from jaxal.pretrain.deepcluster import kmeans

DEFAULTS = {"probcover_alpha": 0.95, "probcover_delta": None, "probcover_delta_step": 0.05,
            "probcover_clusters": None, "probcover_kmeans_iters": 20, "probcover_normalize": True}
_HI = jax.lax.Precision.HIGHEST


def _pad(x, block: int):
  n = x.shape[0]
  pad = -n % block
  return jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]), jnp.arange(n + pad) < n


def _d2(rows, rsq, cols, csq):
  return jnp.maximum(rsq[:, None] + csq[None, :] - 2 * jnp.dot(rows, cols.T, precision=_HI), 0.0)


def _upper_tiles(x, block: int, tile_fn, init):
  """Folds `tile_fn(acc, a, b, i, j)` over the (block x block) tiles i <= j of the padded rows
  (distances are symmetric: each pair of rows is computed once)."""
  num = x.shape[0] // block

  def row(i, acc):
    return jax.lax.fori_loop(i, num, lambda j, acc: tile_fn(acc, i, j), acc)

  return jax.lax.fori_loop(0, num, row, init)


def _slices(i, block, *arrays):
  return tuple(jax.lax.dynamic_slice_in_dim(a, i * block, block) for a in arrays)


def _fold_into(acc, i, block, values, op):
  return jax.lax.dynamic_update_slice_in_dim(acc, op(jax.lax.dynamic_slice_in_dim(acc, i * block, block), values),
                                             i * block, 0)


@functools.partial(jax.jit, static_argnames=("block",))
def _other_cluster_d2(x, clusters, block: int):
  """Each point's squared distance to the nearest point of another cluster (+inf if none)."""
  xp, valid = _pad(x, block)
  cp = jnp.concatenate([clusters, jnp.full((xp.shape[0] - x.shape[0],), -1, clusters.dtype)])
  sq = jnp.sum(xp * xp, axis=1)

  def tile(r, i, j):
    a, ca, sa, va = _slices(i, block, xp, cp, sq, valid)
    b, cb, sb, vb = _slices(j, block, xp, cp, sq, valid)
    d2 = jnp.where((ca[:, None] != cb[None, :]) & va[:, None] & vb[None, :], _d2(a, sa, b, sb), jnp.inf)
    r = _fold_into(r, i, block, jnp.min(d2, axis=1), jnp.minimum)
    return _fold_into(r, j, block, jnp.min(d2, axis=0), jnp.minimum)

  return _upper_tiles(xp, block, tile, jnp.full((xp.shape[0],), jnp.inf, jnp.float32))[:x.shape[0]]


def purity_radius(embeddings, clusters, *, alpha: float = 0.95, step: float = 0.05, block: int | None = None):
  """The largest `delta = g * step` (g >= 1) whose purity is at least `alpha`, and that purity.

  `embeddings` are used as given; `clusters` are `(n,)` cluster ids.
  """
  x = embeddings if isinstance(embeddings, jax.Array) else jax.device_put(np.asarray(embeddings, np.float32))
  clusters = clusters if isinstance(clusters, jax.Array) else jax.device_put(np.asarray(clusters, np.int32))
  n = x.shape[0]
  r2 = np.asarray(jax.device_get(_other_cluster_d2(x.astype(jnp.float32), clusters.astype(jnp.int32),
                                                   _block(n, block))), np.float64)
  finite = r2[np.isfinite(r2)]
  top = np.sqrt(finite.max()) if finite.size else 0.0
  grid = np.round(step * np.arange(1, max(1, int(np.ceil(top / step))) + 2), 12)
  purity = np.array([np.mean(r2 > np.float32(g * g)) for g in grid])
  ok = np.flatnonzero(purity >= alpha)
  g = ok[-1] if ok.size else 0
  return float(grid[g]), float(purity[g])


def _block(n: int, block: int | None) -> int:
  """Rows per block (tiles are `block x block`; a greedy refresh reads `lookahead x n`)."""
  return int(block) if block else int(min(1024, 1 << max(3, (n - 1).bit_length() - 2)))


@functools.partial(jax.jit, static_argnames=("budget", "block", "lookahead"))
def _probcover(x, labeled, delta2, budget: int, block: int, lookahead: int):
  n = x.shape[0]
  xp, valid = _pad(x, block)
  m = xp.shape[0]
  lab = jnp.concatenate([labeled, jnp.zeros((m - n,), bool)])
  sq = jnp.sum(xp * xp, axis=1)

  # Points covered by the labeled set: a pass over the labeled rows only.
  rows = max(8, min(block, 2**24 // m))  # labeled rows per (rows, m) block: within 64 MB
  lab_idx = jnp.nonzero(lab, size=m + rows, fill_value=m - 1)[0]
  num_lab = jnp.sum(lab)

  def cover_block(i, covered):
    idx = jax.lax.dynamic_slice_in_dim(lab_idx, i * rows, rows)
    live = (i * rows + jnp.arange(rows)) < num_lab
    d2 = _d2(xp[idx], sq[idx], xp, sq)
    return covered | jnp.any((d2 <= delta2) & live[:, None], axis=0)

  covered = jax.lax.fori_loop(0, (num_lab + rows - 1) // rows, cover_block, jnp.zeros((m,), bool))
  covered &= valid
  target = valid & ~covered  # points whose cover still counts

  def gains(r, rsq, target):
    return jnp.sum((_d2(r, rsq, xp, sq) <= delta2) & target[None, :], axis=1, dtype=jnp.int32)

  def count_tile(acc, i, j):
    (a, sa, ta), (b, sb, tb) = _slices(i, block, xp, sq, target), _slices(j, block, xp, sq, target)
    ball = _d2(a, sa, b, sb) <= delta2
    acc = _fold_into(acc, i, block, jnp.sum(ball & tb[None, :], axis=1, dtype=jnp.int32), jnp.add)
    other = jnp.where(i == j, 0, jnp.sum(ball & ta[:, None], axis=0, dtype=jnp.int32))
    return _fold_into(acc, j, block, other, jnp.add)

  bound = _upper_tiles(xp, block, count_tile, jnp.zeros((m,), jnp.int32))
  candidate = valid & ~lab
  slack = 4 * delta2 * 1.001 + 1e-4 * (sq + jnp.max(sq))  # float margin on "within 2 delta"

  def body(state):
    bound, fresh, target, candidate, picks, count = state
    top = jax.lax.top_k(jnp.where(candidate, bound, -1), lookahead)[1]
    p = top[0]

    def pick(_):
      d2 = _d2(xp[p][None], sq[p][None], xp, sq)[0]
      near = d2 <= slack
      return (bound, fresh & ~near, target & ~(d2 <= delta2), candidate.at[p].set(False),
              picks.at[count].set(p), count + 1)

    def refresh(_):
      return (bound.at[top].set(gains(xp[top], sq[top], target)), fresh.at[top].set(True), target, candidate, picks, count)

    return jax.lax.cond(fresh[p], pick, refresh, None)

  state = (bound, jnp.ones((m,), bool), target, candidate, jnp.zeros((budget,), jnp.int32), jnp.int32(0))
  state = jax.lax.while_loop(lambda s: s[-1] < budget, body, state)
  return state[4]


def probcover(embeddings, labeled_mask, budget: int, *, delta: float, block: int | None = None,
              lookahead: int = 32) -> np.ndarray:
  """Greedy max coverage of the `delta`-ball graph; `(budget,)` int32 indices in pick order.

  `embeddings` are used as given (normalise them first if wanted); the labeled points'
  balls are covered from the start.
  """
  labeled_mask = np.asarray(labeled_mask, bool)
  n = labeled_mask.size
  if not 0 <= budget <= n - int(labeled_mask.sum()):
    raise ValueError(f"budget {budget} exceeds the {n - int(labeled_mask.sum())} unlabeled points")
  x = embeddings if isinstance(embeddings, jax.Array) else jax.device_put(np.asarray(embeddings, np.float32))
  lookahead = int(max(1, min(lookahead, n)))
  delta2 = jax.device_put(np.float32(np.float64(delta) ** 2))
  picks = _probcover(x.astype(jnp.float32), jax.device_put(labeled_mask), delta2, int(budget), _block(n, block),
                     lookahead)
  return np.asarray(jax.device_get(picks))


def probcover_full(embeddings, labeled_mask, budget: int, key, *, num_clusters: int, alpha: float = 0.95,
                   delta: float | None = None, step: float = 0.05, kmeans_iters: int = 20, normalize: bool = True,
                   block: int | None = None):
  """ProbCover end to end: normalise, choose delta by purity (unless given), greedy cover.

  Returns `(picks, delta)`.
  """
  x = embeddings if isinstance(embeddings, jax.Array) else jax.device_put(np.asarray(embeddings, np.float32))
  x = l2_normalize(x) if normalize else x.astype(jnp.float32)
  if delta is None:
    clusters = kmeans(x, int(min(num_clusters, x.shape[0])), key, iters=int(kmeans_iters)).assignments
    delta, _ = purity_radius(x, clusters, alpha=alpha, step=step, block=block)
  return probcover(x, labeled_mask, budget, delta=delta, block=block), float(delta)


def validate(options: dict) -> None:
  """Raises `ConfigError` naming the first bad `probcover_*` option."""
  a = options["probcover_alpha"]
  _check(isinstance(a, (int, float)) and not isinstance(a, bool) and 0 < a < 1, "probcover_alpha",
         f"must be a number in (0, 1), got {a!r}")
  d = options["probcover_delta"]
  _check(d is None or (isinstance(d, (int, float)) and not isinstance(d, bool) and d > 0 and np.isfinite(d)),
         "probcover_delta", f"must be None (chosen by purity) or a number > 0, got {d!r}")
  s = options["probcover_delta_step"]
  _check(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 and np.isfinite(s),
         "probcover_delta_step", f"must be a number > 0, got {s!r}")
  c = options["probcover_clusters"]
  _check(c is None or (_is_int(c) and c >= 2), "probcover_clusters",
         f"must be None (the number of classes) or an integer >= 2, got {c!r}")
  it = options["probcover_kmeans_iters"]
  _check(_is_int(it) and it >= 0, "probcover_kmeans_iters", f"must be an integer >= 0, got {it!r}")
  _check(isinstance(options["probcover_normalize"], bool), "probcover_normalize",
         f"must be True or False, got {options['probcover_normalize']!r}")


def probcover_acquire(view, budget: int, key) -> np.ndarray:
  """ProbCover on the predictor's penultimate embeddings (options: `DEFAULTS`)."""
  options = {**DEFAULTS, **view.options}
  logits, embeddings, labeled, rows = pool_embeddings(view, "probcover")
  clusters = options["probcover_clusters"] or max(2, int(logits.shape[1]))
  picks, _ = probcover_full(embeddings, labeled, budget, key, num_clusters=clusters,
                            alpha=options["probcover_alpha"], delta=options["probcover_delta"],
                            step=options["probcover_delta_step"], kmeans_iters=options["probcover_kmeans_iters"],
                            normalize=options["probcover_normalize"])
  return picks if rows is None else rows[picks].astype(np.int32)
