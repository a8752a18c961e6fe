"""DeepCluster-style unsupervised pretraining (Siméoni et al. 2020; ALGORITHMS.md §5).

Each pretraining epoch: eval-mode penultimate features of every pool input, L2-normalised
(no PCA), k-means with `k = clusters_per_class * num_classes` (jitted, fixed iterations),
then one epoch of cross-entropy on the cluster ids through a `k`-way head. The backbone
(params and BatchNorm statistics, head dropped) initializes every AL round's model.

    result = pretrain(model, pool_inputs, num_classes, key, preprocess=preprocess, epochs=400)
    trainer.fit(key, inputs, labels, labeled, start=result.variables)

Resolved ambiguities (ALGORITHMS.md §5 leaves these open):
* `style="simeoni"` (default): the k-way head is created once and kept, samples are a
  plain shuffle of the pool. `style="deepcluster"`: the head is re-created each epoch
  (normal std 0.01, zero bias, its momentum reset) and batches come from the uniform
  over-clusters sampler.
* k-means starts from `k` distinct random pool points (as faiss) with a fresh key per
  epoch; empty clusters are re-seeded as faiss does: copy a cluster `j` chosen with
  probability proportional to `size_j - 1`, perturb the two copies by `1 ± 1/1024`
  (alternating signs over dimensions), and split its count in half. faiss scans the
  clusters in order with that acceptance probability; we draw `j` directly.
* The returned assignments are those against the final centroids (DeepCluster searches
  the trained index again); a cluster re-seeded in the last iteration may end empty,
  and its id then simply gets no samples.
* Features are L2-normalised outside the network; the network itself is unchanged.
* Pseudo-label training uses no augmentation (§5 names none); the head's dropout, if the
  model has one, is active as in supervised training.
* Optimizer: SGD with Nesterov momentum, weight decay on every parameter (PyTorch's
  SGD `weight_decay`), constant learning rate; Siméoni's defaults are lr 0.02, batch 128,
  momentum 0.9, weight decay 2e-4, 400 epochs, 10 k-means iterations, k = 5C.
"""

import dataclasses
import functools
import math
import sys
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxal import parallel
from jaxal.inference import Predictor
from jaxal.data import augment as augment_lib
from jaxal.train import optim
from jaxal.train import step as step_lib
from jaxal.train import trainer as trainer_lib

Array = Any
SPLIT_EPS = 1.0 / 1024  # faiss's symmetric perturbation of a split centroid
HEAD = "classifier"
STYLES = ("simeoni", "deepcluster")


class KMeansResult(NamedTuple):
  centroids: Array    # (k, d)
  assignments: Array  # (n,) int32, nearest final centroid
  counts: Array       # (k,) int32 points per cluster under `assignments`
  objective: Array    # (iters + 1,) sum of squared distances at each assignment step


def _assign(x, centroids):
  """Nearest centroid per row (first index on ties) and the summed squared distance."""
  hi = jax.lax.Precision.HIGHEST
  d2 = (jnp.sum(x * x, 1)[:, None] - 2 * jnp.dot(x, centroids.T, precision=hi)
        + jnp.sum(centroids * centroids, 1)[None, :])
  a = jnp.argmin(d2, axis=1).astype(jnp.int32)
  return a, jnp.sum(jnp.maximum(jnp.min(d2, axis=1), 0.0))


def _update(x, a, old, k):
  """Cluster means; an empty cluster keeps its old centroid (re-seeded afterwards)."""
  sums = jax.ops.segment_sum(x, a, num_segments=k)
  counts = jax.ops.segment_sum(jnp.ones_like(a), a, num_segments=k)
  means = sums / jnp.maximum(counts, 1)[:, None].astype(x.dtype)
  return jnp.where((counts > 0)[:, None], means, old), counts


def split_empty(centroids, counts, key):
  """faiss's re-seeding: each empty cluster takes half of a cluster with > 1 point.

  Returns `(centroids, counts)`; counts are the assumed even split, as in faiss.
  """
  k, d = centroids.shape
  sign = jnp.where(jnp.arange(d) % 2 == 0, 1.0, -1.0).astype(centroids.dtype)

  def body(i, carry):
    c, n = carry
    weight = jnp.maximum(n - 1, 0).astype(jnp.float32)
    can = jnp.sum(weight) > 0
    logits = jnp.where(weight > 0, jnp.log(jnp.maximum(weight, 1e-30)), -jnp.inf)
    j = jax.random.categorical(jax.random.fold_in(key, i), jnp.where(can, logits, 0.0))
    half = n[j] // 2
    c_new = c.at[i].set(c[j] * (1 + SPLIT_EPS * sign)).at[j].set(c[j] * (1 - SPLIT_EPS * sign))
    n_new = n.at[i].set(half).at[j].set(n[j] - half)
    do = (n[i] == 0) & can
    return jnp.where(do, c_new, c), jnp.where(do, n_new, n)

  return jax.lax.fori_loop(0, k, body, (centroids, counts))


@functools.partial(jax.jit, static_argnames=("k", "iters", "reseed"))
def kmeans(x, k: int, key, iters: int = 10, *, init=None, reseed: bool = True) -> KMeansResult:
  """Lloyd's k-means with a fixed number of iterations (one compile per shape).

  Args:
    x: `(n, d)` float points.
    k: number of clusters (`<= n`).
    key: PRNG key for the initial centroids and re-seeding.
    iters: assignment + update steps; a final assignment follows them.
    init: optional `(k, d)` initial centroids (default: `k` distinct random points).
    reseed: re-seed empty clusters after every update (faiss); False keeps them.
  """
  x = jnp.asarray(x, jnp.float32)
  init_key, split_key = jax.random.split(key)
  if init is None:
    init = x[jax.random.choice(init_key, x.shape[0], (k,), replace=False)]
  centroids = jnp.asarray(init, jnp.float32)

  def one_iter(c, t):
    a, obj = _assign(x, c)
    c, counts = _update(x, a, c, k)
    if reseed:
      c, _ = split_empty(c, counts, jax.random.fold_in(split_key, t))
    return c, obj

  centroids, objs = jax.lax.scan(one_iter, centroids, jnp.arange(iters))
  a, obj = _assign(x, centroids)
  counts = jax.ops.segment_sum(jnp.ones_like(a), a, num_segments=k)
  return KMeansResult(centroids, a, counts, jnp.concatenate([objs, obj[None]]))


def l2_normalize(x, eps: float = 1e-10) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def uniform_cluster_indices(assignments: np.ndarray, num_draws: int, rng: np.random.Generator) -> np.ndarray:
  """DeepCluster's sampler: `num_draws` rows spread evenly over the non-empty clusters.

  Each non-empty cluster gets `floor(num_draws / m)` or `ceil(...)` draws (m non-empty
  clusters; which ones get the extra draw is random), without replacement when the cluster
  is large enough; the result is shuffled.
  """
  assignments = np.asarray(assignments)
  ids = np.unique(assignments)
  per = np.full(ids.size, num_draws // ids.size)
  per[rng.permutation(ids.size)[:num_draws % ids.size]] += 1
  out = [rng.choice(np.flatnonzero(assignments == c), size=int(s), replace=int(s) > int((assignments == c).sum()))
         for c, s in zip(ids, per)]
  return rng.permutation(np.concatenate(out)).astype(np.int32)


def backbone_variables(variables) -> dict:
  """The variables minus the classifier head: what a round's model starts from."""
  return {col: {name: sub for name, sub in tree.items() if name != HEAD}
          for col, tree in variables.items()}


@dataclasses.dataclass
class PretrainResult:
  variables: dict         # backbone `{"params": ..., "batch_stats": ...}` (head dropped)
  full_variables: dict    # with the k-way head
  history: list           # per epoch: kmeans objective, non-empty clusters, loss, accuracy
  seconds: float

  @property
  def collapsed(self) -> bool:
    """The last epoch's features fell into fewer than half of the clusters (a trivial solution)."""
    k = self.full_variables["params"][HEAD]["kernel"].shape[-1]
    return bool(self.history) and self.history[-1]["nonempty_clusters"] < k / 2


@functools.lru_cache(maxsize=8)
def _compiled(cluster_model, preprocess, sample_shape, dtype, momentum, weight_decay, batch_size, steps_per_call,
              sharding):
  """`(init, train block, head re-init)` jitted once per model and settings (lr is an input)."""
  from jaxal import models  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict(dict(
      optimizer="sgd", momentum=momentum, nesterov=True, weight_decay=weight_decay, weight_decay_on="all",
      batch_size=batch_size, steps_per_call=steps_per_call))
  tx = optim.make_optimizer(cfg)
  block = jax.jit(functools.partial(
      step_lib.train_block, model=cluster_model, tx=tx, preprocess=preprocess, augment=augment_lib.AugmentConfig(),
      batch_sharding=sharding, unroll=models.runtime_for(cluster_model).unroll_steps), donate_argnums=(0,))

  @jax.jit
  def init(key):
    v = models.init_variables(cluster_model, key, sample_shape, dtype)
    return step_lib.TrainState(v["params"], v["batch_stats"], tx.init(v["params"]))

  @jax.jit
  def reinit_head(state, key):
    head = state.params[HEAD]
    fresh = {"kernel": 0.01 * jax.random.normal(key, head["kernel"].shape, head["kernel"].dtype),
             "bias": jnp.zeros_like(head["bias"])}
    is_head = lambda path: any(getattr(p, "key", None) == HEAD for p in path)
    opt_state = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.zeros_like(v) if is_head(path) else v, state.opt_state)
    return step_lib.TrainState({**state.params, HEAD: fresh}, state.batch_stats, opt_state)

  return init, block, reinit_head


def pretrain(model, pool_inputs, num_classes: int, key, *, preprocess: Callable, epochs: int = 400,
             kmeans_iters: int = 10, clusters_per_class: int = 5, style: str = "simeoni", lr: float = 0.02,
             batch_size: int = 128, momentum: float = 0.9, weight_decay: float = 2e-4, steps_per_call: int = 4,
             chunk_size: int = 512, mesh=None, verbose: bool = False, data_scale: float = 0.0) -> PretrainResult:
  """DeepCluster pretraining of `model`'s backbone on all of `pool_inputs` (no labels).

  Args:
    model: a `Classifier` (its head size is replaced by `clusters_per_class * num_classes`),
      or a `Trainer` (its `.model` is used).
    pool_inputs: device array of every pool input (stored dtype).
    num_classes: C of the task; k = clusters_per_class * C.
    key: PRNG key; init, k-means, shuffling and dropout derive from it.
    preprocess: the run's jittable preprocess.
    data_scale: multiplier of the model's sown `"losses"` (a Bayesian model's KL): 1 / pool
      size makes each step an ELBO step on the pseudo-labels; 0 for ordinary models.
    style: "simeoni" (head kept across epochs) or "deepcluster" (head re-created each epoch,
      uniform sampling over clusters).
  Returns:
    A `PretrainResult`; `.variables` is the backbone to pass as `Trainer.fit(start=...)`.
  """
  if style not in STYLES:
    raise ValueError(f"pretrain.style: must be one of {STYLES}, got {style!r}")
  model = getattr(model, "model", model)
  pool_inputs = parallel.on_auto_mesh(pool_inputs)  # a user's Explicit-axis mesh, see parallel.py
  k = clusters_per_class * num_classes
  n = int(pool_inputs.shape[0])
  if k > n:
    raise ValueError(f"pretrain: {k} clusters exceed the pool of {n} points")
  from jaxal import models  # pylint: disable=g-import-not-at-top
  policy = models.runtime_for(model)  # the trainer's model carries the run's policy
  cluster_model = models.with_runtime(model.clone(num_classes=k), policy)
  sharding = parallel.batch_sharded(mesh)
  init, block, reinit_head = _compiled(cluster_model, preprocess, (1,) + tuple(pool_inputs.shape[1:]),
                                       np.dtype(pool_inputs.dtype), float(momentum), float(weight_decay),
                                       int(batch_size), int(steps_per_call), sharding)
  init_key, loop_key = jax.random.split(key)
  with jax.threefry_partitionable(policy.partitionable_init):  # read while tracing the init
    state = init(init_key)
  lr_arr, scale_arr = np.float32(lr), np.float32(data_scale)
  history, start = [], time.perf_counter()
  for epoch in range(epochs):
    ep_key = jax.random.fold_in(loop_key, epoch)
    km_key, head_key, block_key = jax.random.split(ep_key, 3)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(ep_key)).ravel().tolist())
    _, feats = Predictor(cluster_model, state.variables, pool_inputs, preprocess, chunk_size=chunk_size,
                         sharding=sharding).outputs()
    km = kmeans(jnp.asarray(l2_normalize(feats)), k, km_key, kmeans_iters)
    pseudo = np.asarray(km.assignments)
    if style == "deepcluster":
      state = reinit_head(state, head_key)
      order = uniform_cluster_indices(pseudo, n, rng)
    else:
      order = rng.permutation(n).astype(np.int32)
    steps = math.ceil(n / batch_size)
    order = np.resize(order, steps * batch_size)  # the last batch wraps around to the start
    padded = math.ceil(steps / steps_per_call) * steps_per_call
    idx = np.concatenate([order.reshape(steps, batch_size), np.zeros((padded - steps, batch_size), np.int32)])
    valid = np.arange(padded) < steps
    labels = parallel.replicate(jnp.asarray(pseudo, jnp.int32), mesh)
    sums = []
    for b in range(0, padded, steps_per_call):
      state, out = block(state, pool_inputs, labels, idx[b:b + steps_per_call], valid[b:b + steps_per_call],
                         jax.random.fold_in(block_key, b), lr_arr, scale_arr)
      sums.append(out)
    loss, correct = np.asarray(jax.device_get(sums), np.float64).sum(0)
    if not math.isfinite(loss):
      raise trainer_lib.TrainingDiverged(f"pretraining loss became {loss} at epoch {epoch + 1}")
    record = {"epoch": epoch, "kmeans_objective": float(km.objective[-1]),
              "nonempty_clusters": int((np.asarray(km.counts) > 0).sum()),
              "loss": float(loss / steps), "accuracy": float(correct / (steps * batch_size))}
    history.append(record)
    if verbose and parallel.is_primary() and ((epoch + 1) % max(1, epochs // 5) == 0 or epoch + 1 == epochs):
      print(f"  pretrain epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f} acc {record['accuracy']:.4f} "
            f"clusters {record['nonempty_clusters']}/{k} ({time.perf_counter() - start:.1f}s)", flush=True)
  full = jax.tree_util.tree_map(np.asarray, state.variables)
  result = PretrainResult(backbone_variables(full), full, history, time.perf_counter() - start)
  if result.collapsed and parallel.is_primary():
    print(f"warning: pretraining collapsed: the last epoch's features fill {history[-1]['nonempty_clusters']} of "
          f"{k} clusters; the backbone may be useless (try style='deepcluster', a lower lr or fewer epochs)",
          file=sys.stderr, flush=True)
  return result
