"""The shipped configs are valid, and the paper configs run when shrunk onto mock data."""

import importlib.util
import pathlib

import pytest
import tensorflow_datasets as tfds

from jaxal import config as config_lib
from jaxal import loop

CONFIGS = sorted(pathlib.Path(__file__).resolve().parents[1].joinpath("configs").glob("*.py"))


def load_config(path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_is_valid(path):
  config_lib.validate(load_config(path))


def test_inas_cifar10_shrunk_on_mock_tfds(tmp_path):
  c = load_config(pathlib.Path(__file__).resolve().parents[1] / "configs" / "inas_cifar10.py")
  c.model.options.width = 2
  c.train.epochs = 1
  c.train.epoch_size = 32
  c.train.batch_size = 16
  c.al.initial_size = 10
  c.al.query_schedule = "0:10"
  c.al.num_rounds = 2
  c.search.epochs = 1
  c.output.verbose = False
  with tfds.testing.mock_data(num_examples=40):
    history = loop.run(c, tmp_path)
  assert [r["num_labeled"] for r in history] == [10, 20]
  assert history[0]["search"]["start"] == [1, 1]
  assert len(history[0]["search"]["steps"][0]) == 3
