"""Metrics against brute-force numpy references and hand computations."""

import numpy as np
import pytest

from jaxal import metrics


def _brute_force_ranks(x):
  """Average 1-based ranks by counting: rank_i = #{x_j < x_i} + (#{x_j == x_i} + 1) / 2."""
  x = np.asarray(x, np.float64)
  less = (x[None, :] < x[:, None]).sum(1)
  equal = (x[None, :] == x[:, None]).sum(1)
  return less + (equal + 1) / 2


def _brute_force_pearson(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  da, db = a - a.mean(), b - b.mean()
  return float((da * db).sum() / np.sqrt((da * da).sum() * (db * db).sum()))


@pytest.mark.parametrize("seed", range(5))
def test_rank_correlations_match_a_brute_force_reference_on_tied_data(seed):
  rng = np.random.default_rng(seed)
  a = rng.integers(0, 6, 200).astype(float)  # many ties
  b = a + rng.integers(0, 4, 200)
  want_spearman = _brute_force_pearson(_brute_force_ranks(a), _brute_force_ranks(b))
  assert metrics.spearman(a, b) == pytest.approx(want_spearman, abs=1e-12)
  assert metrics.pearson(a, b) == pytest.approx(_brute_force_pearson(a, b), abs=1e-12)


def test_spearman_properties():
  x = np.random.default_rng(0).normal(size=50)
  assert metrics.spearman(x, x) == pytest.approx(1.0)
  assert metrics.spearman(x, -x) == pytest.approx(-1.0)
  assert metrics.spearman(np.exp(x), x ** 3) == pytest.approx(1.0)  # monotone transforms
  assert np.isnan(metrics.pearson(np.ones(5), np.arange(5)))
  assert np.isnan(metrics.spearman(np.arange(5), np.ones(5)))


def test_topk_overlap_with_ties():
  a = np.array([0.9, 0.5, 0.5, 0.1, 0.5])
  b = np.array([0.5, 0.5, 0.9, 0.5, 0.0])
  # top-2: a -> {0, 1} (tie among 1, 2, 4 goes to index 1); b -> {2, 0}
  assert metrics.topk_overlap(a, b, 2) == 0.5
  assert metrics.topk_overlap(a, a, 3) == 1.0
  assert metrics.selection_overlap([1, 2, 3, 4], [4, 3, 9, 8]) == 0.5


def test_selection_runtime_and_speedup_on_synthetic_logs():
  baseline = [{"train_seconds": 100.0, "selection_seconds": 20.0, "queried": 10},
              {"train_seconds": 200.0, "selection_seconds": 30.0, "queried": 10},
              {"train_seconds": 400.0, "selection_seconds": 0.0, "queried": 0}]  # final: no selection
  proxy = [{"train_seconds": 10.0, "selection_seconds": 5.0, "search_seconds": 1.0, "queried": 10},
           {"train_seconds": 20.0, "selection_seconds": 6.0, "queried": 10},
           {"train_seconds": 40.0, "selection_seconds": 0.0, "queried": 0}]
  assert metrics.selection_runtime(baseline) == 350.0
  assert metrics.selection_runtime(proxy) == 42.0
  assert metrics.speedup(baseline, proxy) == pytest.approx(350 / 42)


def test_labeling_efficiency_identity_and_doubling():
  sizes = np.array([100, 200, 300, 400, 500], float)
  a_r = 0.001 * sizes  # linear random curve
  np.testing.assert_allclose(metrics.labeling_efficiency(sizes, a_r, a_r), 1.0)
  a_s = 0.001 * 2 * sizes  # the strategy reaches random's accuracy at twice the labels
  le = metrics.labeling_efficiency(sizes, a_s, a_r)
  np.testing.assert_allclose(le[:2], 2.0)  # defined where 2n <= 500
  assert np.isnan(le[2:]).all()  # above random's best: censored
  bound = metrics.labeling_efficiency(sizes, a_s, a_r, censored="bound")
  np.testing.assert_allclose(bound[2:], 500 / sizes[2:])


def test_labeling_efficiency_envelope_below_start_and_seed_average():
  sizes = [1, 2, 3, 4]
  a_r = [0.5, 0.7, 0.6, 0.9]  # non-monotone: the envelope is 0.5, 0.7, 0.7, 0.9
  assert metrics.random_labels_needed(sizes, a_r, 0.7) == 2.0
  assert metrics.random_labels_needed(sizes, a_r, 0.8) == pytest.approx(3.5)
  assert np.isnan(metrics.random_labels_needed(sizes, a_r, 0.4))
  le = metrics.labeling_efficiency(sizes, [[0.4, 0.7, 0.7, 0.9], [0.6, 0.7, 0.9, 0.9]], a_r)
  np.testing.assert_allclose(le, [1.0, 1.0, 3.5 / 3, 1.0])  # averaged over seeds first


def test_gain_over_random_and_spread():
  mean, std = metrics.gain_over_random([[0.6, 0.8], [0.7, 0.9]], [[0.5, 0.8], [0.5, 0.8]])
  np.testing.assert_allclose(mean, [0.15, 0.05])
  np.testing.assert_allclose(std, [np.std([0.1, 0.2], ddof=1), np.std([0.0, 0.1], ddof=1)])
  m1, s1 = metrics.gain_over_random([0.6, 0.8], [0.5, 0.8])
  np.testing.assert_allclose(m1, [0.1, 0.0]) and np.testing.assert_allclose(s1, 0.0)
  np.testing.assert_allclose(metrics.spread([[0.5, 0.9], [0.7, 0.6], [0.6, 0.8]]), [0.2, 0.3])
