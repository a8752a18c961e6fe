"""Every data source on real (../shared/data) or generated/mock data, plus errors."""

import gzip
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxal import config as config_lib
from jaxal.data import datasets


def data_cfg(**kw):
  c = config_lib.base_config().data
  for k, v in kw.items():
    c[k] = v
  return c


def write_idx(path, array, gz):
  codes = {np.uint8: 0x08, np.int32: 0x0C}
  header = bytes([0, 0, codes[array.dtype.type], array.ndim])
  header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
  (gzip.open if gz else open)(path, "wb").write(raw)


def test_digits():
  ds = datasets.load(data_cfg(source="digits", test_size=360))
  assert ds.train.inputs.shape == (1437, 8, 8, 1) and ds.train.inputs.dtype == np.uint8
  assert len(ds.test) == 360 and ds.num_classes == 10 and ds.modality == "image"
  assert ds.train.labels.dtype == np.int32
  assert not set(ds.train.ids) & set(ds.test.ids)
  counts = np.bincount(ds.test.labels, minlength=10)
  assert counts.min() >= 35  # stratified carve


def test_digits_needs_a_test_size():
  with pytest.raises(datasets.DataError, match="data.test_size"):
    datasets.load(data_cfg(source="digits"))


@pytest.mark.parametrize("name,shape", [("cifar10", (32, 32, 3)), ("cifar100", (32, 32, 3)),
                                        ("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)),
                                        ("svhn_cropped", (32, 32, 3))])
def test_tfds_images_on_mock_data(name, shape):
  with tfds.testing.mock_data(num_examples=12):
    ds = datasets.load(data_cfg(source="tfds", name=name))
  assert ds.train.inputs.shape == (12,) + shape and ds.train.inputs.dtype == np.uint8
  assert len(ds.test) == 12 and ds.num_classes == {"cifar100": 100}.get(name, 10)
  assert ds.train.labels.max() < ds.num_classes


@pytest.mark.parametrize("name,test_split", [("ag_news_subset", "test"), ("glue/qnli", "validation")])
def test_tfds_text_on_mock_data(name, test_split):
  with tfds.testing.mock_data(num_examples=10):
    ds = datasets.load(data_cfg(source="tfds", name=name, test_split=test_split, max_length=16))
  assert ds.modality == "text" and ds.train.inputs.shape == (10, 16) and ds.train.inputs.dtype == np.int32
  assert ds.vocab_size > 2 and (ds.train.inputs > 0).any()


def test_tfds_missing_dataset_is_refused_without_a_download(tmp_path, monkeypatch):
  def no_download(*args, **kwargs):
    raise AssertionError("jaxal tried to download a TFDS dataset at run time")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
  with pytest.raises(datasets.DataError) as info:
    datasets.load(data_cfg(source="tfds", name="cifar10", data_dir=str(tmp_path)))
  message = str(info.value)
  assert "'cifar10' is not prepared" in message and str(tmp_path) in message
  assert "tfds build cifar10 --file_format=array_record" in message and "data.data_dir" in message


def test_tfds_prepared_but_unreadable_names_the_format(tmp_path, monkeypatch):
  # A dataset prepared as TFRecord files exists but `tfds.data_source` cannot open it.
  def tfrecord_only(*args, **kwargs):
    raise NotImplementedError("Random access data source for file format FileFormat.TFRECORD is not supported")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
  monkeypatch.setattr(tfds, "data_source", tfrecord_only)
  with pytest.raises(datasets.DataError) as info:
    datasets.load(data_cfg(source="tfds", name="cifar10", data_dir=str(tmp_path)))
  message = str(info.value)
  assert "cifar10[train]" in message and "TFRECORD" in message and "array_record" in message
  assert "not prepared" not in message


def test_idx_real_mnist_test(shared_data):
  d = shared_data / "mnist_test"
  ds = datasets.load(data_cfg(source="idx", path=str(d / "t10k-images-idx3-ubyte.gz"),
                              labels_path=str(d / "t10k-labels-idx1-ubyte.gz"), test_size=2000))
  assert len(ds.train) == 8000 and len(ds.test) == 2000 and ds.train.inputs.shape[1:] == (28, 28, 1)
  all_labels = np.concatenate([ds.train.labels, ds.test.labels])
  np.testing.assert_array_equal(np.bincount(all_labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
  x = np.random.default_rng(0).integers(0, 256, (30, 5, 4), dtype=np.uint8)
  y = (np.arange(30) % 3).astype(np.uint8)
  suffix = ".gz" if gz else ""
  write_idx(tmp_path / f"x{suffix}", x, gz)
  write_idx(tmp_path / f"y{suffix}", y, gz)
  write_idx(tmp_path / f"tx{suffix}", x[:6], gz)
  write_idx(tmp_path / f"ty{suffix}", y[:6], gz)
  ds = datasets.load(data_cfg(source="idx", path=str(tmp_path / f"x{suffix}"), labels_path=str(tmp_path / f"y{suffix}"),
                              test_path=str(tmp_path / f"tx{suffix}"), test_labels_path=str(tmp_path / f"ty{suffix}")))
  np.testing.assert_array_equal(ds.train.inputs[..., 0], x)
  np.testing.assert_array_equal(ds.train.labels, y)
  assert len(ds.test) == 6


def test_idx_truncated_file_is_reported(tmp_path):
  write_idx(tmp_path / "x", np.zeros((4, 3, 3), np.uint8), False)
  raw = (tmp_path / "x").read_bytes()
  (tmp_path / "bad").write_bytes(raw[:-5])
  with pytest.raises(datasets.DataError, match=r"bad: IDX header says"):
    datasets.read_idx(tmp_path / "bad")
  (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04hello")
  with pytest.raises(datasets.DataError, match="bad magic"):
    datasets.read_idx(tmp_path / "junk")


def test_npz_with_keys(tmp_path):
  rng = np.random.default_rng(1)
  x = rng.random((20, 6, 6, 3)).astype(np.float32)
  y = np.arange(20) % 4
  np.savez(tmp_path / "d.npz", images=x, targets=y, timg=x[:5], tlab=y[:5])
  ds = datasets.load(data_cfg(source="npz", path=str(tmp_path / "d.npz"), x_key="images", y_key="targets",
                              test_x_key="timg", test_y_key="tlab"))
  assert ds.train.inputs.dtype == np.uint8 and ds.train.inputs.shape == (20, 6, 6, 3)
  np.testing.assert_array_equal(ds.train.inputs, np.round(x * 255).astype(np.uint8))
  assert len(ds.test) == 5 and ds.num_classes == 4
  with pytest.raises(datasets.DataError, match="no array 'nope'"):
    datasets.load(data_cfg(source="npz", path=str(tmp_path / "d.npz"), x_key="nope", y_key="targets", test_size=2))


def test_npz_refuses_pickled_objects(tmp_path):
  np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4, int))
  with pytest.raises(datasets.DataError, match="obj.npz"):
    datasets.load(data_cfg(source="npz", path=str(tmp_path / "obj.npz"), test_size=1))


def test_image_folder(tmp_path):
  from PIL import Image
  rng = np.random.default_rng(2)
  for split, n in (("train", 4), ("test", 2)):
    for cls in ("cat", "dog", "eel"):
      (tmp_path / split / cls).mkdir(parents=True)
      for i in range(n):
        Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
  ds = datasets.load(data_cfg(source="image_folder", path=str(tmp_path / "train"), test_path=str(tmp_path / "test")))
  assert ds.train.inputs.shape == (12, 9, 7, 3) and ds.class_names == ["cat", "dog", "eel"]
  np.testing.assert_array_equal(np.bincount(ds.train.labels), [4, 4, 4])
  assert ds.train.ids[0].endswith("cat/0.png")
  first = np.asarray(Image.open(tmp_path / "train" / "cat" / "0.png"))
  np.testing.assert_array_equal(ds.train.inputs[0], first)
  (tmp_path / "train" / "dog" / "broken.png").write_bytes(b"not a png")
  with pytest.raises(datasets.DataError, match="broken.png: cannot decode"):
    datasets.load(data_cfg(source="image_folder", path=str(tmp_path / "train"), test_size=3))


def test_csv_real_banking77(shared_data):
  d = shared_data / "banking77"
  ds = datasets.load(data_cfg(source="csv", path=str(d / "train.csv"), test_path=str(d / "test.csv"),
                              text_column="text", label_column="category",
                              class_names_path=str(d / "categories.json"), max_length=32))
  assert len(ds.train) == 10003 and len(ds.test) == 3080 and ds.num_classes == 77
  np.testing.assert_array_equal(np.bincount(ds.test.labels, minlength=77), np.full(77, 40))
  names = json.loads((d / "categories.json").read_text())
  assert names[ds.train.labels[0]] == "card_arrival"
  assert ds.train.inputs.shape == (10003, 32) and ds.modality == "text"


def test_csv_without_header_and_bad_label(tmp_path):
  (tmp_path / "t.csv").write_text('0,"hello, world"\n1,good bye\n0,hello again\n1,bye\n')
  ds = datasets.load(data_cfg(source="csv", path=str(tmp_path / "t.csv"), csv_header=False,
                              text_column="1", label_column="0", test_size=2, max_length=4))
  assert ds.num_classes == 2 and ds.train.inputs.shape == (2, 4)
  (tmp_path / "names.json").write_text('["0", "1"]')
  (tmp_path / "bad.csv").write_text("0,fine\n7,oops\n")
  with pytest.raises(datasets.DataError, match=r"bad.csv:2: label '7'"):
    datasets.load(data_cfg(source="csv", path=str(tmp_path / "bad.csv"), csv_header=False, text_column="1",
                           label_column="0", class_names_path=str(tmp_path / "names.json"), test_size=1))
  (tmp_path / "short.csv").write_text("text,label\nonly one column\n")
  with pytest.raises(datasets.DataError, match=r"short.csv:2: expected at least 2 columns"):
    datasets.load(data_cfg(source="csv", path=str(tmp_path / "short.csv"), test_size=1))


def test_hdf5_real_usps(shared_data):
  ds = datasets.load(data_cfg(source="hdf5", path=str(shared_data / "usps" / "usps.h5"), image_shape=(16, 16, 1),
                              test_x_key="test/data", test_y_key="test/target"))
  assert ds.train.inputs.shape == (7291, 16, 16, 1) and len(ds.test) == 2007
  np.testing.assert_array_equal(ds.test.labels[:10], [9, 6, 3, 6, 6, 0, 0, 0, 6, 9])
  np.testing.assert_array_equal(np.bincount(ds.train.labels), [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644])


def test_hdf5_generated_and_missing_key(tmp_path):
  h5py = pytest.importorskip("h5py")
  with h5py.File(tmp_path / "d.h5", "w") as f:
    f["x"] = np.random.default_rng(0).integers(0, 256, (10, 4, 4), dtype=np.uint8)
    f["y"] = np.arange(10) % 2
  ds = datasets.load(data_cfg(source="hdf5", path=str(tmp_path / "d.h5"), x_key="x", y_key="y", test_size=4))
  assert ds.train.inputs.shape == (6, 4, 4, 1)
  with pytest.raises(datasets.DataError, match="no dataset 'z'"):
    datasets.load(data_cfg(source="hdf5", path=str(tmp_path / "d.h5"), x_key="z", y_key="y", test_size=4))


def test_validation_carve_is_disjoint_and_stratified():
  ds = datasets.load(data_cfg(source="digits", test_size=360))
  rest, val = datasets.carve(ds.train, 200, seed=1)
  assert len(rest) + len(val) == len(ds.train)
  assert not set(rest.ids) & set(val.ids)
  assert np.bincount(val.labels, minlength=10).min() >= 19


@pytest.mark.parametrize("kw,msg", [
    (dict(source="idx", path="/nonexistent/x.gz", labels_path="/nonexistent/y.gz"), "data.path"),
    (dict(source="nope"), "data.source"),
])
def test_missing_inputs_name_the_field(kw, msg):
  with pytest.raises(datasets.DataError, match=msg):
    datasets.load(data_cfg(**kw))


def test_labels_out_of_range(tmp_path):
  np.savez(tmp_path / "d.npz", x=np.zeros((6, 2, 2), np.uint8), y=np.array([0, 1, 5, 1, 0, 1]))
  with pytest.raises(datasets.DataError, match="label 5 out of range"):
    datasets.load(data_cfg(source="npz", path=str(tmp_path / "d.npz"), num_classes=3, test_size=2))


def test_digits_read_from_the_packaged_csv_equal_scikit_learns():
  from sklearn import datasets as skdatasets
  images, labels = datasets.read_digits()
  want = skdatasets.load_digits()
  np.testing.assert_array_equal(images, want.images)
  np.testing.assert_array_equal(labels, want.target)
  assert labels.dtype == np.int32
