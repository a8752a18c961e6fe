"""Two cooperating processes (launch/local_multiprocess.sh) match a single-process run."""

import os
import pathlib
import subprocess
import sys

import pytest

from jaxal.checkpoint import run_files

ROOT = pathlib.Path(__file__).resolve().parents[1]
OVERRIDES = ["--config=configs/digits_demo.py", "--config.model.options.stacks=1", "--config.model.options.width=4",
             "--config.train.batch_size=32", "--config.train.epochs=2", "--config.train.epoch_size=128",
             "--config.train.steps_per_call=4", "--config.al.initial_size=20", "--config.al.query_schedule=0:20",
             "--config.al.num_rounds=2", "--config.output.plot=False"]
FIELDS = ("round", "num_labeled", "test_accuracy", "architecture", "num_params", "depth", "queried")


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  multi = subprocess.run(["bash", "launch/local_multiprocess.sh", "2", f"--workdir={tmp_path / 'multi'}", *OVERRIDES],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
  assert multi.returncode == 0, multi.stdout[-3000:] + multi.stderr[-3000:]
  # The same global program on one process with two (fake) devices.
  env2 = dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  single = subprocess.run([sys.executable, "-m", "jaxal.main", f"--workdir={tmp_path / 'single'}", *OVERRIDES],
                          cwd=ROOT, env=env2, capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-3000:]
  rows_multi = run_files.read_rounds(tmp_path / "multi")
  rows_single = run_files.read_rounds(tmp_path / "single")
  assert len(rows_multi) == 2
  for a, b in zip(rows_multi, rows_single):
    assert {k: a[k] for k in FIELDS} == {k: b[k] for k in FIELDS}
    assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-5)
  # Only process 0 printed the round summaries.
  assert "[process 0] round 1: test_accuracy" in multi.stdout
  assert "[process 1] round 1: test_accuracy" not in multi.stdout
