"""The shipped configs are valid, and the paper configs run when shrunk onto mock data."""

import pathlib

import pytest
import tensorflow_datasets as tfds

from jaxal import config as config_lib
from jaxal import loop

CONFIGS = sorted(pathlib.Path(__file__).resolve().parents[1].joinpath("configs").glob("*.py"))


load_config = config_lib.load_config_file


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_is_valid(path):
  try:
    config = load_config(path)
  except FileNotFoundError as e:  # a config that needs a local checkpoint absent here (it names it)
    pytest.skip(str(e))
  config_lib.validate(config)


BAYES_ARCH_VARIANTS = ("dd_spo", "dd_joint", "dd_upo", "bb_spo", "bb_joint", "bb_upo", "pdarts_spo", "pdarts_joint",
                       "pdarts_upo", "plain1", "plain5", "plain9")


@pytest.mark.parametrize("variant", BAYES_ARCH_VARIANTS)
def test_bayes_arch_mnist_cpu_variants_are_valid(variant):
  path = pathlib.Path(__file__).resolve().parents[1] / "configs" / f"bayes_arch_mnist_cpu.py:{variant}"
  c = load_config(path)
  config_lib.validate(c)
  if variant.startswith("pdarts_"):
    assert c.search.name == "pdarts" and c.search.mode == variant[len("pdarts_"):]
    assert c.model.name == "darts_net"


def test_inas_cifar10_shrunk_on_mock_tfds(tmp_path, fast_compiles):
  c = load_config(pathlib.Path(__file__).resolve().parents[1] / "configs" / "inas_cifar10.py")
  c.model.options.width = 2
  c.train.epochs = 1
  c.train.steps_per_call = 1  # each candidate's train block compiles once per step it unrolls
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


def test_design_card_command_on_mock_tfds(tmp_path):
  """`python -m jaxal.main --config=configs/svp_cifar100.py`, shrunk onto mock CIFAR-100."""
  import os
  import subprocess
  import sys
  code = (
      "import sys, jax, tensorflow_datasets as tfds\n"
      "jax.config.update('jax_disable_most_optimizations', True)  # ResNet-164 compiles faster\n"
      "from absl import app\n"
      "from jaxal import main\n"
      "sys.argv = ['jaxal.main', '--config=configs/svp_cifar100.py', "
      f"'--workdir={tmp_path}', '--config.model.options.width=2', '--config.target.options.width=2', "
      "'--config.train.epochs=1', '--config.target.epochs=1', '--config.train.batch_size=8', "
      "'--config.train.steps_per_call=1', "
      "'--config.al.initial_size=8', '--config.al.query_schedule=0:8', '--config.al.num_rounds=2', "
      "'--config.target.eval_rounds=all', '--config.output.verbose=False']\n"
      "with tfds.testing.mock_data(num_examples=40):\n"
      "  try:\n"
      "    app.run(main.main)\n"
      "  except SystemExit as e:\n"
      "    assert e.code == 0, e.code\n")
  root = pathlib.Path(__file__).resolve().parents[1]
  out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.returncode == 0, out.stderr[-3000:]
  from jaxal.checkpoint import run_files
  rows = run_files.read_rounds(tmp_path)
  assert [r["num_labeled"] for r in rows] == [8, 16]
  assert rows[0]["architecture"].startswith("preact_resnet20") and rows[-1]["target_architecture"].startswith("preact_resnet164")
  assert "spearman" in rows[0]


def test_svp_amazon_polarity_shrunk_on_a_headerless_csv(tmp_path):
  """The Amazon config reads Zhang et al.'s CSV layout (no header; class, title, review)."""
  import csv  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  words = {"1": ["awful", "broke", "refund", "bad"], "2": ["great", "love", "perfect", "works"]}
  for name, n in (("train.csv", 120), ("test.csv", 40)):
    with open(tmp_path / name, "w", newline="") as f:
      writer = csv.writer(f)
      for i in range(n):
        label = "12"[i % 2]
        review = " ".join(rng.choice(words[label], 6)) + ', "quoted", and more.'
        writer.writerow([label, f"title {i}", review])
  c = load_config(pathlib.Path(__file__).resolve().parents[1] / "configs" / "svp_amazon_polarity.py")
  c.data.path, c.data.test_path = str(tmp_path / "train.csv"), str(tmp_path / "test.csv")
  c.data.max_length = 48
  c.model.options.buckets = 1000
  c.target.options.width = 4
  c.target.options.fc_width = 16
  c.train.epochs, c.target.epochs, c.train.batch_size, c.train.steps_per_call = 1, 1, 16, 1
  c.target.lr_schedule = "0:0.01"
  c.al.initial_size, c.al.query_schedule, c.al.num_rounds = 16, "0:16", 2
  c.output.verbose = False
  history = loop.run(c, tmp_path / "run")
  assert [r["num_labeled"] for r in history] == [16, 32]
  assert history[-1]["target_architecture"].startswith("vdcnn29")
  assert history[0]["architecture"].startswith("fasttext")
  assert 0.0 <= history[-1]["target_test_accuracy"] <= 1.0


def test_paper_image_protocol_config():
  """§3.2: balanced 1,000 + 25 rounds of 1,000, 90/10 split, <= 500 epochs, 99% / 50-epoch stops."""
  from jaxal import study
  c = load_config(pathlib.Path(__file__).resolve().parents[1] / "configs" / "study_paper_image.py")
  config_lib.validate(c)
  runs = study.expand(c)
  assert len(runs) == 6 * 7 * 2 * 3
  for run in runs:
    config_lib.validate(study.run_config(c, run))
  pool = 50_000 - c.data.validation_size
  assert c.data.validation_size / 50_000 == pytest.approx(0.1)
  sizes = config_lib.planned_sizes(c, pool)
  assert sizes == list(range(1000, 26_001, 1000)) and len(sizes) == 1 + 25
  assert c.al.balanced_initial and c.train.epochs == 500
  assert c.train.stop_at_train_accuracy == 0.99 and c.train.patience == 50
  assert {r.pretrain for r in runs} == {"none", "deepcluster"}


@pytest.mark.parametrize("axis,settings", [
    ("initial_size", {"init1000": 1000, "init5000": 5000}),
    ("acquisition_size", {"acq500": 500, "acq1000": 1000, "acq1500": 1500}),
    ("augmentation", {"no_augment": False, "augment": True}),
])
def test_paper_image_axes_add_a_settings_axis(axis, settings):
  """Figure 6 (initial 1,000 vs 5,000), Appendix C.2 (acquisition size) and Figure 7 (augmentation)."""
  from jaxal import study
  c = load_config(pathlib.Path(__file__).resolve().parents[1] / "configs" / f"study_paper_image.py:{axis}")
  runs = study.expand(c)
  assert len(runs) == 6 * 7 * 2 * 3 * len(settings)
  for name, value in settings.items():
    rc = study.run_config(c, next(r for r in runs if r.setting == name))
    config_lib.validate(rc)
    got = {"initial_size": rc.al.initial_size, "acquisition_size": config_lib.planned_sizes(rc, 45_000)[1]
           - rc.al.initial_size, "augmentation": rc.augment.flip and rc.augment.max_shift == 4}[axis]
    assert got == value, name
