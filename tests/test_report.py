"""Report figures and tables from (synthetic) run directories."""

import numpy as np
import pytest

from jaxal import report
from jaxal.checkpoint import run_files


def _run(path, accs, params=None):
  path.mkdir(parents=True)
  rows = []
  for i, a in enumerate(accs):
    rows.append({"round": i, "num_labeled": 100 * (i + 1), "test_accuracy": a, "num_params": (params or [10] * 9)[i],
                 "depth": 4 + 2 * i, "train_seconds": 1.0, "selection_seconds": 0.5, "search_seconds": 0.2})
  run_files.write_rounds(path, rows)
  return str(path)


def test_groups_means_and_auc_gain(tmp_path, capsys):
  a0 = _run(tmp_path / "a0", [0.5, 0.7, 0.8])
  a1 = _run(tmp_path / "a1", [0.7, 0.9, 1.0])
  r0 = _run(tmp_path / "r0", [0.5, 0.6, 0.7])
  groups = report.group_runs([f"active={a0}", f"active={a1}", f"random={r0}"])
  x, m, se = report.mean_curve(groups["active"])
  np.testing.assert_allclose(m, [0.6, 0.8, 0.9])
  np.testing.assert_allclose(se, [0.1, 0.1, 0.1])
  report.main([f"active={a0}", f"active={a1}", f"random={r0}", "--out", str(tmp_path / "figs"), "--passive", "random"])
  out = capsys.readouterr().out
  gain = [line for line in out.splitlines() if line.startswith("| active")][0].split("|")[-2].strip()
  # errors: active 0.4,0.2,0.1 ; random 0.5,0.4,0.3 -> trapezoids (0.3+0.15)*100 vs (0.45+0.35)*100
  assert float(gain) == pytest.approx((0.8 - 0.45) / 0.8, abs=1e-3)
  for name in ("curves.png", "trajectory.png", "times.png"):
    assert (tmp_path / "figs" / name).stat().st_size > 5000


def test_tensorboard_scalars_follow_rounds(tmp_path):
  pytest.importorskip("tensorboardX")
  from jaxal import loop  # pylint: disable=g-import-not-at-top
  from jaxal import tensorboard  # pylint: disable=g-import-not-at-top
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  history = loop.run(tiny_config(**{"output.tensorboard": True, "al.num_rounds": 2}), tmp_path)
  scalars = tensorboard.read_scalars(tmp_path / "tensorboard")
  steps = [r["num_labeled"] for r in history]
  assert scalars["metrics/test_accuracy"] == [(s, pytest.approx(r["test_accuracy"])) for s, r in zip(steps, history)]
  for tag in ("metrics/test_loss", "time/selection_seconds", "time/train_seconds", "architecture/num_params",
              "architecture/depth"):
    assert [s for s, _ in scalars[tag]] == steps, tag


def test_tensorboard_missing_writer_is_a_config_error(monkeypatch):
  import sys  # pylint: disable=g-import-not-at-top
  from jaxal import config as config_lib  # pylint: disable=g-import-not-at-top
  from jaxal import tensorboard  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(sys.modules, "tensorboardX", None)
  with pytest.raises(config_lib.ConfigError, match=r"pip install 'jaxal\[tensorboard\]'"):
    tensorboard.log_round("/nonexistent", {"round": 0, "num_labeled": 1})


def test_tensorboard_missing_writer_stops_the_run_before_any_work(monkeypatch, tmp_path):
  import sys  # pylint: disable=g-import-not-at-top
  from jaxal import config as config_lib  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(sys.modules, "tensorboardX", None)
  with pytest.raises(config_lib.ConfigError, match="tensorboardX"):
    from jaxal import loop  # pylint: disable=g-import-not-at-top
    from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
    loop.run(tiny_config(**{"output.tensorboard": True}), tmp_path / "run")
  assert not (tmp_path / "run").exists()


def _config(path, acquisition, seed):
  import json  # pylint: disable=g-import-not-at-top
  (path / "config.json").write_text(json.dumps({"seed": seed, "acquisition": {"name": acquisition},
                                                "output": {"verbose": seed == 0}, "al": {"num_rounds": 3}}))


def test_unlabeled_runs_group_by_config_minus_seed(tmp_path):
  dirs = []
  for acquisition, accs in (("bald", [[0.5, 0.7], [0.7, 0.9]]), ("random", [[0.4, 0.6], [0.6, 0.6]])):
    for seed, a in enumerate(accs):
      dirs.append(_run(tmp_path / f"{acquisition}{seed}", a))
      _config(tmp_path / f"{acquisition}{seed}", acquisition, seed)
  dirs.append(_run(tmp_path / "noconfig", [0.1, 0.2]))
  groups = report.group_runs(dirs + [f"mine={dirs[0]}"])
  assert report._name_settings([{"a.name": '"x"', "b.width": "4"}, {"a.name": '"y"', "b.width": "8"}]) == [
      "a=x, width=4", "a=y, width=8"]
  assert {k: len(v) for k, v in groups.items()} == {"bald": 2, "random": 2, "noconfig": 1, "mine": 1}
  np.testing.assert_allclose(report.mean_curve(groups["bald"])[1], [0.6, 0.8])
  paths = report.render(dirs, tmp_path / "figs", passive="random")
  assert "| bald | 2 | 200 | 0.8000 ± 0.1000 |" in paths["table"].read_text()
