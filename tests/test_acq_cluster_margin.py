"""Cluster-Margin: both HAC paths (device matrix, host condensed) against scipy, the round-robin pick against a literal
numpy loop, the large-pool (k-means) path, and option validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

from jaxal import config as config_lib
from jaxal.acquisition import cluster_margin as cm, hac


def same_partition(a, b):
  """Two labelings describe the same partition (labels may be renamed)."""
  pairs = set(zip(a.tolist(), b.tolist()))
  return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_average_linkage_equals_scipy():
  rng = np.random.default_rng(0)
  for n, d in ((2, 3), (61, 4), (150, 16)):
    x = rng.normal(size=(n, d)).astype(np.float32)
    merges, heights = hac.average_linkage(hac.euclidean_matrix(x))
    z = hac.scipy_linkage_matrix(merges, heights, n)
    want = linkage(x.astype(np.float64), "average")
    np.testing.assert_allclose(z[:, 2], want[:, 2], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(z[:, [0, 1, 3]], want[:, [0, 1, 3]])
    h = np.r_[0.0, want[:, 2]]
    for i in {int(0.3 * (n - 1)), int(0.7 * (n - 1))}:  # thresholds between two merge heights
      t = (h[i] + h[i + 1]) / 2
      assert same_partition(hac.cut(merges, heights, n, threshold=t), fcluster(want, t, "distance"))
    for k in (1, 5, n):
      assert len(set(hac.cut(merges, heights, n, num_clusters=k).tolist())) == min(k, n)



def test_exact_path_on_points_equals_scipy():
  # The host path over a condensed float32 matrix, built in many row blocks (tiny block_bytes).
  rng = np.random.default_rng(5)
  for n, d in ((2, 3), (97, 5), (400, 16)):
    x = rng.normal(size=(n, d)).astype(np.float32)
    merges, heights = hac.average_linkage_points(x, block_bytes=4096)
    z = hac.scipy_linkage_matrix(merges, heights, n)
    want = linkage(x.astype(np.float64), "average")
    np.testing.assert_allclose(z[:, 2], want[:, 2], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(z[:, [0, 1, 3]], want[:, [0, 1, 3]])
  clustering = cm.cluster_pool(x, num_clusters=7)  # n = 400 <= the default cap: exact, on points
  assert clustering.exact and cm.DEFAULTS["cluster_margin_exact_max"] == 50000
  assert same_partition(clustering.labels, fcluster(want, 7, "maxclust"))

def test_weighted_leaves_equal_scipy_on_repeated_points():
  # A leaf of weight w is w points at one place: scipy on the repeated points merges the copies
  # at 0 first, then must give our weighted heights.
  rng = np.random.default_rng(1)
  x = rng.normal(size=(12, 3)).astype(np.float32)
  w = rng.integers(1, 4, 12)
  active = np.ones(12, bool)
  active[5] = False  # an empty k-means cell
  merges, heights = hac.average_linkage(hac.euclidean_matrix(x), w, active)
  want = linkage(np.repeat(x[active], w[active], axis=0).astype(np.float64), "average")
  np.testing.assert_allclose(np.sort(heights), want[want[:, 2] > 0, 2], rtol=1e-5)
  labels = hac.cut(merges, heights, 12, num_clusters=3, active=active)
  assert labels[5] == -1 and sorted(set(labels[active].tolist())) == [0, 1, 2]


def numpy_cluster_margin(scores, labels, mask, budget, num_candidates, within):
  """The rule literally: candidates = lowest margins; clusters smallest first; round-robin."""
  order = sorted(np.flatnonzero(mask), key=lambda i: (-scores[i], i))
  candidates = order[:num_candidates]
  groups = {}
  for i in candidates:
    groups.setdefault(int(labels[i]), []).append(i)
  for members in groups.values():
    members.sort(key=lambda i: (within[i], i))
  clusters = sorted(groups, key=lambda c: (len(groups[c]), c))
  picks = []
  while len(picks) < budget:
    for c in clusters:
      if groups[c] and len(picks) < budget:
        picks.append(groups[c].pop(0))
  return np.array(picks)


def test_round_robin_pick_equals_numpy_reference():
  rng = np.random.default_rng(2)
  n = 300
  x = rng.normal(size=(n, 6)).astype(np.float32)
  clustering = cm.cluster_pool(x, num_clusters=25)
  assert clustering.exact and clustering.num_clusters == 25
  scores = -np.round(rng.random(n), 2).astype(np.float32)  # margin scores with ties
  mask = rng.random(n) < 0.8
  key = jax.random.key(4)
  priority = np.array([float(jax.random.uniform(jax.random.fold_in(key, i))) for i in range(n)])
  for budget, ratio in ((10, 3.0), (40, 1.5), (60, 10.0)):
    num_candidates = min(n, int(np.ceil(ratio * budget)))
    got = cm.cluster_margin_select(scores, clustering, mask, budget, None, margin_ratio=ratio)
    rank = np.empty(n)
    rank[sorted(range(n), key=lambda i: (-scores[i] if mask[i] else np.inf, i))] = np.arange(n)
    np.testing.assert_array_equal(got, numpy_cluster_margin(scores, clustering.labels, mask, budget,
                                                            num_candidates, rank))
    got = cm.cluster_margin_select(jnp.asarray(scores), clustering, mask, budget, key, margin_ratio=ratio)
    np.testing.assert_array_equal(got, numpy_cluster_margin(scores, clustering.labels, mask, budget,
                                                            num_candidates, priority))


def test_large_pool_path_clusters_kmeans_centroids():
  rng = np.random.default_rng(3)
  centers = rng.normal(size=(4, 8)) * 10
  x = (centers[rng.integers(0, 4, 2000)] + rng.normal(size=(2000, 8))).astype(np.float32)
  c = cm.cluster_pool(x, key=jax.random.key(0), num_clusters=4, exact_max_points=500, num_centroids=40)
  assert not c.exact and c.num_clusters == 4
  truth = np.argmin(((x[:, None] - centers[None]) ** 2).sum(-1), axis=1)
  assert same_partition(c.labels, truth)  # well-separated blobs come out whole
  assert c.recut(num_clusters=10).num_clusters == 10
  picks = cm.cluster_margin_select(rng.random(2000), c, np.ones(2000, bool), 8, jax.random.key(1))
  assert sorted(np.bincount(c.labels[picks], minlength=4).tolist()) == [2, 2, 2, 2]


def test_bad_input_is_refused():
  for key, value in (("cluster_margin_ratio", 0.5), ("cluster_margin_clusters", 2.5),
                     ("cluster_margin_epsilon", -1.0), ("cluster_margin_centroids", True),
                     ("cluster_margin_exact_max", 65537), ("cluster_margin_exact_max", 1.5)):
    with pytest.raises(config_lib.ConfigError, match=f"acquisition.options.{key}:"):
      cm.validate({key: value})
  cm.validate(dict(cm.DEFAULTS))
  c = cm.cluster_pool(np.eye(5, dtype=np.float32), num_clusters=2)
  with pytest.raises(ValueError, match="covers 5 points, the pool has 6"):
    cm.cluster_margin_select(np.zeros(6), c, np.ones(6, bool), 2)
  with pytest.raises(FloatingPointError):
    cm.cluster_margin_select(np.array([0, np.nan, 0, 0, 0]), c, np.ones(5, bool), 2)
