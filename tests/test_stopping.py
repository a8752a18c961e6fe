"""Stopping rules: kappa and entropies against references; a run that stops itself."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from jaxal import config as config_lib
from jaxal import loop
from jaxal import stopping
from jaxal.checkpoint import run_files
from tests.conftest import tiny_config


@pytest.mark.parametrize("seed", range(4))
def test_cohen_kappa_matches_sklearn(seed):
  rng = np.random.default_rng(seed)
  a = rng.integers(0, 4, 300)
  b = np.where(rng.random(300) < 0.7, a, rng.integers(0, 4, 300))
  assert stopping.cohen_kappa(a, b, 4) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
  assert stopping.cohen_kappa(np.zeros(5, int), np.zeros(5, int), 3) == 1.0


def test_entropy_rules_match_numpy():
  rng = np.random.default_rng(0)
  p = rng.dirichlet(np.full(5, 0.3), size=200).astype(np.float32)
  unlabeled = rng.random(200) < 0.6
  h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), -1) / np.log(5)
  for rule, want in (("overall_uncertainty", h[unlabeled].mean()), ("max_confidence", h[unlabeled].max())):
    al = config_lib.base_config().al
    al.stop, al.stop_threshold = rule, float(want) + 1e-3  # just above the value: fires
    record, _ = stopping.evaluate(al, jnp.asarray(p), unlabeled, np.arange(10), [], None)
    assert record["value"] == pytest.approx(want, rel=1e-5) and record["fired"]
    al.stop_threshold = float(want) - 1e-3
    assert not stopping.evaluate(al, jnp.asarray(p), unlabeled, np.arange(10), [], None)[0]["fired"]


def test_stop_set_is_fixed_per_seed():
  a, b, c = stopping.stop_set(1000, 50, 3), stopping.stop_set(1000, 50, 3), stopping.stop_set(1000, 50, 4)
  np.testing.assert_array_equal(a, b)
  assert len(set(a.tolist())) == 50 and not np.array_equal(a, c)
  assert stopping.stop_set(30, 50, 0).tolist() == list(range(30))


@pytest.mark.parametrize("field,value", [("al.stop", "patience"), ("al.stop_threshold", -1.0)])
def test_bad_stop_config_is_refused(field, value):
  with pytest.raises(config_lib.ConfigError, match=field.replace(".", r"\.")):
    config_lib.validate(tiny_config(**{field: value}))


def test_stabilizing_predictions_stop_the_run_and_a_rerun_finds_it_finished(tmp_path):
  """Threshold 0: fires as soon as three kappas exist (round 3). The record holds each kappa and
  their mean; that round queries nothing, the run ends, the curve marks it, and a rerun does
  nothing."""
  c = tiny_config(**{"al.num_rounds": 6, "al.stop": "stabilizing_predictions", "al.stop_threshold": 1e-9,
                     "al.stop_set_size": 100, "output.plot": True})
  history = loop.run(c, tmp_path)
  assert [r["round"] for r in history] == [0, 1, 2, 3]
  stops = [r["stop"] for r in history]
  assert stops[0]["kappa"] is None and all(s["kappa"] is not None for s in stops[1:])
  assert [s["fired"] for s in stops] == [False, False, False, True]
  assert stops[3]["value"] == pytest.approx(np.mean([s["kappa"] for s in stops[1:]]))
  assert [r["queried"] for r in history] == [20, 20, 20, 0]
  assert json.loads(json.dumps(history)) == run_files.read_rounds(tmp_path)
  assert (tmp_path / "curves.png").exists()
  assert loop.run(c, tmp_path) == history  # finished: nothing more to do


def test_overall_uncertainty_fires_in_round_zero(tmp_path):
  history = loop.run(tiny_config(**{"al.stop": "overall_uncertainty", "al.stop_threshold": 1.0}), tmp_path)
  assert len(history) == 1 and history[0]["queried"] == 0 and history[0]["stop"]["fired"]
