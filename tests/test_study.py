"""The study runner: grid expansion, resume without rerunning, and the report."""

import ml_collections
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import study
from jaxal import workdir as workdir_lib
from tests.conftest import tiny_config


def study_config():
  c = tiny_config(**{"al.num_rounds": 2})
  with c.unlocked():
    c.study = ml_collections.ConfigDict(dict(
        models=ml_collections.ConfigDict(dict(small_cnn=dict(width=4, embed=8))),
        acquisitions="least_confidence", seeds="0,1"))
  return c


def test_expand_adds_random_and_covers_the_grid():
  runs = study.expand(study_config())
  assert len(runs) == 1 * 2 * 2
  assert {r.acquisition for r in runs} == {"random", "least_confidence"}
  c = study.run_config(study_config(), runs[-1])
  assert c.model.name == "small_cnn" and c.seed == 1 and "study" not in c


def test_study_resumes_and_reports(tmp_path):
  c = study_config()
  first = study.run_study(c, tmp_path, process_index=0, num_processes=2)  # half of the grid
  assert len(first) == 2
  second = study.run_study(c, tmp_path)  # the rest; finished runs are skipped
  assert len(second) == 2 and not set(first) & set(second)
  assert study.run_study(c, tmp_path) == []  # nothing left to run
  rows = study.report(c, tmp_path)
  assert {(r["model"], r["acquisition"]) for r in rows} == {("small_cnn", "least_confidence")}
  for r in rows:
    assert r["seeds"] == 2 and np.isfinite(r["gain_over_random"])
  assert (tmp_path / "study.md").exists() and (tmp_path / "study.png").stat().st_size > 5000


def test_every_entry_point_imports_in_one_process():
  """Flags are defined only when a module runs as a program, so the modules import together."""
  import importlib
  for name in ("jaxal.main", "jaxal.study", "jaxal.cli", "jaxal.report", "jaxal.svp_report"):
    importlib.import_module(name)


def test_pretraining_axis_expands_and_sets_the_run_config():
  c = study_config()
  with c.unlocked():
    c.study.pretrain = "none,deepcluster"
  runs = study.expand(c)
  assert len(runs) == 2 * 2 * 2 and {r.pretrain for r in runs} == {"none", "deepcluster"}
  assert len({r.workdir("/x") for r in runs}) == len(runs)
  plain = next(r for r in runs if r.pretrain == "none")
  assert plain.workdir("/x").as_posix() == f"/x/small_cnn/{plain.acquisition}/seed{plain.seed}"  # old layout kept
  pre = next(r for r in runs if r.pretrain == "deepcluster")
  assert study.run_config(c, pre).pretrain.name == "deepcluster"
  assert study.run_config(c, plain).pretrain.name == "none"
  assert study.run_config(c, pre, "/x").pretrain.cache_dir == "/x/pretrained"  # shared across acquisitions
  assert study.run_config(c, plain, "/x").pretrain.cache_dir == ""
  with c.unlocked():
    c.study.pretrain = "none,simclr"
  with pytest.raises(config_lib.ConfigError, match=r"study\.pretrain"):
    study.expand(c)


def test_report_pairs_pretrained_runs_with_pretrained_random(tmp_path):
  """Fabricated curves: each row's gain is its mean difference from the right random curve."""
  c = study_config()
  with c.unlocked():
    c.study.pretrain = "none,deepcluster"
  rng = np.random.default_rng(0)
  acc = {}
  for run in study.expand(c):
    a = np.sort(rng.uniform(0.3, 0.9, 3))
    acc[run] = a
    workdir = run.workdir(tmp_path)
    workdir.mkdir(parents=True)
    workdir_lib.write_rounds(workdir, [{"round": i, "num_labeled": 20 * (i + 1), "test_accuracy": float(v)}
                                       for i, v in enumerate(a)])
  rows = {(r["pretrain"], r["acquisition"]): r for r in study.report(c, tmp_path)}
  assert set(rows) == {("none", "least_confidence"), ("deepcluster", "least_confidence"), ("deepcluster", "random")}

  def curve(pre, acq):
    return np.stack([acc[r] for r in sorted(acc, key=lambda r: r.seed) if r.pretrain == pre and r.acquisition == acq])

  for (pre, acq), ref in (((("none", "least_confidence")), ("none", "random")),
                          (("deepcluster", "least_confidence"), ("deepcluster", "random")),
                          (("deepcluster", "random"), ("none", "random"))):
    want = (curve(pre, acq) - curve(*ref)).mean()
    assert rows[(pre, acq)]["gain_over_random"] == pytest.approx(want)
  assert rows[("deepcluster", "random")]["reference"] == "random (no pretraining)"
  assert rows[("deepcluster", "least_confidence")]["reference"] == "random"
  assert "| deepcluster | random | random (no pretraining) |" in (tmp_path / "study.md").read_text()
