"""benchmarks/pool_scale.py: the quick mode's synthetic pool is written shard by shard in the
array_record layout and reused, and an in-memory row scores and selects on it (in-process: no
second JAX start-up)."""

import importlib.util
import pathlib

import numpy as np
import pytest

from jaxal.data import array_record

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
  spec = importlib.util.spec_from_file_location("pool_scale", ROOT / "benchmarks" / "pool_scale.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_quick_pool_round_trips_by_shard_and_is_reused(bench, tmp_path):
  args = bench.parse_args(["--quick", "--cache-dir", str(tmp_path), "--records-per-shard", "800"])
  directory = bench.image_pool(tmp_path, args.pool_size, args.records_per_shard)
  index = array_record.read_index(directory)
  assert [s["num_records"] for s in index["splits"]["pool"]["shards"]] == [800, 800, 400]
  pool = array_record.read_split(directory, index, "pool")
  want = np.concatenate([np.random.default_rng([0, k]).integers(0, 256, (m, 32, 32, 3), dtype=np.uint8)
                         for k, m in enumerate((800, 800, 400))])
  np.testing.assert_array_equal(pool.inputs, want)
  np.testing.assert_array_equal(pool.labels, np.arange(2000) % 10)
  assert pool.ids[1234] == "pool1234"
  stamp = (directory / array_record.INDEX_NAME).stat().st_mtime_ns
  assert bench.image_pool(tmp_path, args.pool_size, args.records_per_shard) == directory
  assert (directory / array_record.INDEX_NAME).stat().st_mtime_ns == stamp  # kept, not rewritten


def test_quick_in_memory_row_and_the_streamed_row_pick_the_same(bench, tmp_path):
  args = bench.parse_args(["--quick", "--acquisitions", "least_confidence"])
  args.pool_size, args.budget = 600, 7
  args.pool_dir = str(bench.image_pool(tmp_path, args.pool_size))
  row = bench.child_images(args, "memory")
  assert row["budget"] == 7 and row["examples_per_second"] > 0 and row["devices"] == 1
  assert set(row["seconds_by_acquisition"]) == {"least_confidence"}
  assert row["selection_seconds"] == pytest.approx(row["seconds_by_acquisition"]["least_confidence"])
  args.phases = bench.PhaseMemory()
  streamed = bench.child_images(args, "stream")
  assert streamed["picks_sha256"] == row["picks_sha256"]
  phases = args.phases.result()["rss_by_phase_bytes"]  # where a child's peak comes from, phase by phase
  assert list(phases) == ["imports", "pool_open", "warm_up", "scoring", "least_confidence"]
  assert all(0 < m["rss_bytes"] <= m["peak_rss_bytes"] for m in phases.values())
