"""One run per workdir (`jaxal.checkpoint.lock`) and no silent change of its data (`jaxal.checkpoint.data_file`)."""

import errno
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxal import loop
from jaxal import main as main_lib
from jaxal.checkpoint import data_file
from jaxal.checkpoint import lock as lock_lib
from jaxal.checkpoint import run_files
from jaxal.data import datasets
from jaxal.data import fingerprint
from tests.conftest import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROUNDS = 2
# What a run decides, not how long it took.
FIELDS = ("round", "num_labeled", "test_accuracy", "test_loss", "queried", "architecture", "num_params", "epochs",
          "train_accuracy", "train_loss")


def _decisions(workdir) -> list[dict]:
  return [{k: row[k] for k in FIELDS} for row in run_files.read_rounds(workdir)]


def _write_digits_npz(path, order=None):
  images, labels = datasets.read_digits()
  order = np.arange(len(labels)) if order is None else order
  np.savez(path, x=(images[order] / 16).astype(np.float32), y=labels[order])


def _config(npz, num_rounds=ROUNDS):
  """The tiny config on an npz file (written into the subprocess test's config file as well)."""
  return tiny_config(**{"data.source": "npz", "data.path": str(npz), "al.num_rounds": num_rounds})


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory) -> pathlib.Path:
  path = tmp_path_factory.mktemp("data") / "digits.npz"
  _write_digits_npz(path)
  return path


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory, digits_npz) -> pathlib.Path:
  """A single uninterrupted run of the tiny config, in process, on a workdir whose lock file a
  killed run left behind (its PID recorded; the lock itself went with the process)."""
  workdir = tmp_path_factory.mktemp("reference")
  (workdir / "run.lock").write_text(json.dumps({"pid": 999999999, "host": "crashed-host"}))
  loop.run(_config(digits_npz), workdir)
  return workdir


@pytest.fixture(scope="module")
def reference(reference_dir) -> list[dict]:
  return _decisions(reference_dir)


def test_two_runs_started_at_once_one_runs_and_the_other_exits_2(tmp_path, digits_npz, reference):
  """Before: both ran (hung ~300 s inside orbax, or ran every round twice). After: the second
  stops with exit code 2 and the holder's PID and host, before loading data or compiling."""
  config_file = tmp_path / "tiny.py"
  overrides = {"data.source": "npz", "data.path": str(digits_npz), "al.num_rounds": ROUNDS, "output.verbose": True}
  config_file.write_text("from tests.conftest import tiny_config\n"
                         f"def get_config():\n  return tiny_config(**{overrides!r})\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAXAL_HUGE_PAGES="0")
  workdir = tmp_path / "shared"
  procs = []
  for i in range(2):
    with open(tmp_path / f"out{i}", "w") as out, open(tmp_path / f"err{i}", "w") as err:
      procs.append(subprocess.Popen([sys.executable, "-m", "jaxal.main", f"--config={config_file}",
                                     f"--workdir={workdir}"], cwd=ROOT, env=env, stdout=out, stderr=err))
  ended = {}
  try:
    deadline = time.monotonic() + 300
    while len(ended) < 2 and time.monotonic() < deadline:
      for i, p in enumerate(procs):
        if i not in ended and p.poll() is not None:
          ended[i] = time.monotonic()
      time.sleep(0.05)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert len(ended) == 2, "a run did not finish in 300 s"
  codes = [p.returncode for p in procs]
  assert sorted(codes) == [0, 2], codes
  winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
  text = [((tmp_path / f"out{i}").read_text(), (tmp_path / f"err{i}").read_text()) for i in range(2)]
  loser_out, loser_err = text[loser]
  assert loser_err.strip().splitlines() == [
      f"error: {workdir} is in use by another run (PID {procs[winner].pid} on host {socket.gethostname()}, "
      f"lock file {workdir / 'run.lock'}); wait for it to finish or use another --workdir"]
  assert "round" not in loser_out  # it trained nothing
  assert "round 1: test_accuracy" in text[winner][0]
  # It stopped at the lock: long before the winner had loaded data, compiled and trained.
  assert ended[loser] < ended[winner] - 2.0
  assert _decisions(workdir) == reference  # every round once, as a single run makes them
  assert (workdir / "run.lock").read_text() == ""  # released


def test_a_held_workdir_is_refused_before_anything_is_written(tmp_path):
  with lock_lib.hold(tmp_path):
    assert json.loads((tmp_path / "run.lock").read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
    with pytest.raises(lock_lib.WorkdirLocked, match=f"PID {os.getpid()} on host "):
      loop.run(tiny_config(), tmp_path)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["run.lock"]  # no config.json, no checkpoints


def test_a_stale_lock_file_is_taken_over(reference_dir):
  """Before: no lock. After: the dead run's lock file is taken over, the run completes, and the
  lock is released with the dead run's record gone."""
  assert len(run_files.read_rounds(reference_dir)) == ROUNDS
  assert (reference_dir / "run.lock").read_text() == ""
  with lock_lib.hold(reference_dir):
    assert json.loads((reference_dir / "run.lock").read_text())["pid"] == os.getpid()


def test_a_filesystem_without_locks_warns_once_and_goes_on(tmp_path, monkeypatch, capsys):
  def no_locks(fd, operation):
    raise OSError(errno.ENOLCK, "No locks available")
  monkeypatch.setattr(lock_lib.fcntl, "flock", no_locks)
  with lock_lib.hold(tmp_path) as lock:
    assert lock.fd is None
  assert capsys.readouterr().err == (f"warning: cannot lock {tmp_path / 'run.lock'} (No locks available); "
                                     "nothing stops a second run on this workdir\n")


def _snapshot(workdir) -> dict:
  return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.rglob("*"))
          if p.is_file() and p.name != "run.lock"}


def test_changed_data_under_a_workdir_is_refused_unless_accepted(tmp_path, digits_npz, reference_dir, capsys):
  """Before: a shuffled npz continued with --force paired stored labels with other rows. After:
  refused with exit code 2, naming what changed, the workdir untouched; accepted on request."""
  workdir = tmp_path / "run"
  shutil.copytree(reference_dir, workdir)  # a finished run on digits_npz
  fingerprint_file = workdir / data_file.FILE_NAME
  first = fingerprint_file.read_text()
  # A workdir from before fingerprints gets one, and an unchanged rerun passes.
  fingerprint_file.unlink()
  assert main_lib.execute(_config(digits_npz), str(workdir)) == 0
  assert fingerprint_file.read_text() == first

  original = digits_npz.read_bytes()
  _write_digits_npz(digits_npz, np.random.default_rng(0).permutation(1797))  # shuffled in place
  try:
    _check_refused_then_accepted(workdir, _config(digits_npz, ROUNDS + 1), first, capsys)
  finally:
    digits_npz.write_bytes(original)  # the other tests' data


def _check_refused_then_accepted(workdir, more, first, capsys):
  """`more` (one round more, with --force) on changed data: refused, then accepted."""
  fingerprint_file = workdir / data_file.FILE_NAME
  before = _snapshot(workdir)
  capsys.readouterr()
  assert main_lib.execute(more, str(workdir), force=True) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: ")
  assert ("(pool ids changed; pool inputs changed; pool labels changed; test ids changed; test inputs changed; "
          "test labels changed). "
          "Use another --workdir, or pass --accept_data_change") in err
  assert _snapshot(workdir) == before  # config.json, fingerprint, rounds.jsonl, checkpoints

  assert main_lib.execute(more, str(workdir), force=True, accept_data_change=True) == 0
  assert "continuing on changed data" in capsys.readouterr().err
  assert len(run_files.read_rounds(workdir)) == ROUNDS + 1
  stored = json.loads(fingerprint_file.read_text())["splits"]
  assert len(fingerprint.differences(json.loads(first)["splits"], stored)) == 6
  data = loop.load_data(more)
  assert stored == fingerprint.of_splits(pool=data.pool, validation=None, test=data.dataset.test)


def test_a_pool_of_another_size_is_refused_even_when_accepted(tmp_path):
  split = datasets.Split(np.zeros((10, 2, 2, 1), np.uint8), np.arange(10, dtype=np.int32) % 2,
                         datasets.make_ids("x/", 10))
  smaller = fingerprint.of_splits(pool=split.subset(np.arange(9)))
  data_file.check_or_write(tmp_path, fingerprint.of_splits(pool=split), accept=False, write=True)
  # A run that stopped before its first checkpoint used nothing of its data: new data is taken.
  data_file.check_or_write(tmp_path, smaller, accept=False, write=True)
  assert json.loads((tmp_path / data_file.FILE_NAME).read_text())["splits"] == smaller
  data_file.check_or_write(tmp_path, fingerprint.of_splits(pool=split), accept=False, write=True)
  (tmp_path / "checkpoints" / "0").mkdir(parents=True)  # the initial set, indexing the pool's rows
  with pytest.raises(data_file.DataChanged, match=r"\(pool size 10 -> 9\); its checkpoints index the old pool"):
    data_file.check_or_write(tmp_path, smaller, accept=True, write=True)
  renamed = fingerprint.of_splits(pool=datasets.Split(split.inputs, split.labels, datasets.make_ids("y/", 10)))
  with pytest.raises(data_file.DataChanged, match=r"\(pool ids changed\)"):
    data_file.check_or_write(tmp_path, renamed, accept=False, write=True)


def test_digests_do_not_depend_on_the_chunk_size(monkeypatch):
  x = np.random.default_rng(0).integers(0, 255, (1000, 8, 8, 1), dtype=np.uint8)
  ids = datasets.make_ids("row/", 1000)
  whole = fingerprint.digest_array(x), fingerprint.digest_array(ids)
  monkeypatch.setattr(fingerprint, "CHUNK_BYTES", 100)  # chunks of one or two rows
  assert (fingerprint.digest_array(x), fingerprint.digest_array(ids)) == whole
  assert fingerprint.digest_array(x[::-1]) != whole[0]
  assert fingerprint.digest_array(ids.astype("<U20")) == whole[1]  # numpy's padding does not count
