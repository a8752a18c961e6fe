"""iNAS: the candidate DAG against ALGORITHMS.md §7.2, and the search inside the loop."""

import numpy as np
import pytest

from jaxal import loop
from jaxal import metrics
from jaxal import models
from jaxal.search import inas
from tests.conftest import tiny_config

# ALGORITHMS.md §7.2: the add-stack candidate's block count i' for row i, current stacks j = 1..4.
ADD_STACK_TABLE = {
    1: (1, 1, 1, 1), 2: (2, 2, 2, 2), 3: (2, 3, 3, 3), 4: (3, 3, 4, 4), 5: (3, 4, 4, 5), 6: (4, 5, 5, 5),
    7: (4, 5, 6, 6), 8: (5, 6, 7, 7), 9: (5, 7, 7, 8), 10: (6, 7, 8, 9), 11: (6, 8, 9, 9), 12: (7, 9, 10, 10),
}


def depth(blocks, stacks):
  return blocks * stacks * 2 + 2


@pytest.mark.parametrize("i", range(1, 13))
def test_candidates_reproduce_the_table(i):
  for j in range(1, 6):
    c = inas.candidates(i, j)
    assert c[0] == (i, j)
    expected = [(i, j)]
    if i < 12:
      expected.append((i + 1, j))
    if j < 5:
      expected.append((ADD_STACK_TABLE[i][j - 1], j + 1))
    assert c == expected
    for b, s in c[1:]:
      assert depth(b, s) > depth(i, j)  # every expansion is strictly deeper
      assert b <= 12 and s <= 5
    if j < 5:  # and the add-stack one is the shallowest such network
      b, s = c[-1]
      assert depth(b - 1, s) <= depth(i, j)


def test_candidates_respect_custom_caps_and_terminal():
  assert inas.candidates(12, 5) == [(12, 5)]
  assert inas.candidates(3, 2, max_blocks=3, max_stacks=2) == [(3, 2)]
  assert inas.candidates(2, 1, max_stacks=1) == [(2, 1), (3, 1)]
  with pytest.raises(ValueError):
    inas.candidates(13, 1)


def test_worked_examples():
  assert inas.candidates(4, 2) == [(4, 2), (5, 2), (3, 3)]
  assert inas.candidates(12, 4) == [(12, 4), (10, 5)]
  assert models.describe(models.create("resnet_grid", 10, blocks=2, stacks=4), (1, 32, 32, 3))["depth"] == 18


def test_split_is_fixed_and_disjoint():
  labeled = np.arange(100, 200)
  a, b = inas.split_labeled(labeled, 0.8, seed=1)
  a2, b2 = inas.split_labeled(labeled, 0.8, seed=1)
  np.testing.assert_array_equal(a, a2)
  assert a.size == 80 and b.size == 20 and not set(a) & set(b) and set(a) | set(b) == set(labeled)


def test_auc_gain():
  sizes = [2000, 4000, 10000, 15000]
  err = [0.5, 0.4, 0.3, 0.2]
  assert metrics.auc_gain(sizes, err, err) == 0.0
  assert metrics.auc_gain(sizes, err, [e / 2 for e in err]) == pytest.approx(0.5)
  # Non-uniform sizes are integrated by the trapezoid rule, not averaged.
  p, a = [0.4, 0.4, 0.2], [0.2, 0.4, 0.2]
  expected = (0.4 * 1 + 0.3 * 9 - (0.3 * 1 + 0.3 * 9)) / (0.4 * 1 + 0.3 * 9)
  assert metrics.auc_gain([0, 1, 10], p, a) == pytest.approx(expected)
  with pytest.raises(ValueError):
    metrics.auc_gain([1, 1], [0.1, 0.2], [0.1, 0.2])


def test_inas_in_the_loop_grows_monotonically(tmp_path, fast_compiles):
  # One step per compiled block: each candidate's train block compiles 4x faster.
  c = tiny_config(**{"search.name": "inas", "search.epochs": 1, "al.num_rounds": 4, "search.max_blocks": 3,
                     "search.max_stacks": 2, "train.steps_per_call": 1})
  history = loop.run(c, tmp_path)
  chosen = [tuple(r["search"]["chosen"]) for r in history]
  assert history[0]["search"]["start"] == [1, 1]
  depths = [depth(*a) for a in chosen]
  assert depths == sorted(depths)  # capacity never shrinks
  for r, arch in zip(history, chosen):
    assert r["architecture"] == f"resnet_grid({arch[0]},{arch[1]})"
    step = r["search"]["steps"][0]
    assert [(s["blocks"], s["stacks"]) for s in step] == inas.candidates(*tuple(r["search"]["start"]), 3, 2)
    assert all(0 <= s["val_accuracy"] <= 1 for s in step)
    assert r["search"]["split"] == [round(0.8 * r["num_labeled"]), r["num_labeled"] - round(0.8 * r["num_labeled"])]
  for prev, cur in zip(history, history[1:]):
    assert cur["search"]["start"] == prev["search"]["chosen"]
  # Each architecture compiles once per run (init, train block, pool and test forward): a round
  # whose candidates were all trained before and whose choice was already evaluated compiles nothing.
  trained, evaluated = set(), set()
  for r, arch in zip(history, chosen):
    archs = {(s["blocks"], s["stacks"]) for st in r["search"]["steps"] for s in st}
    if archs <= trained and arch in evaluated:
      assert r["compiles"] == 0, r
    trained |= archs
    evaluated.add(arch)
