"""Issue 28 item 7: configs/svp_imagenet.py (SVP's ImageNet proxies, target and label schedule) and
configs/svp_amazon_polarity.py (streamed, and reading a `jaxal convert` directory)."""

import pathlib

import pytest

from jaxal import config as config_lib

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "svp_imagenet.py"
AMAZON = CONFIG.with_name("svp_amazon_polarity.py")
TRAIN_SIZE = 1_281_167  # ImageNet-1k's training images


@pytest.mark.parametrize("arg,proxy,epochs,target,acquisition", [
    ("resnet18", "resnet18", 90, "resnet50", "least_confidence"),
    ("resnet50_short", "resnet50", 45, "resnet50", "least_confidence"),
    ("resnet18,coreset", "resnet18", 90, "resnet50", "coreset"),
    ("baseline,coreset", "resnet50", 90, "", "coreset"),
])
def test_proxies_and_target(arg, proxy, epochs, target, acquisition):
  c = config_lib.load_config_file(f"{CONFIG}:{arg}")
  config_lib.validate(c)
  assert (c.model.name, c.train.epochs, c.target.name, c.acquisition.name) == (proxy, epochs, target, acquisition)
  assert c.model.options.stem == "imagenet" and c.data.pool_storage == "stream"
  assert tuple(c.data.image_size) == (224, 224)  # imagenet2012's images each have their own size
  if target:  # the target trains the full schedule whatever the proxy's
    assert (c.target.epochs, c.target.lr_schedule) == (90, "0:0.1,30:0.01,60:0.001,80:0.0001")


def test_schedule_is_2_then_8_then_10_percent_up_to_50():
  c = config_lib.load_config_file(CONFIG)
  sizes = config_lib.planned_sizes(c, TRAIN_SIZE)
  assert sizes == [25_623, 128_116, 256_232, 384_348, 512_464, 640_580]
  assert [round(100 * s / TRAIN_SIZE) for s in sizes] == [2, 10, 20, 30, 40, 50]


def test_unknown_argument_names_the_choices():
  with pytest.raises(ValueError, match="PROXY one of .*'resnet18', 'resnet50_short', 'baseline'"):
    config_lib.load_config_file(f"{CONFIG}:resnet34")


def test_amazon_streams_the_csv_or_reads_a_converted_directory(tmp_path):
  c = config_lib.load_config_file(AMAZON)
  assert (c.data.source, c.data.pool_storage) == ("csv", "stream")
  c = config_lib.load_config_file(f"{AMAZON}:{tmp_path}")
  config_lib.validate(c)  # the CSV-only fields are back at their defaults, so none is refused as unread
  assert (c.data.source, c.data.path, c.data.modality, c.data.pool_storage) == (
      "array_record", str(tmp_path), "text", "stream")
  assert c.model.name == "fasttext" and c.target.name == "vdcnn29"
