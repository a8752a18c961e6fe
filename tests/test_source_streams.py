"""Sources read by index (issue 28): `jaxal convert` and a streamed run's conversion hold a chunk of
the source, never all of it, and write what the in-memory path reads; TFDS data_dirs are read in
place."""

import gzip
import tracemalloc

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxal import cli
from jaxal import loop
from jaxal.data import datasets
from jaxal.data import file_streams
from jaxal.data import source_streams
from jaxal.data import stream
from tests.conftest import tiny_config
from tests.test_stream import _assert_same_run

CONFIG_FILE = """
from jaxal import config as config_lib

def get_config():
  c = config_lib.base_config()
  c.data.source, c.data.path, c.data.test_size = "npz", {path!r}, 300
  return c
"""


def _data_config(**fields):
  cfg = tiny_config().data
  for k, v in fields.items():
    cfg[k] = v
  return cfg


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
  """`{name: (data config, bytes of its inputs)}`: a few MB each, rows of a few KB."""
  d, rng = tmp_path_factory.mktemp("sources"), np.random.default_rng(0)
  x, y = rng.integers(0, 256, (2000, 32, 32, 3), np.uint8), rng.integers(0, 10, 2000)
  np.savez(d / "stored.npz", x=x, y=y)
  np.savez_compressed(d / "compressed.npz", x=x.astype(np.float32) / 255, y=y)  # floats: 4x the bytes to inflate
  images = x.reshape(2000, 64, 48)
  with gzip.open(d / "images.gz", "wb", compresslevel=1) as f:
    f.write(bytes([0, 0, 8, 3]) + b"".join(v.to_bytes(4, "big") for v in images.shape) + images.tobytes())
  with gzip.open(d / "labels.gz", "wb") as f:
    f.write(bytes([0, 0, 8, 1]) + (2000).to_bytes(4, "big") + y.astype(np.uint8).tobytes())
  words = np.array([f"w{i}" for i in range(400)])
  lines = [f"{' '.join(rng.choice(words, 300))},{i % 3}\n" for i in range(1500)]
  (d / "texts.csv").write_text("text,label\n" + "".join(lines))
  return {
      "npz": (_data_config(source="npz", path=str(d / "stored.npz"), test_size=300), x.nbytes),
      "npz_compressed": (_data_config(source="npz", path=str(d / "compressed.npz"), test_size=300,
                                      shuffle_train=True), x.nbytes * 4),
      "idx_gz": (_data_config(source="idx", path=str(d / "images.gz"), labels_path=str(d / "labels.gz"),
                              test_size=300, max_train=1800), images.nbytes),
      "csv": (_data_config(source="csv", path=str(d / "texts.csv"), test_size=300, max_length=64),
              (d / "texts.csv").stat().st_size),
  }


def _traced_peak(fn):
  tracemalloc.start()
  try:
    result = fn()
    return result, tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()


@pytest.mark.parametrize("name", ["npz", "npz_compressed", "idx_gz", "csv"])
def test_conversion_holds_a_chunk_not_the_dataset(sources, tmp_path, monkeypatch, name):
  """A streamed run's conversion (npz: `jaxal convert`) peaks (tracemalloc: Python and numpy
  allocations) at a fraction of the inputs' bytes; the in-memory load it replaced held them all.
  The converted records are exactly what the in-memory path reads."""
  monkeypatch.setattr(source_streams, "CHUNK_BYTES", 256 << 10)  # rows of images held at once
  monkeypatch.setattr(source_streams, "TEXT_ROWS", 64)  # texts held at once
  cfg, size = sources[name]
  if name == "npz":
    (tmp_path / "config.py").write_text(CONFIG_FILE.format(path=cfg.path))
    index, peak = _traced_peak(lambda: cli.convert(tmp_path / "config.py", tmp_path / "out"))
    directory = index.parent
  else:
    directory, peak = _traced_peak(lambda: stream.prepare(cfg, tmp_path))
    assert directory == tmp_path / stream.CONVERTED_DIR
  original, memory_peak = _traced_peak(lambda: datasets.load(cfg))
  print(f"{name}: inputs {size} B, converting peaked at {peak} B, the in-memory load at {memory_peak} B")
  assert peak < size / 3 and memory_peak > size, (peak, memory_peak, size)
  back = datasets.load(_data_config(source="array_record", path=str(directory), test_size=0,
                                    modality=original.modality))
  for split in ("train", "test"):
    a, b = getattr(original, split), getattr(back, split)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.inputs.dtype == b.inputs.dtype and list(a.ids) == list(b.ids)
  assert (back.num_classes, back.class_names, back.vocab_size) == (original.num_classes, original.class_names,
                                                                   original.vocab_size)


def test_tfds_images_of_their_own_sizes_are_resized_by_image_size_in_memory_and_in_place(tmp_path):
  """ImageNet's images each have their own size (mock imagenet2012 too): `data.image_size`
  resizes every one, the same in memory and read by index; left unset, the first image of
  another size is named, before any compute."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  data = {"data.source": "tfds", "data.name": "imagenet2012", "data.test_split": "validation",
          "data.image_size": (12, 10)}
  memory, streamed = tiny_config(**data), tiny_config(**data, **{"data.pool_storage": "stream"})
  with tfds.testing.mock_data(num_examples=9):
    raw = tfds.data_source("imagenet2012", split="train", download=False)
    raw_shapes = {np.asarray(raw[i]["image"]).shape[:2] for i in range(9)}
    want = np.stack([np.asarray(Image.fromarray(np.asarray(raw[i]["image"])).resize((10, 12))) for i in range(9)])
    a, b = loop.load_data(memory), loop.load_data(streamed, workdir=tmp_path / "unused")
    assert len(raw_shapes) > 1 and a.pool.inputs.shape == (9, 12, 10, 3)  # h = 12, w = 10
    order = [int(i.rsplit("/", 1)[1]) for i in a.pool.ids]  # ids "imagenet2012/train/INDEX" (pool order)
    np.testing.assert_array_equal(a.pool.inputs, want[order])
    rows = np.array([8, 0, 3])
    np.testing.assert_array_equal(b.pool_inputs.read(rows), a.pool.inputs[rows])
    assert a.dataset.test.inputs.shape[1:] == (12, 10, 3)
    for config in (memory, streamed):
      config.data.image_size = (0,)
      with pytest.raises(datasets.DataError, match=r"data.image_size: TFDS imagenet2012/(train|validation) record \d+ is \("):
        loop.load_data(config, workdir=tmp_path / "unused")


def test_tfds_images_are_read_in_place_with_the_picks_of_memory(tmp_path):
  """`tfds.data_source` by index (mock_data serves real ArrayRecord files): no conversion, the same
  normalization, fingerprint, rows and picks as the in-memory pool."""
  data = {"data.source": "tfds", "data.name": "mnist", "data.test_size": 0, "al.num_rounds": 2,
          "train.steps_per_call": 1, "train.epochs": 1}
  memory, streamed = tiny_config(**data), tiny_config(**data, **{"data.pool_storage": "stream"})
  with tfds.testing.mock_data(num_examples=150):
    assert file_streams.reads_in_place(streamed.data)
    a, b = loop.load_data(memory), loop.load_data(streamed, workdir=tmp_path / "unused")
    assert isinstance(b.pool_inputs.records, file_streams.TfdsRows) and b.preprocess == a.preprocess
    assert b.fingerprint == loop.fingerprint.of_splits(pool=a.pool, validation=None, test=a.dataset.test)
    rows = np.array([7, 0, 149, 7])
    np.testing.assert_array_equal(b.pool_inputs.read(rows), a.pool.inputs[rows])
    loop.run(memory, tmp_path / "memory")
    loop.run(streamed, tmp_path / "stream")
  assert not (tmp_path / "stream" / stream.CONVERTED_DIR).exists() and not (tmp_path / "unused").exists()
  _assert_same_run(tmp_path / "memory", tmp_path / "stream")
