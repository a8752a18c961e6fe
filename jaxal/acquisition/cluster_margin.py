"""Cluster-Margin (Citovsky, DeSalvo, Gentile, Karydas, Rajagopalan, Rostamizadeh & Kumar,
"Batch Active Learning at Scale", NeurIPS 2021).

Once: hierarchical agglomerative clustering (average linkage, Euclidean) of the pool's
embeddings, cut into flat clusters (`cluster_pool` -> `Clustering`; pass it back every round).
Each round (`cluster_margin_select`):
1. the `k_m * budget` selectable points of lowest margin `p_(1) - p_(2)` are the candidates
   (ties to the lower index);
2. the candidates are grouped by cluster, the clusters sorted by their number of candidates,
   smallest first (ties to the lower cluster id);
3. round-robin: each round visits the clusters in that order and takes one not-yet-taken
   candidate from each, until `budget` points are taken (a cluster that runs out drops out).
   Within a cluster the paper samples uniformly at random: with a `key`, the candidates are
   taken in the order of keyed uniform priorities (row `i` from `fold_in(key, i)`, so the pick
   does not depend on sharding); with `key=None`, lowest margin first.

Choices where the paper is open, as made here:
* `k_m` (`margin_ratio`) defaults to 10 (the paper's experiments use a multiple of the batch;
  the exact value per dataset was not verified here);
* the cut: a distance threshold `epsilon` (merge while the average-linkage distance is
  <= epsilon) when given, else a number of clusters (default: one per 10 leaves), since a good
  epsilon depends on the embedding's scale;
* the clustering covers every pool point (labeled too) and is computed once per run, in the
  first round that acquires, from that round's embeddings, i.e. those of the model trained on
  the initial labeled set, as in the paper; later rounds reuse it. In the loop it is kept in
  the run's acquisition state (`PoolView.state["cluster_margin"]`), which is saved with every
  checkpoint, so a resumed run reuses the very same clusters;
* exact HAC up to `exact_max_points` (default 50,000) points, on the host over a float32
  condensed distance matrix (`hac.average_linkage_points`): 2 n^2 bytes (50k: 4.7 GiB; 16k:
  0.5 GiB), plus O(n d) and about 256 MiB of row blocks while it is built; time O(n^2)
  (benchmarks/selection.py --section cluster_margin measures 50k x 128). Beyond that, the
  approximation: k-means (`num_centroids`, default 2048, Lloyd from distinct random points,
  fitted on a random sample of at most 64 points per centroid, then every point assigned to
  its nearest centroid), then HAC over the non-empty centroids (on device, `hac.average_linkage`),
  each weighted by its number of points (distances between centroids stand in for the mean
  distances between their points). Memory O(n d + k^2) besides the embeddings.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import config as config_lib, global_arrays
from jaxal.acquisition import hac, round_robin
from jaxal.acquisition.stochastic import as_device_scores, fold_in
from jaxal.acquisition.uncertainty import margin
from jaxal.inference import put_beside

EXACT_MAX_LIMIT = 65536  # points; the exact path's condensed matrix is 2 n^2 bytes
DEFAULTS = {"cluster_margin_ratio": 10.0, "cluster_margin_epsilon": 0.0, "cluster_margin_clusters": 0,
            "cluster_margin_exact_max": 50000, "cluster_margin_centroids": 2048}


def validate(options: dict) -> None:
  """Raises `config.ConfigError` naming the bad `acquisition.options.<key>`."""
  def number(key, low, integer=False):
    value = options.get(key, DEFAULTS[key])
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and np.isfinite(value) and value >= low
    if not ok or (integer and int(value) != value):
      kind = "an integer" if integer else "a number"
      raise config_lib.ConfigError(f"acquisition.options.{key}: must be {kind} >= {low}, got {value!r}")
  number("cluster_margin_ratio", 1)
  number("cluster_margin_epsilon", 0)
  number("cluster_margin_clusters", 0, integer=True)
  number("cluster_margin_exact_max", 2, integer=True)
  if options.get("cluster_margin_exact_max", 0) > EXACT_MAX_LIMIT:
    raise config_lib.ConfigError(
        f"acquisition.options.cluster_margin_exact_max: at most {EXACT_MAX_LIMIT} (exact HAC holds 2 n^2 bytes, "
        f"8 GiB at {EXACT_MAX_LIMIT}; larger pools use k-means centroids), got {options['cluster_margin_exact_max']!r}")
  number("cluster_margin_centroids", 2, integer=True)


@dataclasses.dataclass(frozen=True)
class Clustering:
  """A pool's flat HAC clusters, computed once and passed back every round.

  Attributes:
    labels: `(n,)` int32 cluster id per pool point, `0 .. num_clusters - 1`.
    num_clusters: how many clusters.
    exact: True when HAC ran on the points themselves, False when over k-means centroids.
    leaf_of_point: `(n,)` int32 HAC leaf per point (the point itself, or its centroid).
    merges, heights: the leaves' merges (`hac.average_linkage`), to cut again without redoing HAC.
  """

  labels: np.ndarray
  num_clusters: int
  exact: bool
  leaf_of_point: np.ndarray
  merges: np.ndarray
  heights: np.ndarray

  def to_arrays(self) -> dict:
    """Host arrays only, as the loop saves `PoolView.state` with a checkpoint."""
    return {"labels": np.asarray(self.labels, np.int32), "exact": np.asarray(self.exact, np.int32),
            "leaf_of_point": np.asarray(self.leaf_of_point, np.int32), "merges": np.asarray(self.merges),
            "heights": np.asarray(self.heights)}

  @classmethod
  def from_arrays(cls, arrays: dict) -> "Clustering":
    labels = np.asarray(arrays["labels"], np.int32)
    return cls(labels, int(labels.max()) + 1, bool(arrays["exact"]), np.asarray(arrays["leaf_of_point"], np.int32),
               np.asarray(arrays["merges"]), np.asarray(arrays["heights"]))

  @property
  def num_points(self) -> int:
    return int(self.labels.shape[0])

  def recut(self, *, epsilon: float | None = None, num_clusters: int | None = None) -> "Clustering":
    """The same hierarchy cut at another threshold or number of clusters."""
    num_leaves = int(self.leaf_of_point.max()) + 1
    active = np.zeros(num_leaves, bool)
    active[self.leaf_of_point] = True
    leaf_labels = _cut(self.merges, self.heights, num_leaves, active, epsilon, num_clusters)
    labels = leaf_labels[self.leaf_of_point]
    return dataclasses.replace(self, labels=labels, num_clusters=int(labels.max()) + 1)


def _cut(merges, heights, num_leaves, active, epsilon, num_clusters):
  if epsilon:
    return hac.cut(merges, heights, num_leaves, threshold=float(epsilon), active=active)
  clusters = int(num_clusters) if num_clusters else max(1, -(-int(active.sum()) // 10))
  return hac.cut(merges, heights, num_leaves, num_clusters=min(clusters, int(active.sum())), active=active)


@functools.partial(jax.jit, static_argnames=("chunk",))
def _assign(x, centroids, *, chunk: int):
  """Nearest centroid per row and the per-centroid sums and counts, `chunk` rows at a time
  (the last chunk overlaps the one before and counts only its new rows)."""
  n, k = x.shape[0], centroids.shape[0]
  chunk = min(chunk, n)
  c_sq = jnp.sum(centroids * centroids, axis=1)

  def body(i, carry):
    labels, sums, counts = carry
    start = jnp.minimum(i * chunk, n - chunk)
    rows = jax.lax.dynamic_slice_in_dim(x, start, chunk)
    nearest = jnp.argmin(c_sq[None] - 2.0 * rows @ centroids.T, axis=1).astype(jnp.int32)
    fresh = (start + jnp.arange(chunk)) >= i * chunk
    onehot_w = jnp.where(fresh, 1.0, 0.0)
    sums = sums + jax.ops.segment_sum(rows * onehot_w[:, None], nearest, num_segments=k)
    counts = counts + jax.ops.segment_sum(onehot_w, nearest, num_segments=k)
    return jax.lax.dynamic_update_slice_in_dim(labels, nearest, start, axis=0), sums, counts

  init = (jnp.zeros(n, jnp.int32), jnp.zeros_like(centroids), jnp.zeros(k, jnp.float32))
  return jax.lax.fori_loop(0, -(-n // chunk), body, init)


@functools.partial(jax.jit, static_argnums=2)
def _sample_rows(key, x, m: int):
  return x[jax.random.choice(key, x.shape[0], (m,), replace=False)]


@jax.jit
def _means(sums, counts, fallback):
  return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], fallback)


def kmeans(x, num_centroids: int, key, *, iterations: int = 10, sample_per_centroid: int = 64, chunk: int = 8192):
  """Lloyd's k-means fitted on a random sample, then every row assigned.

  Returns:
    `(labels (n,) int32, centroids (k, d) = means of the assigned rows, counts (k,))`, on device.
  """
  if not isinstance(x, jax.Array):
    x = jax.device_put(np.asarray(x, np.float32))
  n = x.shape[0]
  k = min(num_centroids, n)
  init_key, sample_key = jax.random.split(key)
  sample = x if n <= k * sample_per_centroid else _sample_rows(sample_key, x, k * sample_per_centroid)
  centroids = _sample_rows(init_key, sample, k)
  for _ in range(iterations):
    _, sums, counts = _assign(sample, centroids, chunk=chunk)
    centroids = _means(sums, counts, centroids)
  labels, sums, counts = _assign(x, centroids, chunk=chunk)
  return labels, _means(sums, counts, centroids), counts


def cluster_pool(embeddings, *, key=None, epsilon: float | None = None, num_clusters: int | None = None,
                 exact_max_points: int = 50000, num_centroids: int = 2048) -> Clustering:
  """Average-linkage HAC of the pool's embeddings, cut into flat clusters (see module doc).

  Args:
    embeddings: `(n, d)` (device or host).
    key: draws the k-means sample and initial centroids (only beyond `exact_max_points`).
    epsilon: cut at this average-linkage distance; else `num_clusters` (default n_leaves / 10).
  """
  n = int(embeddings.shape[0])
  if n <= exact_max_points:
    merges, heights = hac.average_linkage_points(embeddings)
    leaf_of_point = np.arange(n, dtype=np.int32)
    active = np.ones(n, bool)
  else:
    key = jax.random.key(0) if key is None else key
    labels, centroids, counts = kmeans(embeddings, num_centroids, key)
    counts = jax.device_get(counts)
    merges, heights = hac.average_linkage(hac.euclidean_matrix(centroids), counts, counts > 0, donate=True)
    leaf_of_point = np.asarray(jax.device_get(labels), np.int32)
    active = counts > 0
  leaf_labels = _cut(merges, heights, active.size, active, epsilon, num_clusters)
  labels = leaf_labels[leaf_of_point]
  return Clustering(labels, int(labels.max()) + 1, n <= exact_max_points, leaf_of_point, merges, heights)


@functools.partial(jax.jit, static_argnames=("k", "num_clusters"))
def _pick(scores, labels, selectable, num_candidates, priority, *, k: int, num_clusters: int):
  n = scores.shape[0]
  s = jnp.where(selectable, jnp.where(scores == 0, 0.0, scores), -jnp.inf)
  by_score = jnp.argsort(-s, stable=True)
  rank = jnp.zeros(n, jnp.int32).at[by_score].set(jnp.arange(n, dtype=jnp.int32))
  candidate = selectable & (rank < num_candidates)
  size = jax.ops.segment_sum(candidate.astype(jnp.int32), labels, num_segments=num_clusters)[labels]
  within = rank if priority is None else priority
  return round_robin.round_robin_order(labels, within, (size, labels), candidate)[:k]


@functools.partial(jax.jit, static_argnums=1)
def _row_uniforms(key, n: int):
  """Row `i`'s uniform priority from `fold_in(key, i)` alone (independent of sharding)."""
  return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(jnp.arange(n, dtype=jnp.uint32))


def cluster_margin_select(margin_scores, clustering: Clustering, selectable_mask, budget: int, key=None, *,
                          margin_ratio: float = 10.0) -> np.ndarray:
  """One round of Cluster-Margin (see module doc).

  Args:
    margin_scores: `(n,)` scores, higher = smaller margin (jaxal's `margin`, `-(p1 - p2)`).
    clustering: from `cluster_pool` over the same `n` points.
    selectable_mask: `(n,)` bool.
    budget: points to pick.
    key: random order inside each cluster (the paper); None: lowest margin first.
    margin_ratio: the paper's `k_m`, candidates per point of budget.
  Returns:
    host int32 indices in pick order.
  """
  selectable_mask = np.asarray(selectable_mask, bool)
  n = selectable_mask.size
  if clustering.num_points != n:
    raise ValueError(f"the clustering covers {clustering.num_points} points, the pool has {n}")
  if budget > int(selectable_mask.sum()):
    raise ValueError(f"budget {budget} exceeds the {int(selectable_mask.sum())} selectable points")
  margin_scores = as_device_scores(margin_scores)
  if bool(jax.device_get(jnp.any(jnp.isnan(margin_scores)))):
    raise FloatingPointError("acquisition produced NaN scores")
  priority = None if key is None else _row_uniforms(key, n)
  num_candidates = put_beside(np.int32(min(n, int(np.ceil(margin_ratio * budget)))), margin_scores)
  k = min(n, 1 << max(0, int(budget) - 1).bit_length())
  picked = _pick(margin_scores, put_beside(clustering.labels, margin_scores),
                 put_beside(selectable_mask, margin_scores),
                 num_candidates, priority, k=k, num_clusters=clustering.num_clusters)
  return np.asarray(jax.device_get(picked)[:budget], np.int32)


def cluster_margin_acquire(view, budget: int, key, *, clustering: Clustering | None = None) -> np.ndarray:
  """Cluster-Margin as an acquisition. The paper clusters once: a given `clustering` is used;
  else the one in `view.state["cluster_margin"]`; else it is computed from this round's
  embeddings and stored there, so the loop's later rounds (and a resumed run) reuse it."""
  options = {**DEFAULTS, **view.options}
  if clustering is None and "cluster_margin" in view.state:
    clustering = Clustering.from_arrays(view.state["cluster_margin"])
  if clustering is None:
    _, embeddings = view.predictor.outputs()
    global_arrays.refuse_spread("cluster_margin", embeddings)
    clustering = cluster_pool(embeddings, key=fold_in(key, 1),
                              epsilon=options["cluster_margin_epsilon"] or None,
                              num_clusters=int(options["cluster_margin_clusters"]) or None,
                              exact_max_points=int(options["cluster_margin_exact_max"]),
                              num_centroids=int(options["cluster_margin_centroids"]))
    view.state["cluster_margin"] = clustering.to_arrays()
  return cluster_margin_select(margin(view.predictor.probs()), clustering, view.selectable_mask, budget,
                               fold_in(key, 2), margin_ratio=float(options["cluster_margin_ratio"]))
