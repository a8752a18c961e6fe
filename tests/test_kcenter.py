"""Greedy k-center (ALGORITHMS.md §3): plain and pruned kernels against a naive float64 greedy."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import acquisition
from jaxal.acquisition import kcenter_dense, kcenter_init, kcenter_pruned, kcenter_rows


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


def greedy64(x, labeled, budget):
  """`naive_kcenter` vectorized (float64, the lowest index among equal maxima), for larger
  inputs; with labeled points only."""
  x = np.asarray(x, np.float64)
  d = ((x[:, None] - x[labeled][None]) ** 2).sum(-1).min(1)
  d[labeled] = -np.inf
  picks = []
  for _ in range(budget):
    picks.append(int(np.argmax(d)))
    d = np.minimum(d, ((x - x[picks[-1]]) ** 2).sum(1))
    d[picks[-1]] = -np.inf
  return np.array(picks)


def test_vectorized_reference_equals_the_naive_one():
  rng = np.random.default_rng(5)
  x = rng.integers(0, 3, size=(60, 2)).astype(np.float32)  # many exact ties
  labeled = np.zeros(60, bool)
  labeled[[4, 17, 33]] = True
  np.testing.assert_array_equal(greedy64(x, labeled, 20), naive_kcenter(x, labeled, 20))


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

# dense_fraction 2.0 never falls back to the plain update; 0.0 always does; 0.05 is the default.
PRUNE_SETTINGS = [dict(dense_fraction=2.0, lookahead=16), dict(dense_fraction=0.05, lookahead=4),
                  dict(dense_fraction=0.0, lookahead=1)]


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
  n, d = 700, 24
  rng = np.random.default_rng(7)
  x = rng.normal(size=(n, d)).astype(np.float32) if kind == "gaussian" else clustered(n, d, 12, 7)
  x[100] = x[101]  # an exact duplicate
  labeled = np.zeros(n, bool)
  if kind != "clustered_no_labels":
    labeled[rng.choice(n, 40, replace=False)] = True
  plain = acquisition.kcenter_greedy(x, labeled, 80, block=16)
  for settings in PRUNE_SETTINGS[:2]:
    got, stats = acquisition.kcenter_greedy(x, labeled, 80, block=16, prune=True, with_stats=True, **settings)
    np.testing.assert_array_equal(got, plain, err_msg=str(settings))
    if kind == "clustered" and settings["dense_fraction"] > 1:
      assert stats["fraction_read"] < 0.5  # pairs really were skipped


def test_steps_where_many_pairs_pass_the_screen_take_the_plain_update():
  """On 32-d Gaussians the projected screen passes over a third of the pairs, and reading
  those one gather at a time cost 35x the plain update (NOTES §12): by default every such
  step takes the plain update instead (all rows read), with the same picks."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((3000, 32), np.float32)
  labeled = np.zeros(3000, bool)
  labeled[rng.choice(3000, 60, replace=False)] = True
  plain = acquisition.kcenter_greedy(x, labeled, 150)
  sparse, sparse_stats = acquisition.kcenter_greedy(x, labeled, 150, prune=True, dense_fraction=2.0, with_stats=True)
  default, default_stats = acquisition.kcenter_greedy(x, labeled, 150, prune=True, with_stats=True)
  assert sparse_stats["screened"] and 0.2 < sparse_stats["fraction_read"] < 0.9  # many pairs pass, not all
  assert default_stats["screened"] and default_stats["fraction_read"] == pytest.approx(1.0)
  np.testing.assert_array_equal(sparse, plain)
  np.testing.assert_array_equal(default, plain)


def test_pruned_bf16_equals_plain_bf16():
  x = clustered(400, 16, 8, 3, spread=0.5, scale=3.0)
  labeled = np.zeros(400, bool)
  labeled[::50] = True
  plain = acquisition.kcenter_greedy(x, labeled, 60, storage_dtype=jnp.bfloat16)
  pruned = acquisition.kcenter_greedy(x, labeled, 60, storage_dtype=jnp.bfloat16, prune=True, probes=0)
  np.testing.assert_array_equal(pruned, plain)


@pytest.mark.parametrize("block", [1, 3, 7, 64])
@pytest.mark.parametrize("offset", [0.0, 30.0])
def test_initial_entries_are_the_direct_form_minimum_in_every_blocking(block, offset):
  """Each row's initial entry is exactly (bit for bit) the minimum over the labeled rows of
  the direct form, whatever the block, with duplicated and exactly tied labeled rows, and far
  from the origin (where the GEMM's round-off is large and its bound flags several centers)."""
  rng = np.random.default_rng(8)
  x = (rng.integers(-3, 4, size=(90, 5)) + offset).astype(np.float32)
  x[40] = x[3]  # a duplicated labeled row
  labeled = np.zeros(90, bool)
  labeled[rng.choice(90, 17, replace=False)] = True
  labeled[[3, 40]] = True
  xj, valid = jnp.asarray(x), jnp.ones(90, bool)
  data, index = kcenter_init._prepare(xj, jnp.asarray(labeled), block)
  _, exact = kcenter_init._start_state(data, index, jnp.asarray(labeled), valid, block)
  assert not np.all(exact)  # the tied rows need the resolving pass
  m, _ = kcenter_init._start_state(data, index, jnp.asarray(labeled), valid, block)
  m, exact = kcenter_init._resolve_batch(data, index, m, exact, jnp.arange(90, dtype=jnp.int32))
  assert np.all(exact)
  row_d2 = jax.jit(kcenter_rows._row_d2)
  direct = np.stack([np.asarray(row_d2(xj, xj[c])) for c in np.flatnonzero(labeled)], axis=1)
  want = np.where(labeled, -np.inf, direct.min(1))
  np.testing.assert_array_equal(np.asarray(m), want)
  exact64 = ((x[:, None].astype(np.float64) - x[labeled][None].astype(np.float64)) ** 2).sum(-1).min(1)
  np.testing.assert_array_equal(np.asarray(m)[~labeled], exact64[~labeled])  # small integers: exact in float32


def test_resolving_in_pieces_gives_the_entries_of_one_batch():
  """The pruned kernel resolves its first `budget` rows a piece at a time (bounded
  temporaries); the last piece padded with row n. Same entries and flags as one batch."""
  rng = np.random.default_rng(9)
  x = jnp.asarray((rng.integers(-3, 4, size=(90, 5)) + 30.0).astype(np.float32))
  labeled = np.zeros(90, bool)
  labeled[rng.choice(90, 17, replace=False)] = True
  data, index = kcenter_init._prepare(x, jnp.asarray(labeled), 4)
  m, _ = kcenter_init._start_state(data, index, jnp.asarray(labeled), jnp.ones(90, bool), 4)
  exact = jnp.asarray(labeled)  # every other entry taken as an upper bound (as after the projected guess)
  rows = jnp.asarray(rng.permutation(90)[:70], jnp.int32)
  want = kcenter_init._resolve_batch(data, index, m, exact, rows)
  got = jax.jit(kcenter_init._resolve_pieces, static_argnames="piece")(data, index, m, exact, rows, piece=16)
  assert 0 < np.sum(~np.asarray(want[1])) < 90 - 17  # some rows resolved, some left as bounds
  np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
  np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))


def test_settle_makes_the_top_entries_exact_and_leaves_upper_bounds_below():
  """From the pruned kernel's projected guess, `_settle` resolves rows until the k largest
  entries are exact (bit-equal to the direct-form minimum); the rows it leaves are upper
  bounds at or below the k-th value, and there are some (the point of resolving lazily)."""
  x = clustered(1200, 32, 12, 31, spread=0.4)
  labeled = np.zeros(1200, bool)
  labeled[np.random.default_rng(31).choice(1200, 60, replace=False)] = True
  xj, lab, valid = jnp.asarray(x), jnp.asarray(labeled), jnp.ones(1200, bool)
  z, r, _ = kcenter_pruned._projection(xj, 8, 512)
  w, wsq = kcenter_pruned._coordinates(z, r)
  data, index = kcenter_init._prepare(xj, lab, 64)
  m, exact = kcenter_init._start_state(data, index, lab, valid, 64,
                                       lambda index: kcenter_pruned._projected_guess(w, wsq, index, 64))
  assert not np.any(np.asarray(exact)[~labeled])  # the projected guess certifies nothing
  m, exact = kcenter_init._settle(data, index, m, exact, 16, batch=32)
  m, exact = np.asarray(m), np.asarray(exact)
  row_d2 = jax.jit(kcenter_rows._row_d2)  # as in the kernels (op by op, no product is fused into an add)
  direct = np.stack([np.asarray(row_d2(xj, xj[c])) for c in np.flatnonzero(labeled)], axis=1).min(1)
  top = np.argsort(-m, kind="stable")[:16]
  assert exact[top].all()
  np.testing.assert_array_equal(m[exact & ~labeled], direct[exact & ~labeled])
  rest = ~exact & ~labeled
  assert 0 < rest.sum() < 1200 - 16 - 60 + 1
  assert np.all(m[rest] >= direct[rest]) and np.all(m[rest] <= np.sort(m)[-16])


@pytest.mark.parametrize("width", [1, 7, 256])  # one column; fewer than 8 (odd); several bytes of index bits
def test_packed_argmin_matches_numpy_in_both_layouts(width):
  rng = np.random.default_rng(width)
  rows = 300
  # Ties (values drawn from a few levels), zeros, negatives (clamped at 0) and a column
  # with no real center.
  values = rng.choice(np.float32([-1.0, 0.0, 0.5, 2.0, 3.0]), size=(rows, width)) + \
      rng.choice(np.float32([0.0, 1e-7, 1e-3]), size=(rows, width))
  values = values.astype(np.float32)
  real = rng.random(width) < 0.8
  real[0] = True
  mask = (1 << max(1, (width - 1).bit_length())) - 1
  keys = (np.maximum(values, 0).view(np.int32) & ~mask) | np.arange(width, dtype=np.int32)
  keys = np.where(real[None, :], keys, 0x7F800000)
  best = keys.min(axis=1)
  want_index, want_value = best & mask, (best & ~mask).view(np.float32)
  for layout, axis in ((values, 1), (values.T, 0)):
    index, value = kcenter_init._argmin_packed(jnp.asarray(layout), jnp.asarray(real), axis=axis)
    np.testing.assert_array_equal(np.asarray(index), want_index)
    np.testing.assert_array_equal(np.asarray(value), want_value)
    assert real[np.asarray(index)].all()
    # The value is the smallest real one with its low bits cleared, so never above it.
    smallest = np.where(real[None, :], np.maximum(values, 0), np.inf).min(axis=1)
    assert (np.asarray(value) <= smallest).all() and (np.asarray(value) >= smallest * (1 - 1e-4)).all()
  _, value = kcenter_init._argmin_packed(jnp.asarray(values), jnp.zeros(width, bool), axis=1)
  assert np.isinf(np.asarray(value)).all()  # no real center


def test_budget_larger_than_pool_is_rejected():
  labeled = np.zeros(10, bool)
  labeled[:8] = True
  with pytest.raises(ValueError, match="exceeds"):
    acquisition.kcenter_greedy(np.zeros((10, 2), np.float32), labeled, 3, prune=True)


# ----------------------------------------------------------------------------- screen, probe, lookahead

@pytest.mark.parametrize("kind", ["clustered", "gaussian", "clustered_no_labels"])
def test_pruned_with_default_blocks_equals_plain(kind):
  """Default `block`, with and without lookahead, so the screen, its fallback to the plain
  update and the first pick without labels are all exercised."""
  n, d = 1500, 40
  rng = np.random.default_rng(12)
  x = rng.normal(size=(n, d)).astype(np.float32) if kind == "gaussian" else clustered(n, d, 8, 12, spread=0.3)
  x[7] = x[8]
  labeled = np.zeros(n, bool)
  if kind != "clustered_no_labels":
    labeled[rng.choice(n, 80, replace=False)] = True
  plain = acquisition.kcenter_greedy(x, labeled, 100)
  for lookahead in (1, 16):  # dense_fraction 0.3: one pick's cluster, 1/8 of the rows, stays screened
    got, stats = acquisition.kcenter_greedy(x, labeled, 100, prune=True, probes=0, lookahead=lookahead,
                                            dense_fraction=0.3, with_stats=True)
    np.testing.assert_array_equal(got, plain, err_msg=f"lookahead={lookahead}")
    if kind == "clustered" and lookahead == 1:  # (16 picks a step span all 8 clusters)
      assert stats["fraction_read"] < 0.2
  bf = acquisition.kcenter_greedy(x, labeled, 100, storage_dtype=jnp.bfloat16)
  np.testing.assert_array_equal(acquisition.kcenter_greedy(x, labeled, 100, storage_dtype=jnp.bfloat16, prune=True, probes=0), bf)


def test_pruned_on_diffuse_features():
  """Overlapping, non-tight structure (like trained features): the screen passes more pairs;
  picks still equal the plain kernel's."""
  rng = np.random.default_rng(13)
  n, d = 1500, 64
  x = (np.maximum(rng.normal(size=(n, 8)) @ rng.normal(size=(8, d)), 0) + 0.05 * rng.normal(size=(n, d)))
  x = x.astype(np.float32)
  labeled = np.zeros(n, bool)
  labeled[rng.choice(n, 150, replace=False)] = True
  plain = acquisition.kcenter_greedy(x, labeled, 100)
  got, stats = acquisition.kcenter_greedy(x, labeled, 100, prune=True, probes=0, with_stats=True)
  np.testing.assert_array_equal(got, plain)
  assert stats["fraction_read"] < 1.0


def test_probe_skips_the_screen_on_isotropic_data_and_keeps_it_on_clusters():
  """The pre-loop probe only chooses which update the steps take: the picks equal the
  plain kernel's."""
  rng = np.random.default_rng(21)
  n, d = 1500, 128
  cases = {"gaussian": rng.normal(size=(n, d)).astype(np.float32), "clustered": clustered(n, d, 20, 21, spread=0.2)}
  labeled = np.zeros(n, bool)
  labeled[rng.choice(n, 100, replace=False)] = True
  for kind, x in cases.items():
    plain = acquisition.kcenter_greedy(x, labeled, 80)
    got, stats = acquisition.kcenter_greedy(x, labeled, 80, prune=True, with_stats=True)
    np.testing.assert_array_equal(got, plain, err_msg=kind)
    assert stats["screened"] == (kind == "clustered"), (kind, stats)
    assert (stats["fraction_read"] >= 1.0) == (kind == "gaussian"), (kind, stats)


@pytest.mark.parametrize("kind", ["gaussian", "integer_ties", "clustered", "no_labels", "far_from_origin"])
def test_lookahead_takes_the_one_at_a_time_picks_in_fewer_steps(kind):
  """Several picks per step give exactly the one-pick-per-step sequence, for the plain,
  bfloat16 and pruned kernels; on spread-out data most steps take more than one pick."""
  rng = np.random.default_rng(31)
  n, d = 600, 20
  x = {"gaussian": rng.normal(size=(n, d)), "integer_ties": rng.integers(-2, 3, size=(n, d)),
       "clustered": clustered(n, d, 10, 31, spread=0.5), "no_labels": rng.normal(size=(n, d)),
       "far_from_origin": rng.normal(size=(n, d)) + 40.0}[kind].astype(np.float32)
  x[3] = x[4]
  labeled = np.zeros(n, bool)
  if kind != "no_labels":
    labeled[rng.choice(n, 30, replace=False)] = True
  for options in (dict(), dict(storage_dtype=jnp.bfloat16), dict(prune=True, probes=0)):
    one = acquisition.kcenter_greedy(x, labeled, 100, lookahead=1, **options)
    for lookahead in (16, 64):  # within the budget, and past half of it
      got, stats = acquisition.kcenter_greedy(x, labeled, 100, lookahead=lookahead, with_stats=True, **options)
      np.testing.assert_array_equal(got, one, err_msg=f"{options} lookahead={lookahead}")
      if kind == "gaussian" and lookahead == 16:
        assert stats["steps"] < 40, stats
  if kind == "integer_ties":
    np.testing.assert_array_equal(one[:15], naive_kcenter(x, labeled, 15))


def test_lookahead_replays_past_candidates_an_earlier_pick_brought_closer():
  """Twins (rows 1e-3 apart, far from everything else) sit next to each other in the
  candidate order; picking one brings its twin close. The replay skips the twin and goes on
  with the other candidates, so steps stay near budget / lookahead (a rule that stopped at
  the first such candidate took all 96 steps here), with the same picks."""
  rng = np.random.default_rng(34)
  sites = rng.normal(size=(200, 8)) * 10
  x = np.repeat(sites, 2, axis=0) + rng.normal(size=(400, 8)) * 1e-3
  x = x.astype(np.float32)
  labeled = np.zeros(400, bool)
  labeled[rng.choice(400, 10, replace=False)] = True
  for options in (dict(), dict(prune=True, probes=0)):
    one = acquisition.kcenter_greedy(x, labeled, 96, lookahead=1, **options)
    got, stats = acquisition.kcenter_greedy(x, labeled, 96, lookahead=16, with_stats=True, **options)
    np.testing.assert_array_equal(got, one, err_msg=str(options))
    assert len(set((one // 2).tolist())) == 96  # never both twins: each twin pair was a candidate pair
    assert stats["steps"] <= 16, stats  # the leading-run rule: 96 steps


def test_top_k_orders_ties_by_lower_index():
  """The lookahead takes `top_k`'s order as the greedy's pick order (value desc, index asc),
  also among exact ties and -inf entries."""
  rng = np.random.default_rng(32)
  for _ in range(20):
    m = rng.integers(0, 6, size=50).astype(np.float32)
    m[rng.random(50) < 0.1] = -np.inf
    _, pos = jax.lax.top_k(jnp.asarray(m), 8)
    np.testing.assert_array_equal(np.asarray(pos), np.lexsort((np.arange(50), -m))[:8])


@pytest.mark.parametrize("d", [1, 17, 64, 130])  # one column, odd, a power of two, past 128
def test_row_distances_have_the_same_bits_in_every_shape(d):
  """The fixed-order direct form gives a row the same bits read flat, gathered, as one row,
  or as one of several centers' columns (a library reduction did not, for d < 128), op by
  op or jitted, alone or fused into a larger program (where XLA:CPU contracted a product
  and its add into one fused multiply-add in some fusions and not in others)."""
  rng = np.random.default_rng(33)
  x = jnp.asarray((rng.normal(size=(301, d)) * rng.uniform(0.1, 10, size=(301, 1)) + 3).astype(np.float32))
  centers = x[:5]
  row_d2 = kcenter_rows._row_d2
  flat = np.stack([np.asarray(row_d2(x, c)) for c in centers], axis=1)
  idx = rng.integers(0, 301, 77)
  which = rng.integers(0, 5, 77)
  for run in (row_d2, jax.jit(row_d2), jax.jit(lambda a, b: jnp.minimum(row_d2(a, b) * 1.0, 1e30))):
    np.testing.assert_array_equal(np.stack([np.asarray(run(x, c)) for c in centers], axis=1), flat)
    np.testing.assert_array_equal(np.asarray(run(x[:, None, :], centers[None])), flat)
    np.testing.assert_array_equal(np.asarray(run(x[idx], centers[which])), flat[idx, which])
    np.testing.assert_array_equal(np.asarray(run(x[7:8], centers[2])), flat[7:8, 2])
    np.testing.assert_array_equal(np.asarray(run(x[:37], centers[3])), flat[:37, 3])
  exact = ((np.asarray(x, np.float64)[:, None] - np.asarray(centers, np.float64)[None]) ** 2).sum(-1)
  np.testing.assert_allclose(flat, exact, rtol=1e-5)


def test_guarded_gemv_steps_equal_dense_steps():
  """The guarded GEMV update (a sparse recompute, or the dense pass when more than `cap`
  rows qualify) gives the dense direct kernel's picks, also far from the origin, where
  the expanded form's round-off is large and many rows fall back to the direct form."""
  rng = np.random.default_rng(22)
  n, d = 1000, 48
  for offset in (0.0, 50.0):
    x = (rng.normal(size=(n, d)) + offset).astype(np.float32)
    x[5] = x[6]
    labeled = np.zeros(n, bool)
    labeled[rng.choice(n, 30, replace=False)] = True
    args = (jnp.asarray(x), jnp.asarray(labeled), jnp.ones(n, bool), 100, 64)
    dense = np.asarray(kcenter_dense._kcenter(*args, guard_cap=0)[0])
    # Also far from the origin: the initial entries are direct-form distances too (a GEMM's
    # expanded form there loses the digits that order near-ties).
    np.testing.assert_array_equal(dense, greedy64(x, labeled, 100), err_msg=f"offset={offset}")
    for cap in (1, 8, n):
      np.testing.assert_array_equal(np.asarray(kcenter_dense._kcenter(*args, guard_cap=cap)[0]), dense,
                                    err_msg=f"offset={offset} cap={cap}")


def test_screen_never_drops_a_pair_that_gets_closer():
  """The projected screen flags every (row, center) pair whose true distance is below the
  row's entry, on rows of mixed scales, far from the origin and in low dimension."""
  rng = np.random.default_rng(24)
  cases = [(rng.normal(size=(600, 64)) * rng.uniform(0.05, 5, size=(600, 1)), 16),
           (rng.normal(size=(600, 300)) * rng.uniform(0.05, 5, size=(600, 1)) + 25.0, 16),
           (rng.normal(size=(500, 5)) - 3.0, 4), (rng.normal(size=(400, 17)), 16),
           (clustered(600, 64, 10, 24, spread=0.3), 16)]
  for case, (x, proj) in enumerate(cases):
    x = x.astype(np.float32)
    n = len(x)
    z, r, ny = kcenter_pruned._projection(jnp.asarray(x), proj, 512)
    w, wsq = kcenter_pruned._coordinates(z, r)
    pos = jnp.asarray(rng.choice(n, 12, replace=False))
    exact = ((x[:, None].astype(np.float64) - x[np.asarray(pos)][None].astype(np.float64)) ** 2).sum(-1)
    for scale in (1.0 + 1e-6, 1.5, 4.0):
      m = exact.min(1) * scale  # each row's entry just above (or well above) its nearest center
      flags = np.asarray(kcenter_pruned._screen(w, wsq, ny, pos, jnp.asarray(m, jnp.float32)))
      closer = exact < np.float32(m)[:, None]
      assert flags[closer].all(), (case, scale)
      if case == 4 and scale < 2:  # on clusters it flags few pairs beyond those that get closer
        assert (flags & ~closer).mean() < 0.1, (flags.mean(), closer.mean())


def test_guard_bound_covers_both_forms_round_off():
  """|GEMV form - direct form| stays within the guard's slack, on rows of mixed scales."""
  rng = np.random.default_rng(23)
  for d, scale, offset in [(8, 1.0, 0.0), (512, 1.0, 0.0), (512, 0.01, 3.0), (100, 1e3, -2e3)]:
    x = (rng.normal(size=(1000, d)) * scale * rng.uniform(0.1, 10, size=(1000, 1)) + offset).astype(np.float32)
    xj = jnp.asarray(x)
    sq, norm = kcenter_rows._norms(xj)
    for u in rng.choice(1000, 5, replace=False):
      approx = np.asarray(sq + sq[u] - 2.0 * jnp.dot(xj, xj[u], precision=jax.lax.Precision.HIGHEST))
      direct = np.asarray(kcenter_rows._row_d2(xj, xj[u]))
      slack = kcenter_rows._GUARD * (d + 2) * kcenter_rows._EPS32 * (np.asarray(norm) + float(norm[u])) ** 2
      exact = ((x.astype(np.float64) - x[u].astype(np.float64)) ** 2).sum(1)
      assert np.all(np.abs(approx - direct) <= slack), (d, scale, offset)
      assert np.all(np.abs(approx - exact) <= slack / 2), (d, scale, offset)


def test_pruned_kernel_traces_at_a_million_rows_and_ten_thousand_picks():
  """`budget * n` passes int32 at 1M x 10k (issue 28's coreset at scale): the kernel's
  statistics once divided by it as a Python int, which JAX refuses (OverflowError) when
  tracing. Tracing at that size (shapes only, no compute) catches it."""
  n, budget, lookahead = 1_000_000, 10_000, 32
  out = jax.eval_shape(
      functools.partial(kcenter_pruned._kcenter_pruned, budget=budget, block=32, cap=int(0.3 * n * lookahead),
                        proj=8, guard_cap=0, probes=8, probe_fraction=0.3, lookahead=lookahead),
      jax.ShapeDtypeStruct((n, 8), jnp.float32), jax.ShapeDtypeStruct((n,), jnp.bool_),
      jax.ShapeDtypeStruct((n,), jnp.bool_))
  assert out[0].shape == (budget,) and out[1].dtype == jnp.float32
