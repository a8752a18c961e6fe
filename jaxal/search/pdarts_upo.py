"""P-DARTS' UPO: the search on pseudo-labels of the pool (ALGORITHMS.md §8).

UPO (unsupervised pre-optimization, Focus 2 of the paper): once, in round 0, the search runs
on pool rows with DeepCluster pseudo-labels instead of labels, and its genotype is then
fixed for every round like SPO's. No label is read. The pseudo-labels follow the paper's
UPO recipe ("we begin with random initialization of the network parameters and the features
from the penultimate layers are clustered using k-means") and ALGORITHMS.md §5 steps 1-3:
* the network is the stage-1 supernet itself (`layers[0]` cells, all 8 ops on, fresh α,
  so near-uniform op weights), randomly initialised, in eval mode (running BatchNorm
  statistics, no augmentation, no skip dropout); its penultimate features (the global
  average pool before the classifier) of **every** pool input are L2-normalised (no PCA,
  as Siméoni) and clustered by `jaxal.pretrain.deepcluster.kmeans` into
  k = `pretrain.clusters_per_class` x C clusters (5C by default) with
  `pretrain.kmeans_iters` Lloyd iterations (10), empty clusters re-seeded as faiss does;
* the cluster ids are the labels of the search, whose supernets get a k-way head; the
  P-DARTS search is the "subsequent supervised classification task" that trains the
  network on them.
Resolved: the clustering is done once, from the random network, and not alternated with
training as DeepCluster's epochs are: P-DARTS re-initialises the weights and α at every
stage (§8), so features trained in one stage do not survive into the next, and re-clustering
every epoch would permute the ids under a kept head. The search uses `search.pdarts.upo_size`
pool rows (a fixed-seed sample, 0 = the whole pool), split `train_portion` / rest into
D_train and D_val as the labeled set is in the other modes; the clustering always covers
the whole pool. The round record's `search` holds `pseudo_labels`: k, the non-empty
clusters, their sizes and the k-means objective.
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxal.data import augment as augment_lib
from jaxal.models import darts
from jaxal.pretrain import deepcluster
from jaxal.search import pdarts


@functools.lru_cache(maxsize=2)  # kept small: each entry holds compiled programs (see pdarts.stage_functions)
def _embed_fn(model, preprocess):
  def embed(variables, x):
    return model.apply(variables, preprocess(x), train=False)[1]
  return jax.jit(embed)


def supernet_features(fns: pdarts.StageFunctions, state: pdarts.SearchState, inputs, preprocess, chunk_size: int) -> np.ndarray:
  """Eval-mode penultimate features of every row of `inputs` (fixed-size chunks, one compile)."""
  embed = _embed_fn(fns.model, preprocess)
  variables = {"params": state.params, "arch": state.arch, "batch_stats": state.batch_stats}
  n = int(inputs.shape[0])
  chunk = max(1, min(int(chunk_size), n))
  out = []
  for start in range(0, n, chunk):
    idx = np.minimum(np.arange(start, start + chunk), n - 1)  # the last chunk repeats the last row
    out.append(np.asarray(embed(variables, jnp.take(inputs, jnp.asarray(idx), axis=0)))[:min(chunk, n - start)])
  return np.concatenate(out)


def pseudo_labels(key, inputs, *, num_classes: int, settings: pdarts.Settings, clusters_per_class: int = 5,
                  kmeans_iters: int = 10, preprocess=lambda x: x,
                  augment: augment_lib.AugmentConfig = augment_lib.AugmentConfig(False, 0, 0.0),
                  chunk_size: int = 512) -> tuple[np.ndarray, dict]:
  """UPO's DeepCluster pseudo-labels of every row of `inputs` (see the module docstring).

  k-means (k = `clusters_per_class * num_classes`) of the L2-normalised penultimate features
  of a randomly initialised stage-1 supernet. Returns `(cluster ids (n,), stats)`.
  """
  k = int(clusters_per_class) * int(num_classes)
  n = int(inputs.shape[0])
  if k > n:
    raise ValueError(f"P-DARTS upo: {k} clusters exceed the pool of {n} points")
  t0 = time.perf_counter()
  init_key, km_key = jax.random.split(key)
  sample_shape = (1,) + tuple(inputs.shape[1:])
  full = darts.full_switches(settings.nodes)
  # The stage-1 supernet with a k-way head: the same cached functions the search's stage 1 uses.
  fns = pdarts.stage_functions(k, settings.layers[0], full, full, settings, preprocess, augment, sample_shape, inputs.dtype)
  state = fns.init(init_key)
  feats = supernet_features(fns, state, inputs, preprocess, chunk_size)
  km = deepcluster.kmeans(jnp.asarray(deepcluster.l2_normalize(feats)), k, km_key, int(kmeans_iters))
  ids = np.asarray(km.assignments, np.int32)
  counts = np.bincount(ids, minlength=k)
  stats = {"clusters": k, "nonempty_clusters": int((counts > 0).sum()), "feature_dim": int(feats.shape[1]),
           "kmeans_objective": float(km.objective[-1]), "cluster_sizes": [int(c) for c in counts],
           "seconds": round(time.perf_counter() - t0, 3)}
  return ids, stats


def upo_rows(pool_size: int, size: int, seed: int) -> np.ndarray:
  """The pool rows UPO searches on: a fixed-seed sample of `size` (all rows when 0 or larger)."""
  if size <= 0 or size >= pool_size:
    return np.arange(pool_size)
  return np.sort(np.random.default_rng(seed).choice(pool_size, size, replace=False))


UPO_KEY = 0x75706F  # folded into the round key for the pseudo-label network and k-means
