"""The study runner: grid expansion, resume without rerunning, and the report."""

import ml_collections
import numpy as np

from jaxal import study
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
