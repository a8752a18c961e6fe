"""Hostile runs: misspelt config-file fields, out-of-range numbers, a diverging learning rate,
unusable workdirs, and corrected reruns that used to be refused.

Each bad input ends as ONE line `error: ...` naming the field or path, exit code 2, no
traceback, and a workdir left as it was.
"""

import builtins
import contextlib
import errno
import io
import math
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import config_schema
from jaxal import main
from jaxal.checkpoint import run_files
from jaxal.train import trainer as trainer_lib
from tests.conftest import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _execute(config, workdir, capsys, **kwargs):
  code = main.execute(config, str(workdir), **kwargs)
  err = capsys.readouterr().err
  return code, [line for line in err.splitlines() if line.strip()]


def _snapshot(workdir: pathlib.Path) -> dict:
  return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()}


def _assert_one_line_error(code, lines, *fragments):
  assert code == 2, lines
  assert len(lines) == 1 and lines[0].startswith("error: "), lines
  for fragment in fragments:
    assert fragment in lines[0], lines


# --- config files and numeric ranges ---------------------------------------------------------

MISSPELT_FILE = """
from jaxal import config as config_lib
from tests.conftest import tiny_config


def get_config():
  c = tiny_config()
  {line}
  return c
"""


@pytest.mark.parametrize("line,field", [
    ("c.train.epochz = 50", "train.epochz"),
    ("c.search.pdarts.lrr = 0.1", "search.pdarts.lrr"),
    ("c.trian = dict(epochs=3)", "trian"),
])
def test_misspelt_field_in_config_file_is_refused(line, field, tmp_path):
  path = tmp_path / "cfg.py"
  path.write_text(MISSPELT_FILE.format(line=line))
  config = config_lib.load_config_file(path)
  with pytest.raises(config_lib.ConfigError, match=rf"^{field}: the config has no such field"):
    config_lib.validate(config)


def test_misspelt_field_in_config_file_exits_2_from_the_command_line(tmp_path):
  """The path `python -m jaxal.main --config=FILE` takes (ml_collections' config_flags)."""
  path = tmp_path / "cfg.py"
  path.write_text(MISSPELT_FILE.format(line="c.train.epochz = 50"))
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAXAL_HUGE_PAGES="0", PYTHONPATH=str(ROOT))
  out = subprocess.run([sys.executable, "-m", "jaxal.main", f"--config={path}", f"--workdir={tmp_path / 'work'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
  errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
  assert out.returncode == 2, out.stderr
  assert errors == ["error: train.epochz: the config has no such field; did you mean train.epochs?"], out.stderr
  assert "Traceback" not in out.stderr
  assert not (tmp_path / "work").exists()


def test_study_section_and_free_form_options_are_not_misspellings():
  c = tiny_config()
  with c.unlocked():
    c.study = ml_collections.ConfigDict(dict(models={"small_cnn": {}}, acquisitions="random", seeds="0"))
  c.model.options.width = 8
  config_schema.check_fields(c, config_lib.base_config())


OUT_OF_RANGE = [
    ({"seed": -1}, "seed: must be an integer in [0, 4294967295], got -1"),
    ({"data.seed": -1}, "data.seed: must be an integer in [0, 4294967295], got -1"),
    ({"model.options.dropout": 2.0}, "model.options.dropout: must be a finite number in [0, 1), got 2.0"),
    ({"acquisition.name": "bald", "acquisition.options.mc_samples": 0}, "acquisition.options.mc_samples"),
    ({"train.lr_schedule": "0:inf"}, "train.lr_schedule: learning rate inf must be a finite number in (0, 1000]"),
    ({"train.lr_schedule": "0:0.1,1:1e30"}, "train.lr_schedule: learning rate 1e+30 must be"),
    ({"target.lr_schedule": "0:nan"}, "target.lr_schedule: learning rate nan"),
    ({"train.weight_decay": math.inf}, "train.weight_decay: must be a finite number >= 0, got inf"),
    ({"train.momentum": 1.0}, "train.momentum: must be a finite number in [0, 1), got 1.0"),
    ({"pretrain.lr": math.inf}, "pretrain.lr: must be a finite number in (0, 1000], got inf"),
    ({"search.split_seed": -3}, "search.split_seed"),
    ({"search.pdarts.grad_clip": math.nan}, "search.pdarts.grad_clip"),
    ({"augment.max_degrees": math.nan}, "augment.max_degrees"),
    ({"data.image_shape": (8, -1)}, "data.image_shape"),
]


@pytest.mark.parametrize("overrides,message", OUT_OF_RANGE, ids=[m.split(":")[0] for _, m in OUT_OF_RANGE])
def test_out_of_range_numbers_are_one_line_errors(overrides, message, tmp_path, capsys):
  code, lines = _execute(tiny_config(**overrides), tmp_path / "work", capsys)
  _assert_one_line_error(code, lines, f"error: {message}")
  assert not (tmp_path / "work").exists()


def test_every_numeric_field_has_a_range():
  def numeric(node, prefix=""):
    for key, value in node.items():
      if key in config_schema.FREE_FORM:
        continue
      if hasattr(value, "items"):
        yield from numeric(value, f"{prefix}{key}.")
      elif isinstance(value, (int, float, tuple)) and not isinstance(value, bool):
        yield f"{prefix}{key}"
  known = set(config_schema.RANGES) | set(config_schema.TUPLE_RANGES) | set(config_schema.SHAPES)
  assert set(numeric(config_lib.base_config())) - known == set()


# --- divergence ---------------------------------------------------------------------------------


def _steps(workdir: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def story(tmp_path_factory):
  """One workdir through a user's fixes, one at a time (two trainings in all, for the suite's
  time): a data path that does not exist, then a diverging learning rate, then the fix."""
  root = tmp_path_factory.mktemp("story")
  work, out = root / "work", {}
  for name, overrides in (("bad_data", {"data.source": "npz", "data.path": str(root / "missing.npz")}),
                          # lr * weight_decay = 1e4 scales the conv kernels by about -1e4 a step
                          ("diverged", {"train.lr_schedule": "0:1000", "train.weight_decay": 10.0}),
                          ("fixed", {})):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
      code = main.execute(tiny_config(**{"al.num_rounds": 1, **overrides}), str(work))
    out[name] = dict(code=code, lines=[line for line in err.getvalue().splitlines() if line.strip()],
                     steps=_steps(work) if (work / "checkpoints").exists() else [],
                     rounds=run_files.read_rounds(work), files=sorted(_snapshot(work)))
  return work, out


def test_diverging_lr_names_round_and_lr_and_saves_nothing(story):
  diverged = story[1]["diverged"]
  _assert_one_line_error(diverged["code"], diverged["lines"], "error: round 0: training diverged", "(lr 1000)",
                         "train.lr_schedule")
  assert diverged["steps"] == [0]  # only the initial set awaiting labels; no checkpoint of round 0
  assert diverged["rounds"] == []


def test_run_that_never_finished_round_0_takes_the_corrected_config(story):
  """Before: the rerun after a bad data path was refused as "a different config"; so was the
  lower learning rate after the divergence (the step-0 checkpoint holds the same initial set)."""
  bad_data, diverged, fixed = (story[1][k] for k in ("bad_data", "diverged", "fixed"))
  _assert_one_line_error(bad_data["code"], bad_data["lines"], "missing.npz")
  assert "config.json" in bad_data["files"]  # what the next run used to compare against
  assert "different config" not in diverged["lines"][0]
  assert fixed["code"] == 0 and fixed["lines"] == []
  assert [(r["round"], r["num_labeled"]) for r in fixed["rounds"]] == [(0, 20)]


def test_divergence_in_a_single_step_is_caught():
  """The only step's loss is computed before its update, so the weights themselves are checked."""
  c = config_lib.base_config().train
  c.batch_size, c.epochs, c.epoch_size, c.steps_per_call, c.lr_schedule = 16, 1, 16, 1, "0:1e30"
  from jaxal import models
  from jaxal.data import augment, pipeline
  x = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 1), dtype=np.uint8)
  y = np.arange(32, dtype=np.int32) % 2
  model = models.create("resnet_grid", 2, blocks=1, stacks=1, width=4)
  t = trainer_lib.Trainer(model, c, pipeline.make_preprocess(x, "image", "per_channel"), augment.AugmentConfig(),
                          (8, 8, 1), np.uint8)
  with pytest.raises(trainer_lib.TrainingDiverged, match=r"outputs became NaN or inf by epoch 1 \(lr 1e\+30\)"):
    t.fit(jax.random.key(0), jax.numpy.asarray(x), y, np.arange(32))


# --- workdirs -----------------------------------------------------------------------------------


@pytest.fixture
def finished(story, tmp_path):
  work = tmp_path / "work"
  shutil.copytree(story[0], work)
  return work


def _read_only(monkeypatch, root: pathlib.Path):
  """Every write, create, rename or delete under `root` fails with EROFS, as on a read-only
  mount (tests run as root, where chmod does not stop writes)."""
  root = os.path.abspath(root)

  def refuse_under(path):
    if isinstance(path, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(path)).startswith(root):
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

  real_open, real_os_open = builtins.open, os.open

  def fake_open(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+"):
      refuse_under(file)
    return real_open(file, mode, *args, **kwargs)

  def fake_os_open(path, flags, *args, **kwargs):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC):
      refuse_under(path)
    return real_os_open(path, flags, *args, **kwargs)

  monkeypatch.setattr(builtins, "open", fake_open)
  monkeypatch.setattr(io, "open", fake_open)
  monkeypatch.setattr(os, "open", fake_os_open)
  for name in ("mkdir", "rename", "replace", "unlink", "remove", "rmdir"):
    real = getattr(os, name)
    monkeypatch.setattr(os, name, lambda path, *a, _real=real, **k: (refuse_under(path), _real(path, *a, **k))[1])


def test_read_only_workdir_of_a_finished_run(finished, monkeypatch, capsys):
  before = _snapshot(finished)
  _read_only(monkeypatch, finished)
  code, lines = _execute(tiny_config(**{"al.num_rounds": 1}), finished, capsys)
  monkeypatch.undo()
  _assert_one_line_error(code, lines, str(finished), "Read-only file system")
  assert _snapshot(finished) == before


def test_workdir_write_failure_names_the_file_and_leaves_nothing(tmp_path, monkeypatch, capsys):
  """An OSError from a workdir write (here a full disk at `config.json`) is one line naming it."""
  work = tmp_path / "work"
  real_fsync = os.fsync

  def full_disk(fd):
    if os.readlink(f"/proc/self/fd/{fd}").startswith(str(work)):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_fsync(fd)

  monkeypatch.setattr(os, "fsync", full_disk)
  code, lines = _execute(tiny_config(), work, capsys)
  monkeypatch.undo()
  _assert_one_line_error(code, lines, f"error: {work / 'config.json'}: No space left on device")
  assert not [name for name in _snapshot(work) if name.startswith("config.json")]  # nor config.json.tmp


def test_workdir_that_is_a_file(tmp_path, capsys):
  work = tmp_path / "work"
  work.write_text("not a directory")
  code, lines = _execute(tiny_config(), work, capsys)
  _assert_one_line_error(code, lines, f"error: workdir {work} is a file, not a directory")
  assert work.read_text() == "not a directory"


def test_truncated_config_json(finished, capsys):
  path = finished / "config.json"
  path.write_text(path.read_text()[:100])
  before = _snapshot(finished)
  code, lines = _execute(tiny_config(**{"al.num_rounds": 1}), finished, capsys)
  _assert_one_line_error(code, lines, f"error: {path} is damaged (JSONDecodeError", "--force")
  assert _snapshot(finished) == before


# --- refusals that should not happen -------------------------------------------------------------


def test_oracle_fields_change_without_force(finished, capsys):
  code, lines = _execute(tiny_config(**{"al.num_rounds": 1, "oracle.allow_partial": True}), finished, capsys)
  assert code == 0 and lines == []
  assert '"allow_partial": true' in (finished / "config.json").read_text()


def test_a_started_run_still_refuses_a_different_config(finished, capsys):
  before = _snapshot(finished)
  code, lines = _execute(tiny_config(**{"al.num_rounds": 1, "train.lr_schedule": "0:0.01"}), finished, capsys)
  _assert_one_line_error(code, lines, "different config", "train.lr_schedule")
  assert _snapshot(finished) == before


def test_a_study_cell_on_bad_input_is_one_line_naming_the_run(tmp_path):
  """`jaxal.study` stops on a cell's bad input with the one line `jaxal.main` gives, naming the cell."""
  import ml_collections
  from jaxal import errors
  from jaxal import study
  c = tiny_config(**{"al.num_rounds": 2})
  with c.unlocked():
    c.study = ml_collections.ConfigDict(dict(
        models=ml_collections.ConfigDict(dict(small_cnn=dict(width=4, embed=8))),
        acquisitions="least_confidence", seeds="0"))
  first = study.expand(c)[0]
  blocker = first.workdir(tmp_path)
  blocker.parent.mkdir(parents=True, exist_ok=True)
  blocker.write_text("not a folder")
  with pytest.raises(errors.RunFailed) as failed:
    study.run_study(c, tmp_path)
  text = str(failed.value)
  assert str(first) in text and "is a file, not a directory" in text and "\n" not in text
  assert isinstance(failed.value, errors.USER_ERRORS)  # study.main prints it as one line, exit 2
