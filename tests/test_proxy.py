"""SVP in the loop: a proxy selects, the target is trained for evaluation, agreement is logged."""

import ml_collections
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import loop
from jaxal import metrics
from jaxal import proxy
from tests.conftest import tiny_config


def svp_config(**overrides):
  c = tiny_config(**overrides)
  c.target.name = "resnet_grid"
  c.target.options = ml_collections.ConfigDict(dict(blocks=1, stacks=2, width=4))
  c.target.epochs = 3
  return c


def test_eval_rounds():
  c = svp_config(**{"al.num_rounds": 5})
  assert proxy.eval_rounds(c) == {4}
  c.target.eval_rounds = "0,2"
  assert proxy.eval_rounds(c) == {0, 2, 4}
  c.target.eval_rounds = "all"
  assert proxy.eval_rounds(c) == {0, 1, 2, 3, 4}
  c.target.eval_rounds = "first"
  with pytest.raises(config_lib.ConfigError, match="target.eval_rounds"):
    config_lib.validate(c)


def test_target_overrides_training_only():
  c = svp_config()
  c.target.lr_schedule = "0:0.3"
  t = proxy.target_train_config(c)
  assert t.epochs == 3 and t.lr_schedule == "0:0.3" and c.train.epochs == 2 and t.batch_size == c.train.batch_size


@pytest.mark.parametrize("acq", ["least_confidence", "random"])
def test_svp_round_records(tmp_path, acq):
  c = svp_config(**{"target.eval_rounds": "0", "acquisition.name": acq})
  history = loop.run(c, tmp_path)
  assert [("target_test_accuracy" in r) for r in history] == [True, False, True]
  first, last = history[0], history[-1]
  assert first["architecture"] == "resnet_grid(1,1)" and first["target_architecture"] == "resnet_grid(1,2)"
  assert first["target_num_params"] > first["num_params"]
  assert 0 <= first["topk_overlap"] <= 1
  if acq == "least_confidence":
    assert -1 <= first["spearman"] <= 1 and -1 <= first["pearson"] <= 1
  assert "topk_overlap" not in last  # the last round selects nothing
  assert metrics.selection_runtime(history) == pytest.approx(
      sum(r["train_seconds"] + r["selection_seconds"] + r["search_seconds"] for r in history[:2]))


class FixedPredictor:
  def __init__(self, probs):
    self._probs = probs

  def probs(self):
    return self._probs


def test_agreement_of_identical_and_opposite_scorers():
  from jaxal.data import pool as pool_lib
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(2), size=40).astype(np.float32)
  pool = pool_lib.PoolState.empty(40).label(np.arange(10), np.zeros(10, np.int32))
  c = tiny_config()
  same = proxy.agreement(c, pool, FixedPredictor(probs), FixedPredictor(probs), np.arange(10, 15), None)
  assert same == {"spearman": pytest.approx(1.0), "pearson": pytest.approx(1.0), "topk_overlap": 1.0}
  # With two classes, a model whose confidence ranking is reversed disagrees completely.
  margin = np.abs(probs[:, 0] - 0.5)
  flipped = np.stack([0.5 + (0.5 - margin), 0.5 - (0.5 - margin)], axis=1).astype(np.float32)
  opposite = proxy.agreement(c, pool, FixedPredictor(probs), FixedPredictor(flipped), np.arange(10, 15), None)
  assert opposite["spearman"] == pytest.approx(-1.0, abs=1e-6) and opposite["topk_overlap"] == 0.0


def _fake_run(path, seconds, accuracy, target=True):
  from jaxal.checkpoint import run_files
  path.mkdir()
  rows = [{"round": 0, "num_labeled": 10, "test_accuracy": 0.5, "architecture": "small", "train_seconds": seconds,
           "selection_seconds": 1.0, "search_seconds": 0.0, "queried": 10, "spearman": 0.5, "topk_overlap": 0.4},
          {"round": 1, "num_labeled": 20, "test_accuracy": accuracy, "architecture": "small",
           "train_seconds": 99.0, "selection_seconds": 0.0, "search_seconds": 0.0, "queried": 0}]
  if target:
    rows[-1].update(target_test_accuracy=accuracy, target_architecture="big")
  run_files.write_rounds(path, rows)


def test_svp_report_table(tmp_path, capsys):
  from jaxal import svp_report
  _fake_run(tmp_path / "base0", 9.0, 0.90, target=False)
  _fake_run(tmp_path / "base1", 9.0, 0.92, target=False)
  _fake_run(tmp_path / "proxy0", 1.0, 0.91)
  _fake_run(tmp_path / "proxy1", 1.0, 0.91)
  svp_report.main(["--baseline", str(tmp_path / "base0"), str(tmp_path / "base1"),
                   "--proxy", str(tmp_path / "proxy0"), str(tmp_path / "proxy1")])
  out = capsys.readouterr().out
  proxy_row = [line for line in out.splitlines() if line.startswith("| proxy0")][0]
  assert "5.00x" in proxy_row  # (9 + 1) / (1 + 1): the final, non-selecting round is excluded
  assert "**9.00" in proxy_row  # within one std of the baseline's error
  assert "0.500" in proxy_row
