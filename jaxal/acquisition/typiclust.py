"""TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies
Suit High and Low Budgets", ICML 2022).

Definition: cluster the pool's embeddings (labeled and unlabeled points) into
`|L| + b` clusters with k-means; then, `b` times, take the largest cluster that holds no
labeled point and no point picked earlier in this batch, and pick its most typical point,

    typicality(x) = ( (1/K) * sum_{x_i in KNN(x)} ||x - x_i||_2 )^-1,

where KNN(x) are the K nearest neighbours of x among the points of its own cluster.

The paper clusters self-supervised (SimCLR) embeddings; jaxal clusters the round model's
penultimate embeddings (`predictor.outputs()[1]`), which are those of the pretrained
backbone when DeepCluster pretraining ran.

Choices where the paper is ambiguous (the authors' code is github.com/avihu111/TypiClust,
`deep-al/pycls/al/typiclust.py`):
* Embeddings are L2-normalised first (`normalize`; the authors' `load_features` does so).
* Clusters: `min(|L| + b, max_clusters)` with `max_clusters = 500` (the authors' cap), by
  Lloyd k-means (`kmeans_up_to`: the first `k` rows of a random permutation as initial
  centroids, `kmeans_iters` fixed iterations, an empty cluster keeps its centroid). It runs
  with `min(max_clusters, n)` centroid slots of which the first `k` are live, so one
  compiled program serves every round although `k` grows with |L|. The authors use sklearn
  KMeans (MiniBatchKMeans above 50 clusters).
* K = min(knn, cluster size - 1), at least 1, with knn = 20 (the authors' K_NN; in
  clusters under 40 points the authors use half the cluster, scikit-activeml all the
  other points, as here). Distances are Euclidean (the paper; the authors' faiss
  index returns squared distances). The neighbours are all pool points of the cluster,
  the point itself excluded: a cluster's typicality is computed once per round.
* The picked point maximises typicality, i.e. minimises the mean K-NN distance (no
  epsilon is needed to rank); ties go to the lower pool index.
* Cluster order: each pick takes the cluster with the fewest represented points (labeled
  plus picked in this batch), then the largest, then the lowest id, among clusters that
  still have a selectable point; clusters of at most `min_cluster_size = 5` points come
  last (the authors drop them). With `|L| + b` clusters the first pass is the paper's rule;
  when the budget exceeds the uncovered clusters (the cap), clusters are revisited, taking
  their next most typical selectable point (the authors cycle through the same order).
* Points that are neither labeled nor selectable (held out) are left out of the clustering.

Work: k-means O(iters * n * k * d); typicality only for the clusters the batch visits, in
(block x block) tiles of same-cluster pairs, O(sum_c m_c^2 * d) and O(n * knn) memory.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import config as config_lib, global_arrays

DEFAULTS = {"typiclust_knn": 20, "typiclust_max_clusters": 500, "typiclust_min_cluster_size": 5,
            "typiclust_kmeans_iters": 20, "typiclust_normalize": True}
_HI = jax.lax.Precision.HIGHEST


@jax.jit
def l2_normalize(x):
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _cluster_sequence(size, labeled_count, budget: int, min_size: int):
  """The cluster of each pick and how many picks that cluster had before it."""
  selectable = size - labeled_count
  small = size <= min_size
  big_int = jnp.iinfo(jnp.int32).max

  def step(carry, _):
    represented, left = carry
    pool = left > 0
    big = pool & ~small
    pool = jnp.where(jnp.any(big), big, pool)
    pool &= represented == jnp.min(jnp.where(pool, represented, big_int))
    pool &= size == jnp.max(jnp.where(pool, size, -1))
    c = jnp.argmax(pool)
    visit = selectable[c] - left[c]
    return (represented.at[c].add(1), left.at[c].add(-1)), (c, visit)

  _, (seq, visit) = jax.lax.scan(step, (labeled_count, selectable), None, length=budget)
  return seq.astype(jnp.int32), visit.astype(jnp.int32)


def _mean_knn_distance(x, assign, needed, size, knn: int, block: int):
  """Mean Euclidean distance to the K nearest same-cluster points (K = min(knn, size - 1),
  at least 1) for points of `needed` clusters; +inf elsewhere."""
  n, d = x.shape
  k = needed.shape[0]
  key = jnp.where(needed[assign], assign, k)
  order = jnp.argsort(key, stable=True)
  cs = jnp.concatenate([key[order], jnp.full((block,), k + 1, key.dtype)])
  xs = jnp.concatenate([x[order], jnp.zeros((block, d), x.dtype)])
  sq = jnp.sum(xs * xs, axis=1)
  pos = jnp.arange(n + block)
  start = jnp.searchsorted(cs[:n], jnp.arange(k + 2), side="left")  # start[c]: first row of cluster c
  total = start[k]  # rows of needed clusters
  num_blocks = (total + block - 1) // block

  def row_block(i, out):
    r0 = i * block
    rows, rc, rsq, rpos = (jax.lax.dynamic_slice_in_dim(a, r0, block) for a in (xs, cs, sq, pos))
    c0 = start[cs[r0]]
    c1 = start[cs[jnp.minimum(r0 + block, total) - 1] + 1]

    def col_block(carry):
      j, best = carry
      s = c0 + j * block
      cols, cc, csq, cpos = (jax.lax.dynamic_slice_in_dim(a, s, block) for a in (xs, cs, sq, pos))
      d2 = jnp.maximum(rsq[:, None] + csq[None, :] - 2 * jnp.dot(rows, cols.T, precision=_HI), 0.0)
      same = (rc[:, None] == cc[None, :]) & (rpos[:, None] != cpos[None, :])
      d2 = jnp.where(same, d2, jnp.inf)
      best = -jax.lax.top_k(-jnp.concatenate([best, d2], axis=1), knn)[0]
      return j + 1, best

    best = jnp.full((block, knn), jnp.inf, jnp.float32)
    _, best = jax.lax.while_loop(lambda c: c[0] * block < c1 - c0, col_block, (0, best))
    return jax.lax.dynamic_update_slice_in_dim(out, best, r0, 0)

  best = jax.lax.fori_loop(0, num_blocks, row_block, jnp.full((n + block, knn), jnp.inf, jnp.float32))[:n]
  csize = jnp.concatenate([size, jnp.ones((2,), size.dtype)])[cs[:n]]
  kk = jnp.maximum(jnp.minimum(knn, csize - 1), 1)
  take = jnp.arange(knn)[None, :] < kk[:, None]
  mean = jnp.sum(jnp.where(take, jnp.sqrt(best), 0.0), axis=1) / kk
  mean = jnp.where(pos[:n] < total, mean, jnp.inf)
  return jnp.full((n,), jnp.inf, jnp.float32).at[order].set(mean)


@functools.partial(jax.jit, static_argnames=("budget", "num_clusters", "knn", "min_size", "block"))
def _select(x, labeled, assign, budget: int, num_clusters: int, knn: int, min_size: int, block: int):
  n = x.shape[0]
  ones = jnp.ones((n,), jnp.int32)
  size = jax.ops.segment_sum(ones, assign, num_segments=num_clusters)
  labeled_count = jax.ops.segment_sum(labeled.astype(jnp.int32), assign, num_segments=num_clusters)
  seq, visit = _cluster_sequence(size, labeled_count, budget, min_size)
  needed = jnp.zeros((num_clusters,), bool).at[seq].set(True)
  mean = _mean_knn_distance(x, assign, needed, size, knn, block)
  # Selectable points by (cluster, mean K-NN distance, index); labeled ones last.
  group = jnp.where(labeled, num_clusters, assign)
  order = jnp.lexsort((jnp.arange(n), mean, group))
  selectable = size - labeled_count
  first = jnp.cumsum(selectable) - selectable
  return order[first[seq] + visit].astype(jnp.int32), mean


@functools.partial(jax.jit, static_argnames=("capacity", "iters"))
def kmeans_up_to(x, k, key, *, capacity: int, iters: int):
  """`(n,)` cluster ids in `[0, k)` of Lloyd k-means with `k <= capacity` live centroids (a
  traced count: one compile for every `k`); the other slots never take a point."""
  n = x.shape[0]
  live = jnp.arange(capacity) < k
  centroids = x[jax.random.permutation(key, n)[:capacity]]
  sq = jnp.sum(x * x, axis=1)

  def assign(c):
    d2 = sq[:, None] - 2 * jnp.dot(x, c.T, precision=_HI) + jnp.sum(c * c, axis=1)[None, :]
    return jnp.argmin(jnp.where(live[None, :], d2, jnp.inf), axis=1)

  def one_iter(c, _):
    a = assign(c)
    sums = jax.ops.segment_sum(x, a, num_segments=capacity)
    counts = jax.ops.segment_sum(jnp.ones((n,), x.dtype), a, num_segments=capacity)
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], c), None

  centroids, _ = jax.lax.scan(one_iter, centroids, None, length=iters)
  return assign(centroids).astype(jnp.int32)


def typiclust_select(embeddings, labeled_mask, assignments, budget: int, *, knn: int = 20,
                     min_cluster_size: int = 5, num_clusters: int | None = None, block: int = 256,
                     with_scores: bool = False):
  """TypiClust's picks given the cluster `assignments` (`(n,)` ints in `[0, num_clusters)`;
  default: 1 + their maximum), in pick order.

  `embeddings` are used as given (normalise them first if wanted). `with_scores` also
  returns each point's mean K-NN distance (+inf outside the clusters the batch visits).
  """
  labeled_mask = np.asarray(labeled_mask, bool)
  n = labeled_mask.size
  if not 0 <= budget <= n - int(labeled_mask.sum()):
    raise ValueError(f"budget {budget} exceeds the {n - int(labeled_mask.sum())} unlabeled points")
  if not isinstance(assignments, jax.Array):
    assignments = jax.device_put(np.asarray(assignments, np.int32))
  if num_clusters is None:
    num_clusters = int(jax.device_get(jnp.max(assignments, initial=0))) + 1
  assign = assignments.astype(jnp.int32)
  num_clusters = 1 << max(0, num_clusters - 1).bit_length()  # fewer compiles across rounds
  x = embeddings if isinstance(embeddings, jax.Array) else jax.device_put(np.asarray(embeddings, np.float32))
  picks, mean = _select(x.astype(jnp.float32), jax.device_put(labeled_mask), assign, int(budget), num_clusters,
                        int(knn), int(min_cluster_size), int(block))
  picks, mean = jax.device_get((picks, mean)) if with_scores else (jax.device_get(picks), None)
  return (np.asarray(picks), np.asarray(mean)) if with_scores else np.asarray(picks)


def typiclust(embeddings, labeled_mask, budget: int, key, *, knn: int = 20, max_clusters: int = 500,
              min_cluster_size: int = 5, kmeans_iters: int = 20, normalize: bool = True, block: int = 256,
              with_clusters: bool = False):
  """TypiClust: k-means into `min(|L| + budget, max_clusters)` clusters, then `typiclust_select`.

  Returns `(budget,)` int32 pool indices in pick order (and the `(n,)` cluster assignments
  with `with_clusters`).
  """
  labeled_mask = np.asarray(labeled_mask, bool)
  x = embeddings if isinstance(embeddings, jax.Array) else jax.device_put(np.asarray(embeddings, np.float32))
  x = l2_normalize(x) if normalize else x.astype(jnp.float32)
  capacity = max(1, min(int(max_clusters), labeled_mask.size))
  k = max(1, min(int(labeled_mask.sum()) + int(budget), capacity))
  assign = kmeans_up_to(x, jax.device_put(np.int32(k)), key, capacity=capacity, iters=int(kmeans_iters))
  picks = typiclust_select(x, labeled_mask, assign, budget, knn=knn, min_cluster_size=min_cluster_size,
                           num_clusters=capacity, block=block)
  return (picks, np.asarray(jax.device_get(assign))) if with_clusters else picks


def _check(cond: bool, key: str, message: str) -> None:
  if not cond:
    raise config_lib.ConfigError(f"acquisition.options.{key}: {message}")


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def validate(options: dict) -> None:
  """Raises `ConfigError` naming the first bad `typiclust_*` option."""
  for key, low in (("typiclust_knn", 1), ("typiclust_max_clusters", 1), ("typiclust_min_cluster_size", 0),
                   ("typiclust_kmeans_iters", 0)):
    _check(_is_int(options[key]) and options[key] >= low, key, f"must be an integer >= {low}, got {options[key]!r}")
  _check(isinstance(options["typiclust_normalize"], bool), "typiclust_normalize",
         f"must be True or False, got {options['typiclust_normalize']!r}")


@jax.jit
def _all_finite(x):
  return jnp.all(jnp.isfinite(x))


def pool_embeddings(view, name: str):
  """The pool rows' embeddings and labeled mask, and the rows (None: every row is in the
  pool; rows neither labeled nor selectable are held out). Non-finite embeddings raise
  FloatingPointError (as NaN scores do in `top_k_selectable`)."""
  logits, embeddings = view.predictor.outputs()
  global_arrays.refuse_spread(name, embeddings)
  if not jax.device_get(_all_finite(embeddings)):
    raise FloatingPointError(f"{name}: the embeddings hold NaN or inf")
  labeled = np.asarray(view.labeled_mask, bool)
  rows = pool_rows(view)
  if rows is not None:
    embeddings, labeled = jnp.take(embeddings, jax.device_put(rows), axis=0), labeled[rows]
  return logits, embeddings, labeled, rows


def pool_rows(view):
  """Indices of the pool rows (labeled or selectable); None when every row is in the pool."""
  labeled = np.asarray(view.labeled_mask, bool)
  in_pool = labeled | np.asarray(view.selectable_mask, bool)
  return None if in_pool.all() else np.flatnonzero(in_pool)


def typiclust_acquire(view, budget: int, key) -> np.ndarray:
  """TypiClust on the predictor's penultimate embeddings (options: `DEFAULTS`)."""
  options = {**DEFAULTS, **view.options}
  _, embeddings, labeled, rows = pool_embeddings(view, "typiclust")
  picks = typiclust(embeddings, labeled, budget, key, knn=options["typiclust_knn"],
                    max_clusters=options["typiclust_max_clusters"],
                    min_cluster_size=options["typiclust_min_cluster_size"],
                    kmeans_iters=options["typiclust_kmeans_iters"], normalize=options["typiclust_normalize"])
  return picks if rows is None else rows[picks].astype(np.int32)
