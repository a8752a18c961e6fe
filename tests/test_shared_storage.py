"""Workdirs and data on shared storage (`gs://`) go through etils.epath, never a local `gs:` folder.

No bucket is reachable offline, so the tests stand in a fake GCS: epath's fsspec backend gets,
for `gs://`, an fsspec filesystem that keeps the bucket in a temporary folder, and orbax's
TensorStore writes its arrays there too (its `gcs` kvstore becomes a `file` kvstore under the
same folder). Every jaxal write to a `gs://` path then lands in that folder; a write that went
through pathlib or open() instead would create `gs:/bucket/...` under the working directory.
"""

import json
import os

import numpy as np
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from tests.conftest import tiny_config


class _FakeGCS(DirFileSystem):
  """`gs://bucket/x` is `<root>/bucket/x`; paths come back without the root, as from GCS."""
  protocol = ("gs", "gcs")

  def _join(self, path):
    strip = lambda p: p[len("gs://"):] if isinstance(p, str) and p.startswith("gs://") else p
    return super()._join([strip(p) for p in path] if isinstance(path, (list, tuple)) else strip(path))


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
  """The fake bucket's folder; the test runs in an empty working directory."""
  from etils.epath import backend
  from orbax.checkpoint._src.path import gcs_utils
  root = tmp_path / "bucket_store"
  root.mkdir()
  fs = _FakeGCS(path=str(root), fs=LocalFileSystem())
  get = backend._FileSystemSpecBackend._get_filesystem  # pylint: disable=protected-access
  monkeypatch.setattr(backend._FileSystemSpecBackend, "_get_filesystem",  # pylint: disable=protected-access
                      lambda self, name: fs if name in ("gs", "gcs") else get(self, name))

  def kvstore(path):
    bucket, key = gcs_utils.parse_gcs_path(path, add_trailing_slash=False)
    return {"driver": "file", "path": os.path.join(root, bucket, key)}

  monkeypatch.setattr(gcs_utils, "get_kvstore_for_gcs", kvstore)
  monkeypatch.setattr(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  yield root
  assert not any(cwd.iterdir()), f"local files appeared in the working directory: {list(cwd.iterdir())}"


def test_loop_runs_and_resumes_in_a_gs_workdir(fake_gcs, capsys):
  from jaxal import loop
  from jaxal.checkpoint import run_files
  workdir = "gs://bucket/runs/digits"
  first = loop.run(tiny_config(**{"al.num_rounds": 1, "output.plot": True, "train.epochs": 1}), workdir)
  run = fake_gcs / "bucket" / "runs" / "digits"
  assert json.loads((run / "config.json").read_text())["al"]["num_rounds"] == 1
  assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == ["0", "1"]
  assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
  assert (run / "data_fingerprint.json").is_file()
  assert not list(run.glob("*.tmp"))
  assert "gs:// storage has no file locks" in capsys.readouterr().err
  # Extend to 2 rounds: round 0 queried nothing (its last round), so the run restores checkpoint 0
  # from the bucket, redoes round 0 with the same keys, sets the old step 1 aside and deletes it.
  history = loop.run(tiny_config(**{"al.num_rounds": 2, "output.plot": True, "train.epochs": 1}), workdir, force=True)
  assert [r["round"] for r in history] == [0, 1] and history[0]["queried"] == 20
  assert history[0]["test_accuracy"] == first[0]["test_accuracy"]
  assert [r["round"] for r in run_files.read_rounds(workdir)] == [0, 1]
  assert [json.loads(line)["round"] for line in (run / "rounds.jsonl").read_text().splitlines()] == [0, 1]
  assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["0", "1", "2"]  # the superseded step is gone


def test_file_oracle_and_npz_data_on_gs(fake_gcs):
  """The files oracle's query CSV and contact sheet, and an npz data file, all on the bucket."""
  from jaxal import oracle as oracle_lib
  from jaxal import paths
  from jaxal.file_oracle import FileOracle
  from jaxal.data import files
  images = np.zeros((30, 8, 8, 1), np.uint8)
  bucket = fake_gcs / "bucket"
  bucket.mkdir()
  np.savez(bucket / "pool.npz", x=images, y=np.arange(30) % 3)
  cfg = tiny_config(**{"data.source": "npz", "data.path": "gs://bucket/pool.npz"}).data
  train, _, _ = files.load_npz_split(cfg)
  assert train.inputs.shape == (30, 8, 8, 1) and train.ids[0] == "pool.npz/0"
  oracle = FileOracle(paths.of("gs://bucket/run"), train.ids, ["a", "b", "c"], images)
  with pytest.raises(oracle_lib.LabelsPending):
    oracle.reveal([3, 4], round=0)
  queries = bucket / "run" / "queries"
  assert (queries / "round_000.png").is_file()
  rows = (queries / "round_000.csv").read_text().splitlines()
  assert rows == ["index,id,predicted,confidence,label", "3,pool.npz/3,,,", "4,pool.npz/4,,,"]
  (queries / "round_000.csv").write_text("\n".join(rows[:1] + ["3,pool.npz/3,,,b", "4,pool.npz/4,,,c"]) + "\n")
  answered, labels = oracle.reveal([3, 4], round=0)
  assert answered.tolist() == [3, 4] and labels.tolist() == [1, 2]
  assert json.loads((bucket / "run" / "labels" / "applied.json").read_text())["000"]["file"] == "queries/round_000.csv"


def test_gs_workdir_without_a_gcs_client_is_one_line_and_no_local_folder(tmp_path, monkeypatch, capsys):
  """Without gcsfs (fsspec's GCS client) `--workdir=gs://...` used to become the folder `./gs:/bucket/run`."""
  import importlib.util
  from etils.epath import backend
  from jaxal import main
  if importlib.util.find_spec("tensorflow"):
    pytest.skip("epath reaches gs:// through tf.io.gfile when tensorflow is installed")

  def no_gcsfs(self, name):
    raise ImportError("Please install gcsfs to access Google Storage")  # fsspec's words when it is missing

  monkeypatch.setattr(backend._FileSystemSpecBackend, "_get_filesystem", no_gcsfs)  # pylint: disable=protected-access
  monkeypatch.chdir(tmp_path)
  code = main.execute(tiny_config(), "gs://bucket/run")
  lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert code == 2 and len(lines) == 1, lines
  assert lines[0].startswith("error: gs://bucket/run: gs:// storage is unavailable: ") and "gcsfs" in lines[0]
  assert list(tmp_path.iterdir()) == []


def test_local_only_readers_refuse_a_url_in_one_line(fake_gcs):
  """ArrayRecord (C++ file I/O) cannot read a bucket: a DataError names the field, nothing local appears."""
  from jaxal.data import array_record, datasets
  from jaxal.data.types import DataError
  cfg = tiny_config(**{"data.source": "array_record", "data.path": "gs://bucket/converted"}).data
  with pytest.raises(DataError, match=r"^data\.path: gs://bucket/converted is on gs:// storage, but the ArrayRecord "
                     r"reader needs a local path"):
    datasets.load(cfg)
  with pytest.raises(DataError, match=r"^--out: gs://bucket/out is on gs:// storage"):
    array_record.convert(None, "gs://bucket/out")


def test_local_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
  """Local writes stay atomic: a failure mid-write leaves the old file and no temporary file."""
  from jaxal import paths
  target = tmp_path / "config.json"
  target.write_text("old")

  def fail(self, *args, **kwargs):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(os, "fsync", lambda fd: fail(None))
  with pytest.raises(OSError, match="No space left on device") as e:
    paths.write_atomic(target, "new")
  assert e.value.filename == str(target)
  assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_tensorboard_event_files_reach_a_gs_workdir(fake_gcs, monkeypatch):
  """tensorboardX writes local files only: the round's event file is written aside, then uploaded."""
  from jaxal import tensorboard

  class LocalOnlyWriter:  # stands in for tensorboardX.SummaryWriter (not installed here)
    def __init__(self, logdir, filename_suffix):
      assert "://" not in logdir
      self.file = os.path.join(logdir, "events.out.tfevents.1" + filename_suffix)
      self.lines = []

    def add_scalar(self, tag, value, global_step):
      self.lines.append(f"{tag} {value} {global_step}")

    def close(self):
      with open(self.file, "w") as f:
        f.write("\n".join(self.lines))

  monkeypatch.setattr(tensorboard, "_writer_class", lambda: LocalOnlyWriter)
  tensorboard.log_round("gs://bucket/run", {"round": 1, "num_labeled": 40, "test_accuracy": 0.5})
  events = fake_gcs / "bucket" / "run" / "tensorboard" / "events.out.tfevents.1.round0001"
  assert events.read_text().splitlines() == ["metrics/round 1.0 40", "metrics/test_accuracy 0.5 40"]
