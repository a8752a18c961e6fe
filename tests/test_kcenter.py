"""Greedy k-center (ALGORITHMS.md §3): plain and pruned kernels against a naive float64 greedy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import acquisition
from jaxal.acquisition import kcenter_dense, kcenter_pruned


def naive_kcenter(x, labeled, budget):
  """Recomputes every candidate's distance to all centers at every step (float64)."""
  x = np.asarray(x, np.float64)
  centers = list(np.flatnonzero(labeled))
  picks = []
  for _ in range(budget):
    best, best_d = -1, -1.0
    for i in range(len(x)):
      if i in centers:
        continue
      if centers:
        d = min(np.sum((x[i] - x[c]) ** 2) for c in centers)
      else:
        d = np.sum((x[i] - x.mean(0)) ** 2)
      if d > best_d:
        best, best_d = i, d
    picks.append(best)
    centers.append(best)
  return np.array(picks)


@pytest.mark.parametrize("seed,num_labeled", [(0, 5), (1, 1), (2, 0), (3, 12)])
def test_kcenter_matches_naive_greedy_with_ties(seed, num_labeled):
  rng = np.random.default_rng(seed)
  x = rng.integers(-3, 4, size=(60, 3)).astype(np.float32)  # small integers: many exact ties
  x[10] = x[11] = x[12]  # duplicate rows
  labeled = np.zeros(60, bool)
  labeled[rng.choice(60, num_labeled, replace=False)] = True
  got = acquisition.kcenter_greedy(x, labeled, 15, block=4)
  np.testing.assert_array_equal(got, naive_kcenter(x, labeled, 15))
  assert len(set(got.tolist())) == 15 and not labeled[got].any()


def test_kcenter_radius_decreases_and_is_a_two_approximation():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(11, 2))
  labeled = np.zeros(11, bool)
  labeled[0] = True
  picks = acquisition.kcenter_greedy(x, labeled, 3)
  radii = []
  centers = [0]
  for p in picks:
    centers.append(int(p))
    d = np.sqrt(((x[:, None] - x[None, centers]) ** 2).sum(-1)).min(1)
    radii.append(d.max())
  assert all(b <= a + 1e-9 for a, b in zip(radii, radii[1:]))
  best = min(np.sqrt(((x[:, None] - x[None, [0, *c]]) ** 2).sum(-1)).min(1).max()
             for c in itertools.combinations(range(1, 11), 3))
  assert radii[-1] <= 2 * best + 1e-9


def test_kcenter_is_permutation_equivariant_and_bf16_close():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(200, 16)).astype(np.float32)
  labeled = np.zeros(200, bool)
  labeled[:10] = True
  picks = acquisition.kcenter_greedy(x, labeled, 20)
  perm = rng.permutation(200)
  picks_perm = acquisition.kcenter_greedy(x[perm], labeled[perm], 20)
  np.testing.assert_array_equal(perm[picks_perm], picks)
  bf16 = acquisition.kcenter_greedy(x, labeled, 20, storage_dtype=jnp.bfloat16)
  assert len(set(bf16.tolist()) & set(picks.tolist())) >= 15




# ----------------------------------------------------------------------------- pruned kernel

# dense_fraction 2.0 never falls back to the dense pass; 0.3 is the default mix.
PRUNE_SETTINGS = [dict(tile=8, dense_fraction=2.0), dict(tile=4, dense_fraction=0.3), dict(tile=16, dense_fraction=0.0)]


@pytest.mark.parametrize("seed,num_labeled", [(0, 5), (1, 1), (2, 0), (3, 12)])
def test_pruned_kcenter_matches_naive_greedy_with_ties(seed, num_labeled):
  rng = np.random.default_rng(seed)
  x = rng.integers(-3, 4, size=(60, 3)).astype(np.float32)
  x[10] = x[11] = x[12]
  x[20] = x[21]
  labeled = np.zeros(60, bool)
  labeled[rng.choice(60, num_labeled, replace=False)] = True
  ref = naive_kcenter(x, labeled, 15)
  for settings in PRUNE_SETTINGS:
    got = acquisition.kcenter_greedy(x, labeled, 15, block=4, prune=True, probes=0, **settings)
    np.testing.assert_array_equal(got, ref, err_msg=str(settings))


def clustered(n, d, clusters, seed, spread=0.1, scale=10.0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(clusters, d)) * scale
  return (centers[rng.integers(0, clusters, n)] + rng.normal(size=(n, d)) * spread).astype(np.float32)


@pytest.mark.parametrize("kind", ["clustered", "gaussian", "clustered_no_labels"])
def test_pruned_equals_plain_kernel_on_floats(kind):
  n, d = 1500, 24
  rng = np.random.default_rng(7)
  x = rng.normal(size=(n, d)).astype(np.float32) if kind == "gaussian" else clustered(n, d, 12, 7)
  x[100] = x[101]  # an exact duplicate
  labeled = np.zeros(n, bool)
  if kind != "clustered_no_labels":
    labeled[rng.choice(n, 40, replace=False)] = True
  plain = acquisition.kcenter_greedy(x, labeled, 120, block=16)
  for settings in PRUNE_SETTINGS[:2]:
    got, stats = acquisition.kcenter_greedy(x, labeled, 120, block=16, prune=True, with_stats=True, **settings)
    np.testing.assert_array_equal(got, plain, err_msg=str(settings))
    if kind == "clustered" and settings["dense_fraction"] > 1:
      assert stats["fraction_read"] < 0.5  # tiles really were skipped


def test_pruned_bf16_equals_plain_bf16():
  x = clustered(800, 16, 8, 3, spread=0.5, scale=3.0)
  labeled = np.zeros(800, bool)
  labeled[::50] = True
  plain = acquisition.kcenter_greedy(x, labeled, 60, storage_dtype=jnp.bfloat16)
  pruned = acquisition.kcenter_greedy(x, labeled, 60, storage_dtype=jnp.bfloat16, prune=True, tile=8, probes=0)
  np.testing.assert_array_equal(pruned, plain)


@pytest.mark.parametrize("block", [1, 3, 7, 64])
def test_chunked_initialisation_equals_unchunked(block):
  rng = np.random.default_rng(8)
  x = rng.normal(size=(90, 5)).astype(np.float32)
  labeled = np.zeros(90, bool)
  labeled[rng.choice(90, 17, replace=False)] = True
  min_d2 = kcenter_dense._init_min_d2(jnp.asarray(x), jnp.asarray(labeled), block)
  centers = x[labeled].astype(np.float64)
  d2 = ((x[:, None].astype(np.float64) - centers[None]) ** 2).sum(-1)
  np.testing.assert_allclose(min_d2, d2.min(1), rtol=1e-4, atol=1e-4)


def test_budget_larger_than_pool_is_rejected():
  labeled = np.zeros(10, bool)
  labeled[:8] = True
  with pytest.raises(ValueError, match="exceeds"):
    acquisition.kcenter_greedy(np.zeros((10, 2), np.float32), labeled, 3, prune=True)


# ----------------------------------------------------------------------------- kd tiles, row refinement

@pytest.mark.parametrize("kind", ["clustered", "gaussian", "clustered_no_labels"])
def test_pruned_with_default_blocks_equals_plain(kind):
  """Default `block` and several tile sizes, so the box test, the per-row refinement and
  the dense fallback are all exercised."""
  n, d = 4000, 40
  rng = np.random.default_rng(12)
  x = rng.normal(size=(n, d)).astype(np.float32) if kind == "gaussian" else clustered(n, d, 8, 12, spread=0.3)
  x[7] = x[8]
  labeled = np.zeros(n, bool)
  if kind != "clustered_no_labels":
    labeled[rng.choice(n, 200, replace=False)] = True
  plain = acquisition.kcenter_greedy(x, labeled, 150)
  for tile in (8, 32):
    got, stats = acquisition.kcenter_greedy(x, labeled, 150, prune=True, tile=tile, probes=0, with_stats=True)
    np.testing.assert_array_equal(got, plain, err_msg=f"tile={tile}")
    if kind == "clustered":
      assert stats["fraction_read"] < 0.2
  z, _, _ = kcenter_pruned._projection(jnp.asarray(x), 16, 2048)
  perm = np.asarray(kcenter_pruned._kd_order(z, n, 7, -(-n // 2 ** 7)))
  assert sorted(perm[perm < n].tolist()) == list(range(n))  # the kd order is a permutation
  bf = acquisition.kcenter_greedy(x, labeled, 150, storage_dtype=jnp.bfloat16)
  np.testing.assert_array_equal(acquisition.kcenter_greedy(x, labeled, 150, storage_dtype=jnp.bfloat16, prune=True, probes=0), bf)


def test_pruned_refinement_on_diffuse_features():
  """Overlapping, non-tight structure (like trained features): boxes overlap, so the per-row
  bound refines most steps; picks still equal the plain kernel's."""
  rng = np.random.default_rng(13)
  n, d = 3000, 64
  x = (np.maximum(rng.normal(size=(n, 8)) @ rng.normal(size=(8, d)), 0) + 0.05 * rng.normal(size=(n, d)))
  x = x.astype(np.float32)
  labeled = np.zeros(n, bool)
  labeled[rng.choice(n, 300, replace=False)] = True
  plain = acquisition.kcenter_greedy(x, labeled, 200)
  got, stats = acquisition.kcenter_greedy(x, labeled, 200, prune=True, tile=16, probes=0, with_stats=True)
  np.testing.assert_array_equal(got, plain)
  assert stats["fraction_read"] < 1.0


def test_probe_skips_the_tree_on_isotropic_data_and_keeps_it_on_clusters():
  """The pre-loop probe only chooses which loop runs: the picks equal the plain kernel's."""
  rng = np.random.default_rng(21)
  n, d = 3000, 128
  cases = {"gaussian": rng.normal(size=(n, d)).astype(np.float32), "clustered": clustered(n, d, 20, 21, spread=0.2)}
  labeled = np.zeros(n, bool)
  labeled[rng.choice(n, 100, replace=False)] = True
  for kind, x in cases.items():
    plain = acquisition.kcenter_greedy(x, labeled, 80)
    got, stats = acquisition.kcenter_greedy(x, labeled, 80, prune=True, with_stats=True)
    np.testing.assert_array_equal(got, plain, err_msg=kind)
    assert stats["tree"] == (kind == "clustered"), (kind, stats)
    assert (stats["fraction_read"] == 1.0) == (kind == "gaussian"), (kind, stats)


def test_guarded_gemv_steps_equal_dense_steps():
  """The guarded GEMV update (a sparse recompute, or the dense pass when more than `cap`
  rows qualify) gives the dense direct kernel's picks, also far from the origin, where
  the expanded form's round-off is large and many rows fall back to the direct form."""
  rng = np.random.default_rng(22)
  n, d = 2000, 48
  for offset in (0.0, 50.0):
    x = (rng.normal(size=(n, d)) + offset).astype(np.float32)
    x[5] = x[6]
    labeled = np.zeros(n, bool)
    labeled[rng.choice(n, 30, replace=False)] = True
    args = (jnp.asarray(x), jnp.asarray(labeled), jnp.ones(n, bool), 100, 64)
    dense = np.asarray(kcenter_dense._kcenter(*args, guard_cap=0))
    if offset == 0:  # far from the origin the initial GEMM's float32 round-off reorders near-ties
      np.testing.assert_array_equal(dense, naive_kcenter(x, labeled, 100))
    for cap in (1, 8, n):
      np.testing.assert_array_equal(np.asarray(kcenter_dense._kcenter(*args, guard_cap=cap)), dense,
                                    err_msg=f"offset={offset} cap={cap}")


def test_guard_bound_covers_both_forms_round_off():
  """|GEMV form - direct form| stays within the guard's slack, on rows of mixed scales."""
  rng = np.random.default_rng(23)
  for d, scale, offset in [(8, 1.0, 0.0), (512, 1.0, 0.0), (512, 0.01, 3.0), (100, 1e3, -2e3)]:
    x = (rng.normal(size=(3000, d)) * scale * rng.uniform(0.1, 10, size=(3000, 1)) + offset).astype(np.float32)
    xj = jnp.asarray(x)
    sq, norm, _ = kcenter_dense._guard(xj, 1)
    for u in rng.choice(3000, 5, replace=False):
      approx = np.asarray(sq + sq[u] - 2.0 * jnp.dot(xj, xj[u], precision=jax.lax.Precision.HIGHEST))
      direct = np.asarray(kcenter_dense._row_d2(xj, xj[u]))
      slack = kcenter_dense._GUARD * (d + 2) * kcenter_dense._EPS32 * (np.asarray(norm) + float(norm[u])) ** 2
      exact = ((x.astype(np.float64) - x[u].astype(np.float64)) ** 2).sum(1)
      assert np.all(np.abs(approx - direct) <= slack), (d, scale, offset)
      assert np.all(np.abs(approx - exact) <= slack / 2), (d, scale, offset)
