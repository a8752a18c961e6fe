"""`jaxal convert` and the `array_record` source: the same data and the same run, bad shards named."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxal import cli
from jaxal import loop
from jaxal.checkpoint import run_files
from jaxal.data import array_record
from jaxal.data import datasets
from tests.conftest import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
DETERMINISTIC = ("round", "num_labeled", "test_accuracy", "test_loss", "architecture", "num_params", "depth",
                 "epochs", "train_accuracy", "train_loss", "queried")
CONFIG_FILE = """
from jaxal import config as config_lib

def get_config():
  c = config_lib.base_config()
  c.data.source, c.data.name, c.data.test_size = "digits", "digits", 200
  return c
"""


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """The digits demo's data converted with 500 records a shard (4 pool shards, the last short)."""
  base = tmp_path_factory.mktemp("convert")
  config_file = base / "digits_config.py"
  config_file.write_text(CONFIG_FILE)
  cli.main(["convert", f"--config={config_file}", f"--out={base / 'digits_ar'}", "--records-per-shard=500"])
  return base / "digits_ar"


def _copy(converted, tmp_path) -> pathlib.Path:
  out = tmp_path / "copy"
  shutil.copytree(converted, out)
  return out


def _source(path, **fields):
  cfg = tiny_config().data
  cfg.source, cfg.path, cfg.test_size = "array_record", str(path), 0
  for k, v in fields.items():
    cfg[k] = v
  return cfg


def test_round_trip_gives_identical_arrays(converted):
  original = datasets.load(tiny_config().data)
  back = datasets.load(_source(converted))
  for name in ("train", "test"):
    a, b = getattr(original, name), getattr(back, name)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert a.inputs.dtype == b.inputs.dtype == np.uint8
    np.testing.assert_array_equal(a.labels, b.labels)
    assert b.labels.dtype == np.int32
    assert list(a.ids) == list(b.ids)
  assert back.class_names == original.class_names and back.num_classes == original.num_classes
  assert back.modality == original.modality == "image"
  index = json.loads((converted / "index.json").read_text())
  assert index["format"] == "jaxal.array_record" and index["version"] == 1
  assert [s["num_records"] for s in index["splits"]["pool"]["shards"]] == [500, 500, 500, 97]
  assert index["splits"]["test"]["num_examples"] == 200
  assert index["splits"]["pool"]["input_shape"] == [8, 8, 1] and index["splits"]["pool"]["input_dtype"] == "uint8"


def test_record_layout_has_no_pickle():
  x = np.arange(6, dtype=np.int32).reshape(2, 3)
  record = array_record.encode_record(x, 7, "row/é")
  assert record[:4] == b"JXR1" and int.from_bytes(record[4:8], "little") == 7
  assert int.from_bytes(record[8:12], "little") == len("row/é".encode())
  inputs, label, example_id = array_record.decode_record(record, (2, 3), np.dtype(np.int32), "r")
  np.testing.assert_array_equal(inputs, x)
  assert (label, example_id) == (7, "row/é")


def test_two_rounds_on_converted_data_match_the_original(converted, tmp_path):
  overrides = {"al.num_rounds": 2, "train.steps_per_call": 1}
  loop.run(tiny_config(**overrides), tmp_path / "original")
  config = tiny_config(**overrides, **{"data.source": "array_record", "data.path": str(converted),
                                       "data.test_size": 0})
  loop.run(config, tmp_path / "converted")
  a, b = run_files.read_rounds(tmp_path / "original"), run_files.read_rounds(tmp_path / "converted")
  assert len(a) == len(b) == 2
  for row_a, row_b in zip(a, b):
    assert {k: row_a[k] for k in DETERMINISTIC} == {k: row_b[k] for k in DETERMINISTIC}


def _edit_index(directory, edit):
  path = directory / "index.json"
  index = json.loads(path.read_text())
  edit(index)
  path.write_text(json.dumps(index))


def _missing_shard(d):
  (d / "pool-00001-of-00004.array_record").unlink()
  return "pool-00001-of-00004.array_record", "is missing"


def _truncated_shard(d):
  shard = d / "pool-00002-of-00004.array_record"
  shard.write_bytes(shard.read_bytes()[:-100])
  return shard.name, "truncated"


def _changed_shard(d):  # same size, other bytes: only the checksum sees it
  shard = d / "test-00000-of-00001.array_record"
  data = bytearray(shard.read_bytes())
  data[len(data) // 3] ^= 0xFF
  shard.write_bytes(bytes(data))
  return shard.name, "sha256 differs"


def _count_disagrees(d):  # the index claims one record less in a shard (and in the split)
  def edit(index):
    index["splits"]["pool"]["shards"][0]["num_records"] -= 1
    index["splits"]["pool"]["num_examples"] -= 1
  _edit_index(d, edit)
  return "pool-00000-of-00004.array_record", "holds 500 records, index.json says 499"


def _counts_do_not_add_up(d):
  _edit_index(d, lambda index: index["splits"]["test"].update(num_examples=201))
  return "index.json", "do not add up"


def _checksum_disagrees(d):
  _edit_index(d, lambda index: index["splits"]["pool"]["shards"][3].update(sha256="0" * 64))
  return "pool-00003-of-00004.array_record", "sha256 differs"


def _unreadable_index(d):
  (d / "index.json").write_text('{"format": "jaxal.array_record", "vers')
  return "index.json", "unreadable index"


def _index_missing_a_field(d):
  _edit_index(d, lambda index: index["splits"].pop("test"))
  return "index.json", "unreadable index"


@pytest.mark.parametrize("damage", [_missing_shard, _truncated_shard, _changed_shard, _count_disagrees,
                                    _counts_do_not_add_up, _checksum_disagrees, _unreadable_index,
                                    _index_missing_a_field])
def test_bad_input_is_one_error_naming_the_file(converted, tmp_path, damage):
  directory = _copy(converted, tmp_path)
  file_name, reason = damage(directory)
  with pytest.raises(datasets.DataError) as e:
    datasets.load(_source(directory))
  assert str(directory / file_name) in str(e.value) and reason in str(e.value)
  assert "\n" not in str(e.value)


def test_config_checks_of_the_source(converted):
  from jaxal import config as config_lib  # pylint: disable=import-outside-toplevel
  config = tiny_config(**{"data.source": "array_record", "data.path": str(converted)})  # test_size 200
  with pytest.raises(config_lib.ConfigError, match="data.test_size"):
    config_lib.validate(config)
  config = tiny_config(**{"data.source": "array_record", "data.path": str(converted), "data.test_size": 0,
                          "data.x_key": "x"})
  with pytest.raises(config_lib.ConfigError, match="data.x_key"):
    config_lib.validate(config)


def test_truncated_shard_exits_2_with_one_line_through_jaxal_main(converted, tmp_path):
  directory = _copy(converted, tmp_path)
  file_name, _ = _truncated_shard(directory)
  config_file = tmp_path / "config.py"
  config_file.write_text(CONFIG_FILE)
  done = subprocess.run([sys.executable, "-m", "jaxal.main", f"--config={config_file}",
                         "--config.data.source=array_record", f"--config.data.path={directory}",
                         "--config.data.test_size=0", f"--workdir={tmp_path / 'wd'}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120,
                        env={**os.environ, "JAX_PLATFORMS": "cpu", "JAXAL_HUGE_PAGES": "0"})
  assert done.returncode == 2, done.stderr
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and str(directory / file_name) in lines[0]


def test_convert_refuses_a_converted_directory_and_a_bad_config(converted, tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["convert", f"--config={tmp_path / 'nope.py'}", f"--out={tmp_path / 'out'}"])
  assert e.value.code == 2 and "nope.py: the config file does not load" in capsys.readouterr().err
  config_file = tmp_path / "config.py"
  config_file.write_text(CONFIG_FILE)
  with pytest.raises(SystemExit) as e:
    cli.main(["convert", f"--config={config_file}", f"--out={_copy(converted, tmp_path)}"])
  assert e.value.code == 2 and "index.json already exists" in capsys.readouterr().err


def test_text_round_trip_and_a_vocabulary_it_cannot_pass_on(tmp_path):
  (tmp_path / "t.csv").write_text("text,label\nhello world,0\ngood bye,1\nhello again,0\nbye now,1\nworld again,0\n")
  cfg = tiny_config().data
  cfg.source, cfg.path, cfg.test_size, cfg.max_length = "csv", str(tmp_path / "t.csv"), 2, 4
  original = datasets.load(cfg)
  array_record.convert(original, tmp_path / "words")
  back = datasets.load(_source(tmp_path / "words", modality="text"))
  np.testing.assert_array_equal(back.train.inputs, original.train.inputs)
  assert back.train.inputs.dtype == np.int32 and back.vocab_size == original.vocab_size
  with pytest.raises(datasets.DataError, match="set data.modality=text"):
    datasets.load(_source(tmp_path / "words"))
  cfg.tokenizer = "chars"  # a fixed alphabet: most ids never occur
  array_record.convert(datasets.load(cfg), tmp_path / "chars")
  with pytest.raises(datasets.DataError, match=r"chars/index.json: the tokenizer's vocab_size"):
    datasets.load(_source(tmp_path / "chars", modality="text"))
