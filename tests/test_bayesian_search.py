"""Depth-Dropout and BBDropout searches in the loop (joint, SPO and UPO)."""

import json

import ml_collections
import numpy as np
import pytest

from jaxal import arch_report
from jaxal import loop
from jaxal.search import bayesian
from tests.conftest import tiny_config

OPTIONS = {"depth_dropout": {"truncation": 3, "width": 4, "num_samples": 2},
           "bbdropout": {"layers": 3, "width": 4}}


def _config(method, mode):
  """One step per compiled block: the unrolled 4-step block of the Bayesian nets took ~30 s to compile."""
  return tiny_config(**{"search.name": f"{method}_{mode}", "search.epochs": 2, "al.num_rounds": 2,
                        "model.name": method, "model.options": ml_collections.ConfigDict(OPTIONS[method]),
                        "train.optimizer": "adam", "train.lr_schedule": "0:0.003", "train.steps_per_call": 1})


@pytest.mark.parametrize("method,mode", [(m, mode) for m in bayesian.METHODS for mode in ("joint", "spo")])
def test_two_rounds_record_the_readout(tmp_path, method, mode, fast_compiles):
  history = loop.run(_config(method, mode), tmp_path)
  assert len(history) == 2
  lines = [json.loads(l) for l in (tmp_path / "rounds.jsonl").read_text().splitlines()]
  assert [r["round"] for r in lines] == [0, 1]
  for r in lines:
    s = r["search"]
    assert s["method"] == method and s["mode"] == mode and s["model"] == "plain_cnn"
    widths = [int(w) for w in s["model_options"]["widths"].split(",")]
    assert widths == s["widths"] and 1 <= widths[0] <= 4 and all(0 <= w <= 4 for w in widths)
    assert r["architecture"].startswith("plain_cnn") and r["depth"] == sum(1 for w in widths if w)
    if method == "depth_dropout":
      assert len(s["pi"]) == 3 and all(x >= y for x, y in zip(s["pi"], s["pi"][1:]))
      assert len(widths) == max(1, s["depth"]) and len(s["active_filters"]) == 3
    else:
      assert len(s["expected_pi"]) == 3 and s["threshold"] == 0.1 and len(s["pruned_widths"]) == 3
      assert s["pruned_widths"][1:len(widths)] == widths[1:] and not any(s["pruned_widths"][len(widths):])
      assert all(w == sum(p >= 0.1 for p in pis) for w, pis in zip(s["pruned_widths"], s["expected_pi"]))
  fig = arch_report.plot_architecture(lines, tmp_path / "arch.png")
  assert (tmp_path / "arch.png").stat().st_size > 0 and fig["method"] == method and fig["filters"].shape == (2, 3)
  first, second = (l["search"] for l in lines)
  assert first["optimized_round"] == 0 and not first["reused"]
  if mode == "spo":
    assert second["reused"] and second["optimized_round"] == 0 and second["widths"] == first["widths"]
  else:
    assert second["optimized_round"] == 1 and second["num_labeled"] > first["num_labeled"]


@pytest.mark.parametrize("method", bayesian.METHODS)
def test_upo_optimizes_once_on_pseudo_labels(tmp_path, method, monkeypatch, fast_compiles):
  """UPO reads out an architecture trained on the pool without labels, with the KL term on."""
  from jaxal.pretrain import deepcluster  # pylint: disable=g-import-not-at-top
  calls = []
  real = deepcluster.pretrain

  def spy(*args, **kwargs):
    calls.append(kwargs["data_scale"])
    return real(*args, **kwargs)

  monkeypatch.setattr(deepcluster, "pretrain", spy)
  c = _config(method, "upo")
  c.pretrain.batch_size, c.pretrain.clusters_per_class = 32, 2
  history = loop.run(c, tmp_path)
  first, second = (r["search"] for r in history)
  assert first["pool_size"] == 1797 - 200  # digits minus the test split
  assert calls == [pytest.approx(1.0 / first["pool_size"])]  # once, KL scaled by the pool size
  assert first["mode"] == "upo" and first["num_labeled"] == 0
  assert not first["reused"] and second["reused"] and second["widths"] == first["widths"]
  assert np.isfinite(first["elbo_loss"]) and 1 <= first["nonempty_clusters"] <= 20
  assert history[0]["architecture"].startswith("plain_cnn")


def test_architecture_figure_arrays_follow_the_records(tmp_path):
  history = [{"round": 0, "num_labeled": 20},  # no read-out: skipped
             {"round": 1, "num_labeled": 40, "search": {"method": "depth_dropout", "pi": [0.9, 0.5, 0.1],
                                                        "active_filters": [4.0, 2.5, 0.0], "depth": 2, "width": 4}},
             {"round": 2, "num_labeled": 60, "search": {"method": "depth_dropout", "pi": [0.95, 0.7, 0.3],
                                                        "active_filters": [4.0, 3.0, 1.5], "depth": 3, "width": 4}}]
  a = arch_report.plot_architecture(history, tmp_path / "a.png")
  assert a["rounds"] == [1, 2] and a["num_labeled"] == [40, 60] and a["depth"].tolist() == [2, 3]
  assert a["layer_prob"].tolist() == [[0.9, 0.5, 0.1], [0.95, 0.7, 0.3]] and a["filters"][0, 1] == 2.5
  assert (tmp_path / "a.png").stat().st_size > 0
  with pytest.raises(ValueError, match="read-out"):
    arch_report.architecture_by_round(history[:1])


def test_spread_table_matches_numpy(tmp_path):
  accs = {("dd_spo", "entropy"): [0.5, 0.7], ("dd_spo", "random"): [0.4, 0.8],
          ("plain1", "entropy"): [0.3, 0.6], ("plain1", "random"): [0.35, 0.5]}
  table = {k: [{"num_labeled": 100 * (i + 1), "test_accuracy": a} for i, a in enumerate(v)] for k, v in accs.items()}
  t = arch_report.plot_spreads(table, tmp_path)
  assert t["architectures"] == ["dd_spo", "plain1"] and t["acquisitions"] == ["entropy", "random"]
  np.testing.assert_allclose(t["spread_over_acquisitions"], [[0.1, 0.1], [0.05, 0.1]])
  np.testing.assert_allclose(t["spread_over_architectures"], [[0.2, 0.1], [0.05, 0.3]])
  assert (tmp_path / "spread_by_architecture.png").exists() and (tmp_path / "spread_by_acquisition.png").exists()
  with pytest.raises(ValueError, match="missing"):
    arch_report.spread_table({k: v for k, v in table.items() if k != ("plain1", "random")})
