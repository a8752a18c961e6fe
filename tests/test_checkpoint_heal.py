"""Damaged checkpoints: a rerun heals an unreadable latest one and refuses when none can be read.

Orbax skips `save(step)` for a step at or below its latest one, so a damaged latest folder that
stays in place is never rewritten; and a run that finds nothing readable must not start over
from round 0 over a `rounds.jsonl` that says otherwise.
"""

import csv
import shutil

import pytest

from jaxal import checkpoint
from jaxal import cli
from jaxal import main as jaxal_main
from jaxal.checkpoint import run_files
from tests.conftest import tiny_config

DETERMINISTIC = ("round", "num_labeled", "test_accuracy", "test_loss", "architecture", "queried")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A finished 3-round run: checkpoints 1, 2, 3 and rounds of 20, 40 and 60 labels."""
  workdir = tmp_path_factory.mktemp("finished")
  assert jaxal_main.execute(tiny_config(), str(workdir)) == 0
  return workdir


def _copy(finished_run, tmp_path):
  copy = tmp_path / "run"
  shutil.copytree(finished_run, copy)
  (copy / "run.lock").unlink(missing_ok=True)
  return copy


def _damage(step_folder):
  """Truncates every file of a step folder: to nothing, or to its first 3 bytes."""
  for i, f in enumerate(sorted(p for p in step_folder.rglob("*") if p.is_file())):
    f.write_bytes(f.read_bytes()[:3 * (i % 2)])


def _steps(workdir):
  ckpts = checkpoint.RunCheckpoints(workdir)
  try:
    return ckpts.manager.all_steps()
  finally:
    ckpts.close()


def _snapshot(workdir):
  """Every file under checkpoints/ with its bytes, and rounds.jsonl's bytes."""
  files = {str(p.relative_to(workdir)): p.read_bytes() for p in (workdir / "checkpoints").rglob("*") if p.is_file()}
  return files, (workdir / "rounds.jsonl").read_bytes()


def _error_lines(capsys):
  return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def _exported(workdir):
  with open(cli.export_labels(workdir), newline="") as f:
    return [int(r["index"]) for r in csv.DictReader(f)]


def test_damaged_latest_checkpoint_is_moved_aside_and_its_round_redone(finished_run, tmp_path, capsys):
  work = _copy(finished_run, tmp_path)
  reference = run_files.read_rounds(finished_run)
  _damage(work / "checkpoints" / "3")
  # export-labels does not fall back to checkpoint 2's 40 labels while rounds.jsonl says 60.
  with pytest.raises(SystemExit, match=r"checkpoints/3 is unreadable .*Rerun the run command"):
    cli.export_labels(work)

  capsys.readouterr()
  assert jaxal_main.execute(tiny_config(), str(work)) == 0
  warnings = [line for line in capsys.readouterr().err.splitlines() if "moved it aside" in line]
  assert len(warnings) == 1 and "checkpoints/3 is unreadable" in warnings[0]
  aside = [p.name for p in (work / "checkpoints").iterdir() if "corrupt" in p.name]
  assert len(aside) == 1 and aside[0].startswith("3.corrupt-")
  assert _steps(work) == [1, 2, 3]  # a fresh step 3, and orbax does not read the moved folder as a step
  rows = run_files.read_rounds(work)
  assert [{k: r[k] for k in DETERMINISTIC} for r in rows] == [{k: r[k] for k in DETERMINISTIC} for r in reference]
  ckpts = checkpoint.RunCheckpoints(work)
  pool, _, meta = ckpts.latest()  # readable, and it backs exactly what rounds.jsonl says
  ckpts.close()
  assert pool.round == 3 and pool.num_labeled == 60 and meta["finished"]

  healed = _snapshot(work)
  assert jaxal_main.execute(tiny_config(), str(work)) == 0  # healed: a second rerun changes nothing
  assert _snapshot(work) == healed and _steps(work) == [1, 2, 3]

  exported = _exported(work)
  assert len(exported) == rows[-1]["num_labeled"] == 60
  assert exported == _exported(finished_run)


def test_no_readable_checkpoint_refuses_and_changes_nothing(finished_run, tmp_path, capsys):
  work = _copy(finished_run, tmp_path)
  for step in (1, 2, 3):
    _damage(work / "checkpoints" / str(step))
  before = _snapshot(work)
  capsys.readouterr()
  assert jaxal_main.execute(tiny_config(), str(work)) == 2
  errors = _error_lines(capsys)
  assert len(errors) == 1 and "no checkpoint of this run can be read" in errors[0]
  assert all(f"checkpoints/{step} (" in errors[0] for step in (1, 2, 3))
  assert _snapshot(work) == before  # rounds.jsonl byte-identical, nothing moved aside or saved
  assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["1", "2", "3"]


def test_rounds_without_any_checkpoint_refuse(finished_run, tmp_path, capsys):
  work = _copy(finished_run, tmp_path)
  shutil.rmtree(work / "checkpoints")
  rounds = (work / "rounds.jsonl").read_bytes()
  capsys.readouterr()
  assert jaxal_main.execute(tiny_config(), str(work)) == 2
  errors = _error_lines(capsys)
  assert len(errors) == 1 and "rounds.jsonl holds rounds" in errors[0]
  assert (work / "rounds.jsonl").read_bytes() == rounds
  assert not _steps(work)  # no fresh step 0 was saved


def test_export_labels_refuses_when_rounds_disagree_with_the_checkpoint(finished_run, tmp_path):
  work = _copy(finished_run, tmp_path)
  lines = (work / "rounds.jsonl").read_text().splitlines(keepends=True)
  (work / "rounds.jsonl").write_text("".join(lines[:2]))
  with pytest.raises(SystemExit, match=r"rounds.jsonl \(2 rounds\) disagrees with checkpoint .*checkpoints/3 "
                                       r"\(3 rounds\).*Rerun the run command"):
    cli.export_labels(work)
  # The run command heals it: the checkpoint backs three rounds, and rounds.jsonl gets them back.
  assert jaxal_main.execute(tiny_config(), str(work)) == 0
  assert (work / "rounds.jsonl").read_bytes() == (finished_run / "rounds.jsonl").read_bytes()
  assert len(_exported(work)) == 60


def test_an_extended_run_replaces_its_stale_last_checkpoint(tmp_path):
  """Extending a finished run redoes its last round, which must save that step afresh."""
  assert jaxal_main.execute(tiny_config(**{"al.num_rounds": 2}), str(tmp_path)) == 0
  assert jaxal_main.execute(tiny_config(**{"al.num_rounds": 3}), str(tmp_path), force=True) == 0
  ckpts = checkpoint.RunCheckpoints(tmp_path)
  _, _, step_2 = ckpts.restore(2)
  ckpts.close()
  assert [r["queried"] for r in step_2["history"]] == [20, 20]  # not the 2-round run's [20, 0]
  assert [r["num_labeled"] for r in run_files.read_rounds(tmp_path)] == [20, 40, 60]
