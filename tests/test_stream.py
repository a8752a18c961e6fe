"""The streamed pool (`data.pool_storage = "stream"`, issue 28): the same run as the in-memory pool,
bad shards and changed data named, bad settings refused before compute."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import loop
from jaxal.checkpoint import data_file
from jaxal.checkpoint import run_files
from jaxal.checkpoint import steps
from jaxal.data import array_record
from jaxal.data import datasets
from jaxal.data import stream
from tests.conftest import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]

DETERMINISTIC = ("round", "num_labeled", "test_accuracy", "test_loss", "architecture", "num_params", "depth",
                 "epochs", "train_accuracy", "train_loss", "queried", "val_accuracy")
# Tiny, and one training program for every acquisition (the in-memory runs share it, the streamed runs share theirs).
BASE = {"train.steps_per_call": 1, "train.epochs": 1, "al.num_rounds": 3, "model.options.dropout": 0.25}


def _config(acquisition="least_confidence", storage="memory", **extra):
  return tiny_config(**{**BASE, "acquisition.name": acquisition, "data.pool_storage": storage, **extra})


def _picks(workdir) -> list[list[int]]:
  """The labeled pool rows at each kept checkpoint (one per round)."""
  kept = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  ckpts = steps.RunCheckpoints(workdir)
  try:
    return [ckpts.restore(step)[0].labeled_indices.tolist() for step in kept]
  finally:
    ckpts.close()


def _assert_same_run(a, b, loss_rtol: float = 0.0):
  """Same picks and deterministic fields; losses within `loss_rtol` (0: bit for bit)."""
  rows_a, rows_b = run_files.read_rounds(a), run_files.read_rounds(b)
  assert len(rows_a) == len(rows_b) >= 2
  exact = [k for k in DETERMINISTIC if not (loss_rtol and k.endswith("_loss"))]
  for row_a, row_b in zip(rows_a, rows_b):
    assert {k: row_a[k] for k in exact} == {k: row_b[k] for k in exact}
    for k in set(DETERMINISTIC) - set(exact):
      assert row_a[k] == pytest.approx(row_b[k], rel=loss_rtol), k
  picks_a, picks_b = _picks(a), _picks(b)
  assert len(picks_a) >= 2 and picks_a == picks_b


@pytest.fixture(scope="module")
def memory_runs(tmp_path_factory):
  """The in-memory baseline of each acquisition, run once."""
  base, done = tmp_path_factory.mktemp("memory"), {}

  def get(acquisition):
    if acquisition not in done:
      loop.run(_config(acquisition), base / acquisition)
      done[acquisition] = base / acquisition
    return done[acquisition]
  return get


@pytest.mark.parametrize("acquisition", ["least_confidence", "bald", "coreset", "badge"])
def test_streamed_run_equals_in_memory(memory_runs, tmp_path, acquisition):
  loop.run(_config(acquisition, "stream"), tmp_path / "stream")
  assert (tmp_path / "stream" / stream.CONVERTED_DIR / "index.json").is_file()  # converted once, in the workdir
  _assert_same_run(memory_runs(acquisition), tmp_path / "stream")


def test_resumed_streamed_run_continues_as_in_memory(memory_runs, tmp_path):
  work = tmp_path / "stream"
  loop.run(_config(**{"al.num_rounds": 2}, storage="stream"), work)
  loop.run(_config(storage="stream"), work, force=True)  # extended to 3 rounds: resumes from the checkpoints
  _assert_same_run(memory_runs("least_confidence"), work)


def test_streamed_data_loads_as_in_memory(tmp_path):
  """Normalization, fingerprint, validation split and rows agree, with a carved validation split."""
  overrides = {"data.validation_size": 50, "data.normalization": "scalar"}
  memory = loop.load_data(_config(**overrides))
  streamed = loop.load_data(_config(storage="stream", **overrides), workdir=tmp_path)
  assert isinstance(streamed.pool_inputs, stream.StreamedInputs) and streamed.preprocess == memory.preprocess
  assert streamed.fingerprint == loop.fingerprint.of_splits(pool=memory.pool, validation=memory.validation,
                                                            test=memory.dataset.test)
  np.testing.assert_array_equal(streamed.validation.inputs, memory.validation.inputs)
  rows = np.array([5, 0, 1500, 5])
  np.testing.assert_array_equal(streamed.pool_inputs.read(rows), memory.pool.inputs[rows])
  np.testing.assert_array_equal(streamed.pool.labels, memory.pool.labels)


def test_idx_mnist_streamed_equals_in_memory(shared_data, tmp_path):
  d = shared_data / "mnist_test"
  data = {"data.source": "idx", "data.name": "mnist_test", "data.path": str(d / "t10k-images-idx3-ubyte.gz"),
          "data.labels_path": str(d / "t10k-labels-idx1-ubyte.gz"), "data.test_size": 200, "data.max_train": 1200}
  loop.run(_config(**data), tmp_path / "memory")
  loop.run(_config(storage="stream", **data), tmp_path / "stream")
  _assert_same_run(tmp_path / "memory", tmp_path / "stream")


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  out = tmp_path_factory.mktemp("converted") / "digits_ar"
  array_record.convert(datasets.load(tiny_config().data), out, records_per_shard=500)
  return out


def _stream_config(directory, **extra):
  return _config(storage="stream", **{"data.source": "array_record", "data.path": str(directory),
                                      "data.test_size": 0}, **extra)


def _missing(d):
  (d / "pool-00001-of-00004.array_record").unlink()
  return "pool-00001-of-00004.array_record", "is missing"


def _truncated(d):
  shard = d / "pool-00002-of-00004.array_record"
  shard.write_bytes(shard.read_bytes()[:-100])
  return shard.name, "truncated"


def _index_disagrees(d):
  index = json.loads((d / "index.json").read_text())
  index["splits"]["pool"]["shards"][0]["num_records"] -= 1
  index["splits"]["pool"]["num_examples"] -= 1
  (d / "index.json").write_text(json.dumps(index))
  return "pool-00000-of-00004.array_record", "holds 500 records, index.json says 499"


@pytest.mark.parametrize("damage", [_missing, _truncated, _index_disagrees])
def test_bad_shards_are_named_before_compute(converted, tmp_path, damage):
  directory = tmp_path / "copy"
  shutil.copytree(converted, directory)
  name, reason = damage(directory)
  with pytest.raises(datasets.DataError) as e:
    loop.load_data(_stream_config(directory))
  assert str(directory / name) in str(e.value) and reason in str(e.value) and "\n" not in str(e.value)


def test_shard_changed_while_the_run_reads_it_is_named(converted, tmp_path):
  directory = tmp_path / "copy"
  shutil.copytree(converted, directory)
  data = loop.load_data(_stream_config(directory))
  shard = directory / "pool-00001-of-00004.array_record"
  shard.write_bytes(shard.read_bytes() + b"x")
  with pytest.raises(datasets.DataError, match=f"{shard}: shard changed since the run started"):
    next(stream.prefetched(data.pool_inputs, [np.arange(3)]))


def test_pool_changed_since_the_run_started_is_refused_naming_the_index(converted, tmp_path):
  directory = tmp_path / "copy"
  shutil.copytree(converted, directory)
  config = _stream_config(directory, **{"al.num_rounds": 1})
  loop.run(config, tmp_path / "work")
  shutil.rmtree(directory)  # the same data converted again with its pool's first two rows swapped
  dataset = datasets.load(tiny_config().data)
  dataset.train = dataset.train.subset(np.r_[1, 0, 2:len(dataset.train)])
  array_record.convert(dataset, directory, records_per_shard=500)
  with pytest.raises(data_file.DataChanged) as e:
    loop.run(config, tmp_path / "work")
  assert "pool inputs changed" in str(e.value) and str(directory / "index.json") in str(e.value)


@pytest.mark.parametrize("field,value,message", [
    ("data.pool_storage", "disk", "data.pool_storage: must be memory or stream, got 'disk'"),
    ("search.name", "pdarts", "data.pool_storage: stream cannot run search.name='pdarts'"),
    ("pretrain.name", "deepcluster", "data.pool_storage: stream cannot pretrain"),
])
def test_bad_pool_storage_settings_are_refused(field, value, message):
  config = _config(storage="stream", **{field: value})
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config)


# --------------------------------------------------------------------------- several processes

MULTI = ["--config=configs/digits_demo.py", "--config.model.options.stacks=1", "--config.model.options.width=4",
         "--config.train.batch_size=32", "--config.train.epochs=1", "--config.train.epoch_size=128",
         "--config.train.steps_per_call=1", "--config.al.initial_size=20", "--config.al.query_schedule=0:20",
         "--config.al.num_rounds=2", "--config.output.plot=False"]


@pytest.mark.slow
@pytest.mark.parametrize("processes,acquisition", [(2, "least_confidence"), (2, "coreset"), (4, "least_confidence")])
def test_streaming_processes_match_one_process_of_as_many_devices(tmp_path, processes, acquisition):
  """Each process reads and scores its own share of every chunk; the picks are one process's."""
  flags = [*MULTI, f"--config.acquisition.name={acquisition}"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  multi = subprocess.run(["bash", "launch/local_multiprocess.sh", str(processes), f"--workdir={tmp_path / 'multi'}",
                          *flags, "--config.data.pool_storage=stream"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
  assert multi.returncode == 0, multi.stdout[-3000:] + multi.stderr[-3000:]
  single = subprocess.run([sys.executable, "-m", "jaxal.main", f"--workdir={tmp_path / 'single'}", *flags], cwd=ROOT,
                          env=dict(env, XLA_FLAGS=f"--xla_force_host_platform_device_count={processes}"),
                          capture_output=True, text=True, timeout=400)
  assert single.returncode == 0, single.stderr[-3000:]
  # Over 4 devices the losses differ in their last float32 bits (likely the gradients'
  # all-reduce adding in another order across processes than within one); picks and
  # accuracies still agree. Two terms add the same in any order: N = 2 is bit for bit.
  _assert_same_run(tmp_path / "single", tmp_path / "multi", loss_rtol=0.0 if processes == 2 else 1e-6)
