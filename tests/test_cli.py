"""The `jaxal` command: export-labels and report, in process and as `python -m jaxal.cli`."""

import csv
import os
import subprocess
import sys

import pytest

from jaxal import checkpoint
from jaxal import cli
from jaxal import loop
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  loop.run(tiny_config(**{"al.num_rounds": 2}), workdir)
  return workdir


def test_export_labels_as_a_module(run_dir, tmp_path):
  out = tmp_path / "labels.csv"
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  done = subprocess.run([sys.executable, "-m", "jaxal.cli", "export-labels", str(run_dir), "--out", str(out)],
                        capture_output=True, text=True, env=env, check=False)
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == str(out)
  with open(out, newline="") as f:
    rows = list(csv.DictReader(f))
  ckpts = checkpoint.RunCheckpoints(run_dir)
  pool = ckpts.restore()[0]
  ckpts.close()
  assert [int(r["index"]) for r in rows] == pool.labeled_indices.tolist()
  assert [int(r["label"]) for r in rows] == pool.labels[pool.labeled_indices].tolist()
  data = loop.load_data(tiny_config())
  assert all(data.dataset.class_names[int(r["label"])] == r["label_name"] for r in rows)
  assert all(data.pool.ids[int(r["index"])] == r["id"] for r in rows)


def test_export_labels_refuses_a_non_run_directory(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["export-labels", str(tmp_path)])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "no config.json" in err and len(err.strip().splitlines()) == 1


def test_report_subcommand(run_dir, tmp_path, capsys):
  cli.main(["report", str(run_dir), "--out", str(tmp_path / "figs")])
  acquisition = tiny_config().acquisition.name
  assert f"| {acquisition} | 1 | 40 |" in capsys.readouterr().out
  for name in ("curves.png", "trajectory.png", "times.png"):
    assert (tmp_path / "figs" / name).stat().st_size > 5000


def test_main_with_files_oracle_stops_with_instructions(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  command = [sys.executable, "-m", "jaxal.main", "--config=configs/digits_demo.py", f"--workdir={tmp_path}",
             "--oracle=files", "--config.output.verbose=False"]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, check=False)
  assert done.returncode == 0, done.stderr
  assert "100 points need labels for round 0" in done.stdout and "round_000.csv" in done.stdout
  with open(tmp_path / "queries" / "round_000.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 100 and list(rows[0]) == ["index", "id", "predicted", "confidence", "label"]
  # A bad answer: exit code 2 and the line named, nothing applied.
  (tmp_path / "labels").mkdir()
  (tmp_path / "labels" / "round_000.csv").write_text(f"id,label\n{rows[0]['id']},eleven\n")
  done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, check=False)
  assert done.returncode == 2 and "round_000.csv:2: label 'eleven' is not a class" in done.stderr
  assert cli.export_labels(tmp_path).read_text() == "index,id,label,label_name\n"


def test_main_fills_the_persistent_compilation_cache(tmp_path):
  """`output.compilation_cache_dir` turns on JAX's persistent cache for every compilation of
  the run (not only those over JAX's default 1 s), so a rerun starts from cached executables."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  cache = tmp_path / "xla_cache"
  command = [sys.executable, "-m", "jaxal.main", "--config=configs/digits_demo.py", f"--workdir={tmp_path / 'run'}",
             "--oracle=files", "--config.output.verbose=False", f"--config.output.compilation_cache_dir={cache}"]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, check=False)
  assert done.returncode == 0, done.stderr
  names = sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []
  # The run stops at round 0's labels after a few small programs; each is cached, the PRNG
  # seed's too, which compiles in milliseconds (JAX's default would skip it).
  assert len(names) >= 2 and any(n.startswith("jit__threefry_seed") for n in names), names


@pytest.mark.parametrize("module, args, expected", [
    ("jaxal.main", ["--config=configs/digits_demo.py", "--config.train.epochz=3"],
     ["--config.train.epochz=3: the config has no field 'epochz'", 'Did you mean "epochs"']),
    ("jaxal.main", ["--config=configs/digits_demo.py", "--config.train.epochs=abc"],
     ["--config.train.epochs=abc", "invalid literal for int()"]),
    ("jaxal.main", ["--config=configs/no_such_config.py"],
     ["--config=configs/no_such_config.py: the config file does not load", "No such file or directory"]),
    ("jaxal.main", ["--config={bad}"], ["--config=", "ValueError: broken on purpose"]),
    ("jaxal.main", ["--config={syntax}"], ["the config file does not load: SyntaxError"]),
    ("jaxal.study", ["--config=configs/study_mnist_cpu.py", "--root={tmp}", "--config.seedz=1"],
     ["--config.seedz=1: the config has no field 'seedz'"]),
])
def test_bad_command_lines_get_one_line_and_exit_code_2(tmp_path, module, args, expected):
  (tmp_path / "bad.py").write_text("def get_config():\n  raise ValueError('broken on purpose')\n")
  (tmp_path / "syntax.py").write_text("def get_config(:\n")
  args = [a.format(bad=tmp_path / "bad.py", syntax=tmp_path / "syntax.py", tmp=tmp_path) for a in args]
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXAL_HUGE_PAGES": "0"}
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, cwd=root,
                        check=False)
  assert done.returncode == 2, done.stderr
  assert "Traceback" not in done.stderr, done.stderr
  first = done.stderr.splitlines()[0]
  assert first.startswith("error: ") and all(e in first for e in expected), done.stderr
