"""Config validation: every bad field is named before any compute starts."""

import subprocess
import sys

import pytest

from jaxal import config as config_lib
from tests.conftest import tiny_config


@pytest.mark.parametrize("field,value,msg", [
    ("train.epochs", 0, "train.epochs"),
    ("train.batch_size", -1, "train.batch_size"),
    ("train.optimizer", "adagrad", "train.optimizer"),
    ("train.lr_schedule", "0:0.1,5", "train.lr_schedule"),
    ("train.lr_schedule", "3:0.1", "train.lr_schedule"),
    ("train.weight_decay_on", "bias", "train.weight_decay_on"),
    ("train.patience", 3, "train.patience"),
    ("al.initial_size", 0, "al.initial_size"),
    ("al.num_rounds", 0, "al.num_rounds"),
    ("al.query_schedule", "0:-5", "al.query_schedule"),
    ("acquisition.name", "psychic", "acquisition.name"),
    ("model.name", "resnet9000", "model.name"),
    ("data.source", "ftp", "data.source"),
    ("data.normalization", "zca", "data.normalization"),
    ("augment.max_degrees", 400.0, "augment.max_degrees"),
    ("search.name", "magic", "search.name"),
])
def test_bad_fields_are_named(field, value, msg):
  c = tiny_config(**{field: value})
  with pytest.raises(config_lib.ConfigError, match=msg):
    config_lib.validate(c)


def test_base_and_tiny_configs_are_valid():
  config_lib.validate(config_lib.base_config())
  config_lib.validate(tiny_config())


def test_budget_checked_against_pool():
  c = tiny_config(**{"al.num_rounds": 100, "al.query_schedule": "0:50"})
  with pytest.raises(config_lib.ConfigError, match="al.query_schedule.*pool has 1000"):
    config_lib.validate_against_data(c, 1000)
  c = tiny_config(**{"al.initial_size": 5000})
  with pytest.raises(config_lib.ConfigError, match="al.initial_size"):
    config_lib.validate_against_data(c, 1000)
  c = tiny_config(**{"al.num_rounds": 100, "al.query_schedule": "0:50", "al.max_labeled": 500})
  config_lib.validate_against_data(c, 1000)
  assert config_lib.planned_sizes(c, 1000)[-1] == 500


def test_planned_sizes_follow_schedule():
  c = tiny_config(**{"al.initial_size": 2000, "al.query_schedule": "0:2000,10000:5000", "al.num_rounds": 7})
  assert config_lib.planned_sizes(c, 50000) == [2000, 4000, 6000, 8000, 10000, 15000, 20000]


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "jaxal.main", *args], capture_output=True, text=True, timeout=120)


def test_cli_rejects_misspelt_override(tmp_path):
  out = _cli("--config=configs/digits_demo.py", f"--workdir={tmp_path}", "--config.train.epocs=3")
  assert out.returncode != 0 and "epocs" in out.stderr
  assert not (tmp_path / "checkpoints").exists()


def test_cli_rejects_ill_typed_override(tmp_path):
  out = _cli("--config=configs/digits_demo.py", f"--workdir={tmp_path}", "--config.train.epochs=many")
  assert out.returncode != 0 and "train.epochs" in out.stderr


def test_cli_rejects_out_of_range_value_before_compute(tmp_path):
  out = _cli("--config=configs/digits_demo.py", f"--workdir={tmp_path}", "--config.train.epochs=0")
  assert out.returncode == 2 and "train.epochs" in out.stderr
  assert "Traceback" not in out.stderr
  assert not (tmp_path / "checkpoints").exists()
