"""The study runner: grid expansion, resume without rerunning, and the report."""

import ml_collections
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import study
from jaxal.checkpoint import run_files
from tests.conftest import tiny_config


def study_config():
  c = tiny_config(**{"al.num_rounds": 2})
  with c.unlocked():
    c.study = ml_collections.ConfigDict(dict(
        models=ml_collections.ConfigDict(dict(small_cnn=dict(width=4, embed=8))),
        acquisitions="least_confidence", seeds="0,1"))
  return c


def fabricate_runs(c, root, rng) -> dict:
  """Writes a random increasing 3-round curve for every run of the grid; returns them by run."""
  acc = {}
  for run in study.expand(c):
    acc[run] = np.sort(rng.uniform(0.3, 0.9, 3))
    workdir = run.workdir(root)
    workdir.mkdir(parents=True)
    run_files.write_rounds(workdir, [{"round": i, "num_labeled": 20 * (i + 1), "test_accuracy": float(v)}
                                       for i, v in enumerate(acc[run])])
  return acc


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
  acc = fabricate_runs(c, tmp_path, np.random.default_rng(0))
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


def settings_config():
  c = study_config()
  with c.unlocked():
    c.study.seeds = "0"
    c.study.settings = ml_collections.ConfigDict(dict(
        init10=dict(al=dict(initial_size=10)),
        init20_flip=dict(al=dict(initial_size=20), augment=dict(flip=True)),
    ))
  return c


def test_settings_axis_expands_overrides_and_keeps_workdirs_apart():
  c = settings_config()
  runs = study.expand(c)
  assert len(runs) == 1 * 2 * 2 * 1 and {r.setting for r in runs} == {"init10", "init20_flip"}
  assert len({r.workdir("/x") for r in runs}) == len(runs)
  run = next(r for r in runs if r.setting == "init20_flip" and r.acquisition == "random")
  assert run.workdir("/x").as_posix() == "/x/small_cnn/init20_flip/random/seed0"
  rc = study.run_config(c, run)
  assert rc.al.initial_size == 20 and rc.augment.flip and rc.model.name == "small_cnn"
  assert study.run_config(c, next(r for r in runs if r.setting == "init10")).augment.flip is False
  assert study.expand(study_config())[0].workdir("/x").as_posix().count("/") == 4  # no setting level


def test_settings_replace_model_options_and_reject_unknown_fields():
  c = settings_config()
  with c.unlocked():
    c.study.settings = ml_collections.ConfigDict(dict(
        vgg=dict(model=dict(name="vgg11", options=dict(width=4, fc_width=8))),
        typo=dict(al=dict(initial_sise=5)),
    ))
  runs = study.expand(c)
  rc = study.run_config(c, next(r for r in runs if r.setting == "vgg"))
  assert rc.model.name == "vgg11" and dict(rc.model.options) == {"width": 4, "fc_width": 8}  # replaced, not merged
  with pytest.raises(config_lib.ConfigError, match=r"study\.settings\.typo\.al\.initial_sise"):
    study.run_config(c, next(r for r in runs if r.setting == "typo"))
  with pytest.raises(config_lib.ConfigError, match=r"study\.settings\.typo\.al\.initial_sise"):
    study.run_study(c, "/nonexistent/never/created")  # every cell is checked before any compute


def test_report_with_settings_writes_curves_ranking_and_spreads(tmp_path):
  """Fabricated curves: spreads equal a brute-force max - min of the seed means."""
  c = settings_config()
  with c.unlocked():
    c.study.seeds = "0,1"
  acc = fabricate_runs(c, tmp_path, np.random.default_rng(1))
  rows = study.report(c, tmp_path)
  assert {(r["setting"], r["acquisition"]) for r in rows} == {("init10", "least_confidence"),
                                                              ("init20_flip", "least_confidence")}
  text = (tmp_path / "study.md").read_text()
  assert "| small_cnn | init10 | none | least_confidence |" in text
  assert "- small_cnn/init10: least_confidence (" in text
  for name in ("curves_small_cnn.png", "spread_by_architecture.png", "spread_by_acquisition.png", "study.png"):
    assert (tmp_path / name).stat().st_size > 5000, name

  def mean(setting, acq):
    return np.mean([acc[r] for r in acc if r.setting == setting and r.acquisition == acq], axis=0)

  settings, acqs = ["init10", "init20_flip"], ["random", "least_confidence"]
  grid = np.array([[mean(g, q)[-1] for q in acqs] for g in settings])
  line = next(l for l in text.splitlines() if l.startswith("- across architectures"))
  for q, want in zip(acqs, grid.max(0) - grid.min(0)):
    assert f"{q} {want:.3f}" in line
  line = next(l for l in text.splitlines() if l.startswith("- across acquisitions"))
  for g, want in zip(settings, grid.max(1) - grid.min(1)):
    assert f"small_cnn/{g} {want:.3f}" in line


def test_overrides_between_round_trips_through_apply_overrides():
  import copy
  base = tiny_config()
  variant = copy.deepcopy(base)
  with variant.unlocked():
    variant.model.name = "vgg11"
    variant.model.options = ml_collections.ConfigDict(dict(width=4))
    variant.al.initial_size = 33
    variant.augment.flip = True
  diff = study.overrides_between(base, variant)
  assert diff == {"model": {"name": "vgg11", "options": {"width": 4}}, "al": {"initial_size": 33},
                  "augment": {"flip": True}}
  rebuilt = copy.deepcopy(base)
  study.apply_overrides(rebuilt, diff, "x")
  assert rebuilt.to_dict() == variant.to_dict()
  assert study.overrides_between(base, base) == {}


def test_architecture_study_config_expands_to_valid_cells():
  config = config_lib.load_config_file(
      __import__("pathlib").Path(__file__).resolve().parents[1] / "configs" / "study_arch_mnist_cpu.py")
  runs = study.expand(config)
  assert len(runs) == 6 * 4 and {r.setting for r in runs} == {"plain1", "plain5", "plain9", "dd_spo", "bb_spo",
                                                             "dd_joint"}
  for run in runs:
    rc = study.run_config(config, run)
    config_lib.validate(rc)
  rc = study.run_config(config, next(r for r in runs if r.setting == "dd_joint"))
  assert rc.model.name == "depth_dropout" and rc.search.name == "depth_dropout_joint"
  rc = study.run_config(config, next(r for r in runs if r.setting == "plain9"))
  assert rc.model.name == "plain_cnn" and rc.model.options.layers == 9 and rc.search.name == "fixed"


@pytest.mark.slow
def test_study_per_device_launcher_splits_the_grid_and_reports(tmp_path):
  """Two CPU processes through launch/study_per_device.sh: every run once, then one report."""
  import os
  import pathlib
  import subprocess
  import sys
  repo = pathlib.Path(__file__).resolve().parents[1]
  (tmp_path / "tiny_study.py").write_text(
      "import ml_collections\n"
      "from tests.conftest import tiny_config\n"
      "def get_config():\n"
      "  c = tiny_config(**{'al.num_rounds': 2, 'train.epochs': 1})\n"
      "  c.study = ml_collections.ConfigDict(dict(models=dict(small_cnn=dict(width=4, embed=8)),\n"
      "                                           acquisitions='least_confidence', seeds='0,1'))\n"
      "  return c\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(repo), PATH=f"{pathlib.Path(sys.executable).parent}:"
             + os.environ.get("PATH", ""))
  root = tmp_path / "root"
  out = subprocess.run(["bash", str(repo / "launch" / "study_per_device.sh"), "2",
                        f"--config={tmp_path / 'tiny_study.py'}", f"--root={root}"],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  ran = [line for line in out.stdout.splitlines() if ": running in " in line]
  assert len(ran) == 4 and len({line.split("running in ")[1] for line in ran}) == 4
  assert {line[:10] for line in ran} == {"[device 0]", "[device 1]"}
  assert "| small_cnn | none | least_confidence | random | 2 |" in (root / "study.md").read_text()


def test_report_measures_rank_agreement_between_architectures(tmp_path):
  """Spearman's rho of two architectures' gains over random, against scipy on fabricated runs."""
  from scipy import stats
  c = settings_config()
  with c.unlocked():
    c.study.acquisitions = "least_confidence,margin,entropy,bald"
  acc = fabricate_runs(c, tmp_path, np.random.default_rng(2))
  rows = study.report(c, tmp_path)
  gains = {(r["setting"], r["acquisition"]): r["gain_over_random"] for r in rows}
  acqs = ["least_confidence", "margin", "entropy", "bald"]
  for (g, q), got in gains.items():  # one seed: the gain is the mean difference of the curves
    ref = next(v for r, v in acc.items() if r.setting == g and r.acquisition == "random")
    mine = next(v for r, v in acc.items() if r.setting == g and r.acquisition == q)
    assert got == pytest.approx((mine - ref).mean())
  want = stats.spearmanr([gains["init10", q] for q in acqs], [gains["init20_flip", q] for q in acqs])[0]
  assert f"- small_cnn/init10 vs small_cnn/init20_flip: {want:+.2f}" in (tmp_path / "study.md").read_text()
