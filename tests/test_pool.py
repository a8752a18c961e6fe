"""Pool bookkeeping, initial sets and the query-size schedule."""

import numpy as np
import pytest

from jaxal.data import pool as pool_lib


def test_label_reveals_and_never_overwrites():
  s = pool_lib.PoolState.empty(10)
  s2 = s.label(np.array([3, 7]), np.array([1, 2]))
  assert s.num_labeled == 0  # the old state is untouched
  assert s2.num_labeled == 2 and s2.labels[3] == 1 and s2.labels[7] == 2
  assert (s2.labels[[0, 1, 2, 4, 5, 6, 8, 9]] == pool_lib.UNKNOWN).all()
  with pytest.raises(ValueError, match="already labeled"):
    s2.label(np.array([7]), np.array([0]))
  with pytest.raises(ValueError, match="duplicate"):
    s.label(np.array([1, 1]), np.array([0, 0]))
  with pytest.raises(IndexError):
    s.label(np.array([10]), np.array([0]))


def test_round_trip_arrays():
  s = pool_lib.PoolState.empty(5).label(np.array([0, 4]), np.array([3, 1])).next_round()
  back = pool_lib.PoolState.from_arrays(s.to_arrays())
  np.testing.assert_array_equal(back.labeled_mask, s.labeled_mask)
  np.testing.assert_array_equal(back.labels, s.labels)
  assert back.round == 1


@pytest.mark.parametrize("size", [10, 23, 50])
def test_balanced_initial_set(size):
  labels = np.repeat(np.arange(5), 40)
  rng = np.random.default_rng(0)
  labels = labels[rng.permutation(labels.size)]
  idx = pool_lib.initial_indices(labels, size, seed=3, balanced=True)
  assert idx.size == size == np.unique(idx).size
  counts = np.bincount(labels[idx], minlength=5)
  assert counts.max() - counts.min() <= 1
  np.testing.assert_array_equal(idx, pool_lib.initial_indices(labels, size, seed=3, balanced=True))
  assert not np.array_equal(idx, pool_lib.initial_indices(labels, size, seed=4, balanced=True))


def test_balanced_initial_set_with_a_small_class():
  labels = np.array([0] * 50 + [1] * 2)
  idx = pool_lib.initial_indices(labels, 10, seed=0, balanced=True)
  assert idx.size == 10 and (labels[idx] == 1).sum() == 2


def test_query_schedule():
  schedule = pool_lib.parse_schedule("0:2000,10000:5000", "al.query_schedule")
  assert schedule == [(0, 2000), (10000, 5000)]
  sizes = [2000]
  while sizes[-1] < 20000:
    sizes.append(sizes[-1] + pool_lib.query_size_at(sizes[-1], schedule))
  assert sizes == [2000, 4000, 6000, 8000, 10000, 15000, 20000]


@pytest.mark.parametrize("text,msg", [("", "empty"), ("5:10", "first threshold"), ("0:1,0:2", "increase"),
                                      ("0-5", "threshold:value"), ("0:x", "not 'int:int'")])
def test_schedule_errors_name_the_field(text, msg):
  with pytest.raises(ValueError, match=msg) as e:
    pool_lib.parse_schedule(text, "al.query_schedule")
  assert "al.query_schedule" in str(e.value)


def test_simulated_oracle_reads_true_labels():
  from jaxal import oracle as oracle_lib
  idx, labels = oracle_lib.SimulatedOracle(np.array([5, 6, 7])).reveal(np.array([2, 0]))
  np.testing.assert_array_equal(idx, [2, 0])
  np.testing.assert_array_equal(labels, [7, 5])
