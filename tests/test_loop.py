"""The loop end to end on digits: outputs, compile counts, resume, workdir safety."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxal import checkpoint as checkpoint_lib
from jaxal import loop
from jaxal.checkpoint import run_files
from tests.conftest import run_killed_after, tiny_config


def _config(**overrides):
  """`tiny_config` with one step per compiled block: every `loop.run` here compiles its train
  block afresh, and an unrolled 4-step block compiles ~4x slower (test_no_recompiles_when_epochs_grow
  still trains with 2-step blocks)."""
  return tiny_config(**{"train.steps_per_call": 1, **overrides})

FIELDS = ("round", "num_labeled", "test_accuracy", "test_loss", "architecture", "num_params", "depth",
          "train_seconds", "selection_seconds", "compiles")
DETERMINISTIC = ("round", "num_labeled", "test_accuracy", "test_loss", "architecture", "num_params", "depth",
                 "epochs", "train_accuracy", "train_loss", "queried")


def _labeled(workdir):
  ckpts = checkpoint_lib.RunCheckpoints(workdir)
  pool, _, meta = ckpts.restore()
  ckpts.close()
  return pool, meta


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  """An uninterrupted 3-round run, shared by the tests below."""
  workdir = tmp_path_factory.mktemp("reference")
  history = loop.run(_config(**{"output.plot": True}), workdir)
  return workdir, history


def test_outputs(reference_run):
  workdir, history = reference_run
  rows = run_files.read_rounds(workdir)
  assert rows == json.loads(json.dumps(history))
  assert [r["round"] for r in rows] == [0, 1, 2]
  assert [r["num_labeled"] for r in rows] == [20, 40, 60]
  for r in rows:
    assert set(FIELDS) <= set(r)
    assert 0.0 <= r["test_accuracy"] <= 1.0 and np.isfinite(r["test_loss"])
    assert r["architecture"] == "resnet_grid(1,1)" and r["depth"] == 4 and r["num_params"] > 0
  assert (workdir / "curves.png").stat().st_size > 1000
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["al"]["num_rounds"] == 3
  pool, meta = _labeled(workdir)
  assert pool.num_labeled == 60 and pool.round == 3 and meta["finished"]


def test_no_recompiles_after_round_zero(reference_run):
  _, history = reference_run
  assert history[0]["compiles"] > 0
  assert [r["compiles"] for r in history[1:]] == [0, 0]


def test_no_recompiles_when_epochs_grow_with_the_labeled_set(tmp_path):
  """epoch_size=0 (one pass): the number of step blocks per epoch grows from round to round."""
  c = _config(**{"train.epoch_size": 0, "train.steps_per_call": 2, "al.query_schedule": "0:40",
                     "al.num_rounds": 4, "target.name": "resnet_grid", "target.eval_rounds": "all"})
  c.target.options = type(c.model.options)(dict(c.model.options))
  history = loop.run(c, tmp_path)
  assert [r["num_labeled"] for r in history] == [20, 60, 100, 140]  # 1, 2, 4, 5 steps: 1 to 3 blocks
  assert [r["compiles"] for r in history[1:]] == [0, 0, 0]


def test_finished_run_says_so(reference_run, capsys):
  workdir, history = reference_run
  c = _config()
  c.output.verbose = True
  again = loop.run(c, workdir)
  assert "already finished" in capsys.readouterr().out
  assert again == history


def test_different_config_is_refused_unless_forced(reference_run, tmp_path):
  workdir, _ = reference_run
  with pytest.raises(run_files.WorkdirConflict, match="train.epochs"):
    loop.run(_config(**{"train.epochs": 5}), workdir)
  # --force continues the same run with a longer schedule.
  other = tmp_path / "w"
  loop.run(_config(**{"al.num_rounds": 2}), other)
  history = loop.run(_config(**{"al.num_rounds": 3}), other, force=True)
  assert [r["num_labeled"] for r in history] == [20, 40, 60]


def test_resume_after_a_crash_matches_uninterrupted(reference_run, tmp_path, monkeypatch):
  workdir, history = reference_run
  crash_dir = tmp_path / "crash"
  # round 1 is checkpointed, its jsonl line torn, as a kill mid-write could leave it
  run_killed_after(monkeypatch, _config(), crash_dir, 2, torn_line='{"round": 1, "trunc')
  resumed = loop.run(_config(), crash_dir)
  rows = run_files.read_rounds(crash_dir)
  assert len(rows) == 3
  for a, b in zip(rows, history):
    assert {k: a[k] for k in DETERMINISTIC} == {k: b[k] for k in DETERMINISTIC}
  pool_a, _ = _labeled(crash_dir)
  pool_b, _ = _labeled(workdir)
  np.testing.assert_array_equal(pool_a.labeled_mask, pool_b.labeled_mask)
  np.testing.assert_array_equal(pool_a.labels, pool_b.labels)
  assert resumed[-1]["num_labeled"] == 60


@pytest.mark.slow
def test_repeated_sigkills_then_resume(reference_run, tmp_path):
  """SIGKILLs the real CLI at random points 5 times, resuming each time; ends as if never killed."""
  workdir, history = reference_run
  killed = tmp_path / "killed"
  overrides = ["--config.data.test_size=200", "--config.model.options.stacks=1", "--config.model.options.width=4",
               "--config.train.batch_size=32", "--config.train.epochs=2", "--config.train.epoch_size=128",
               "--config.train.steps_per_call=1", "--config.train.lr_schedule=0:0.05",
               "--config.train.weight_decay=0.001", "--config.al.initial_size=20", "--config.al.query_schedule=0:20",
               "--config.al.num_rounds=3", "--config.output.plot=False", "--config.train.eval_chunk_size=512",
               "--config.output.verbose=False"]
  cmd = [sys.executable, "-m", "jaxal.main", "--config=configs/digits_demo.py", f"--workdir={killed}", *overrides]
  rng = np.random.default_rng(0)
  kills = 0
  for _ in range(5):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(2.0, 7.0))  # start-up takes ~3 s, a round ~1 s: kills land anywhere
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      kills += 1
    proc.wait()
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
  assert done.returncode == 0, done.stderr[-2000:]
  assert kills >= 3
  rows = run_files.read_rounds(killed)
  for a, b in zip(rows, history):
    assert {k: a[k] for k in DETERMINISTIC} == {k: b[k] for k in DETERMINISTIC}
  assert len(rows) == 3
  pool, meta = _labeled(killed)
  ref_pool, _ = _labeled(workdir)
  assert meta["finished"]
  np.testing.assert_array_equal(pool.labeled_mask, ref_pool.labeled_mask)
  np.testing.assert_array_equal(pool.labels, ref_pool.labels)


def test_pending_labels_stop_the_run_and_resume_identically(reference_run, tmp_path, monkeypatch):
  """An oracle that has no answers yet stops the run; rerunning continues without re-querying."""
  from jaxal import oracle as oracle_lib
  workdir, history = reference_run
  asked = []

  class SlowPeople(oracle_lib.SimulatedOracle):
    wants_predictions = True
    ready = False

    def reveal(self, indices, *, round=0, predictions=None):
      asked.append((round, tuple(np.asarray(indices).tolist())))
      if round == 2 and not SlowPeople.ready:
        assert predictions is not None and len(predictions["predicted_class"]) == len(indices)
        raise oracle_lib.LabelsPending("fill in queries/round_002.csv")
      return super().reveal(indices, round=round, predictions=predictions)

  monkeypatch.setitem(oracle_lib.ORACLES, "slow", lambda config, wd, data: SlowPeople(data.pool.labels))
  c = _config(**{"oracle.name": "slow"})
  with pytest.raises(oracle_lib.LabelsPending):
    loop.run(c, tmp_path)
  assert len(run_files.read_rounds(tmp_path)) == 2
  SlowPeople.ready = True
  resumed = loop.run(c, tmp_path)
  round2 = [q for r, q in asked if r == 2]
  assert len(round2) == 2 and round2[0] == round2[1]  # the same queries, asked again, not re-selected
  for a, b in zip(resumed, history):
    assert {k: a[k] for k in DETERMINISTIC} == {k: b[k] for k in DETERMINISTIC}


def test_partial_answers_need_permission(tmp_path, monkeypatch):
  from jaxal import oracle as oracle_lib

  class HalfDone(oracle_lib.SimulatedOracle):
    def reveal(self, indices, *, round=0, predictions=None):
      idx, labels = super().reveal(indices)
      return (idx, labels) if round == 0 else (idx[::2], labels[::2])

  monkeypatch.setitem(oracle_lib.ORACLES, "half", lambda config, wd, data: HalfDone(data.pool.labels))
  with pytest.raises(ValueError, match="allow_partial"):
    loop.run(_config(**{"oracle.name": "half"}), tmp_path / "a")
  history = loop.run(_config(**{"oracle.name": "half", "oracle.allow_partial": True}), tmp_path / "b")
  assert [r["num_labeled"] for r in history] == [20, 30, 40]


def test_corrupted_latest_checkpoint_falls_back(reference_run, tmp_path, capsys):
  import shutil
  workdir, history = reference_run
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  latest = copy / "checkpoints" / "3"
  for f in (latest / "meta").rglob("*"):
    if f.is_file():
      f.write_text("{ not json")
  resumed = loop.run(_config(), copy)
  assert "unreadable" in capsys.readouterr().err
  assert [r["num_labeled"] for r in resumed] == [20, 40, 60]
  for a, b in zip(resumed, history):
    assert {k: a[k] for k in DETERMINISTIC} == {k: b[k] for k in DETERMINISTIC}


def test_nan_loss_aborts_without_touching_the_pool(reference_run, tmp_path):
  import shutil
  from jaxal.train import trainer as trainer_lib
  workdir, _ = reference_run
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  before, _ = _labeled(copy)
  # lr * weight_decay = 1e4 scales the conv kernels by about -1e4 a step (lr 1e30 is refused by validate).
  with pytest.raises(trainer_lib.TrainingDiverged, match="training diverged"):
    loop.run(_config(**{"train.lr_schedule": "0:1000", "train.weight_decay": 10.0, "al.num_rounds": 4}), copy,
             force=True)
  after, meta = _labeled(copy)
  np.testing.assert_array_equal(after.labeled_mask, before.labeled_mask)
  np.testing.assert_array_equal(after.labels, before.labels)
  assert after.round == before.round and meta["finished"]
  ckpts = checkpoint_lib.RunCheckpoints(copy)
  assert ckpts.latest_step() == 3  # nothing was saved by the failed round
  ckpts.close()
