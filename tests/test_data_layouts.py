"""Data as it comes: labels in a second file, text over several CSV columns, a plain-text class
list, and config fields the chosen source would ignore (refused before any compute)."""

import csv

import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import main
from jaxal.data import datasets
from jaxal.data import tokenize
from tests.conftest import tiny_config


def _data_cfg(**fields):
  c = config_lib.base_config().data
  for k, v in fields.items():
    c[k] = v
  return c


def _arrays(seed, n):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, 3, 3), dtype=np.uint8), np.arange(n) % 3


# --------------------------------------------------------------------------- labels in a second file


def test_npz_labels_in_a_second_archive(tmp_path):
  (x, y), (tx, ty), (ex, ey) = _arrays(0, 9), _arrays(1, 6), _arrays(2, 3)
  np.savez(tmp_path / "inputs.npz", train=x, test=tx)
  np.savez(tmp_path / "labels.npz", train=y, test=ty)
  np.savez(tmp_path / "extra_x.npz", x=ex)
  np.savez(tmp_path / "extra_y.npz", y=ey)
  same_archives = _data_cfg(source="npz", path=str(tmp_path / "inputs.npz"), labels_path=str(tmp_path / "labels.npz"),
                            x_key="train", y_key="train", test_x_key="test", test_y_key="test")
  ds = datasets.load(same_archives)  # the test split's labels come from data.labels_path too
  np.testing.assert_array_equal(ds.train.inputs, x[..., None])
  np.testing.assert_array_equal(ds.train.labels, y)
  np.testing.assert_array_equal(ds.test.inputs, tx[..., None])
  np.testing.assert_array_equal(ds.test.labels, ty)
  config_lib.validate(tiny_config(**{f"data.{k}": v for k, v in same_archives.items()}))
  ds = datasets.load(_data_cfg(source="npz", path=str(tmp_path / "inputs.npz"),
                               labels_path=str(tmp_path / "labels.npz"), x_key="train", y_key="train",
                               test_path=str(tmp_path / "extra_x.npz"),
                               test_labels_path=str(tmp_path / "extra_y.npz")))
  np.testing.assert_array_equal(ds.test.inputs, ex[..., None])
  np.testing.assert_array_equal(ds.test.labels, ey)
  with pytest.raises(datasets.DataError, match=r"labels\.npz: no array 'nope'"):
    datasets.load(_data_cfg(source="npz", path=str(tmp_path / "inputs.npz"), labels_path=str(tmp_path / "labels.npz"),
                            x_key="train", y_key="nope", test_size=3))


def test_hdf5_labels_in_a_second_file(tmp_path):
  h5py = pytest.importorskip("h5py")
  (x, y), (tx, ty) = _arrays(3, 9), _arrays(4, 6)
  with h5py.File(tmp_path / "images.h5", "w") as f:
    f["train/data"], f["test/data"] = x, tx
  with h5py.File(tmp_path / "targets.h5", "w") as f:
    f["train/target"], f["test/target"] = y.reshape(-1, 1), ty.reshape(-1, 1)
  ds = datasets.load(_data_cfg(source="hdf5", path=str(tmp_path / "images.h5"),
                               labels_path=str(tmp_path / "targets.h5"), test_x_key="test/data"))
  np.testing.assert_array_equal(ds.train.inputs, x[..., None])
  np.testing.assert_array_equal(ds.train.labels, y)
  np.testing.assert_array_equal(ds.test.inputs, tx[..., None])
  np.testing.assert_array_equal(ds.test.labels, ty)
  with h5py.File(tmp_path / "short.h5", "w") as f:
    f["y"] = y[:5]
  with pytest.raises(datasets.DataError, match=r"images\.h5\[train/data\] and .*short\.h5\[y\]: 9 inputs but 5 labels"):
    datasets.load(_data_cfg(source="hdf5", path=str(tmp_path / "images.h5"), labels_path=str(tmp_path / "short.h5"),
                            y_key="y", test_size=3))


# --------------------------------------------------------------------------- several text columns


def _write_csv(path, rows):
  with open(path, "w", newline="", encoding="utf-8") as f:
    csv.writer(f).writerows(rows)
  return str(path)


ROWS = [("1", "Great phone", "works well, long battery", "pos"), ("2", "", "broke in a week", "neg"),
        ("3", "Meh", "fine I guess", "pos"), ("4", "Awful", "screen cracked", "neg")]


def test_text_from_several_columns(tmp_path):
  path = _write_csv(tmp_path / "reviews.csv", [("id", "title", "body", "label"), *ROWS])
  texts, labels, _ = datasets.read_csv_text(tmp_path / "reviews.csv", "title, body", "label", True, " | ")
  expected = [" | ".join(p for p in (title, body) if p) for _, title, body, _ in ROWS]  # a blank title is skipped
  assert texts == expected and labels == [r[3] for r in ROWS]
  ds = datasets.load(_data_cfg(source="csv", path=path, test_path=path, text_column="title,body", max_length=12))
  reference, _ = tokenize.encode_texts([f"{t} {b}".strip() for _, t, b, _ in ROWS], tokenizer="words",
                                       max_length=12, fit_texts=[f"{t} {b}".strip() for _, t, b, _ in ROWS])
  np.testing.assert_array_equal(ds.train.inputs, reference)
  np.testing.assert_array_equal(ds.train.labels, [1, 0, 1, 0])  # classes sorted: neg, pos
  _write_csv(tmp_path / "headless.csv", [(r[3], r[1], r[2]) for r in ROWS])
  texts, labels, _ = datasets.read_csv_text(tmp_path / "headless.csv", "1,2", "0", False)
  assert texts == [f"{t} {b}".strip() for _, t, b, _ in ROWS] and labels == [r[3] for r in ROWS]
  assert datasets.read_csv_text(tmp_path / "reviews.csv", "body", "label", True)[0] == [r[2] for r in ROWS]


def test_several_text_columns_errors_name_the_line(tmp_path):
  _write_csv(tmp_path / "a.csv", [("title,body", "label"), ("one column named with a comma", "x")])
  assert datasets.read_csv_text(tmp_path / "a.csv", "title,body", "label", True)[0] == ["one column named with a comma"]
  _write_csv(tmp_path / "b.csv", [("title", "body", "label"), ("t", "b", "x"), (" ", "", "y")])
  with pytest.raises(datasets.DataError, match=r"b\.csv:3: empty text in columns 'title,body'"):
    datasets.read_csv_text(tmp_path / "b.csv", "title,body", "label", True)
  with pytest.raises(datasets.DataError, match="empty column name"):
    datasets.read_csv_text(tmp_path / "b.csv", "title,,body", "label", True)
  with pytest.raises(datasets.DataError, match=r"b\.csv: no column 'subject'"):
    datasets.read_csv_text(tmp_path / "b.csv", "title,subject", "label", True)


# --------------------------------------------------------------------------- plain-text class list


def test_class_names_one_per_line(tmp_path):
  path = _write_csv(tmp_path / "t.csv", [("text", "label"), ("good", "pos"), ("bad", "neg"), ("so so", "neutral"),
                                          ("great", "pos")])
  names = tmp_path / "classes.txt"
  names.write_bytes("\ufeffpos\r\n neutral \r\nneg\r\n\r\n\n".encode("utf-8"))  # BOM, CRLF, trailing blanks
  ds = datasets.load(_data_cfg(source="csv", path=path, test_path=path, class_names_path=str(names)))
  assert ds.class_names == ["pos", "neutral", "neg"] and ds.num_classes == 3
  np.testing.assert_array_equal(ds.train.labels, [0, 2, 1, 0])
  names.write_text("pos\n\nneg\nneutral\n", encoding="utf-8")
  with pytest.raises(datasets.DataError, match=r"classes\.txt:2: blank line between class names"):
    datasets.load(_data_cfg(source="csv", path=path, test_path=path, class_names_path=str(names)))
  names.write_text('["pos", "neg", "neutral"]', encoding="utf-8")  # JSON needs the .json suffix
  with pytest.raises(datasets.DataError, match=r"classes\.txt: holds a JSON list; name the file \.json"):
    datasets.load(_data_cfg(source="csv", path=path, test_path=path, class_names_path=str(names)))
  (tmp_path / "classes.json").write_text('["neutral", "neg", "pos"]', encoding="utf-8")
  json_names = str(tmp_path / "classes.json")
  ds = datasets.load(_data_cfg(source="csv", path=path, test_path=path, class_names_path=json_names))
  assert ds.class_names == ["neutral", "neg", "pos"]
  np.testing.assert_array_equal(ds.train.labels, [2, 1, 0, 2])


# --------------------------------------------------------------------------- fields the source ignores


UNUSED = {
    "labels_path_with_digits": ({"data.labels_path": "y.npz"}, "data.labels_path: the digits source does not read it"),
    "text_column_with_npz": ({"data.source": "npz", "data.path": "d.npz", "data.text_column": "body"},
                             "data.text_column: the npz source does not read it"),
    "x_key_with_csv": ({"data.source": "csv", "data.path": "t.csv", "data.x_key": "x"},
                       "data.x_key: the csv source does not read it"),
    "data_dir_with_npz": ({"data.source": "npz", "data.path": "d.npz", "data.data_dir": "/data"},
                          "data.data_dir: the npz source does not read it"),
    "normalization_with_csv": ({"data.source": "csv", "data.path": "t.csv", "data.normalization": "scalar"},
                               "data.normalization: the csv source does not read it"),
    "test_size_beside_test_path": ({"data.source": "csv", "data.path": "t.csv", "data.test_path": "t.csv"},
                                   "data.test_size: the csv source has a test split (data.test_path)"),
    "test_labels_path_without_test": ({"data.source": "idx", "data.path": "x", "data.labels_path": "y",
                                       "data.test_labels_path": "ty"},
                                      "data.test_labels_path: the idx source reads no test split"),
}


@pytest.mark.parametrize("name", sorted(UNUSED))
def test_field_the_source_ignores_is_refused(name, tmp_path, capsys):
  overrides, expected = UNUSED[name]
  code = main.execute(tiny_config(**overrides), str(tmp_path / "work"))
  err = capsys.readouterr().err
  assert code == 2 and err.startswith(f"error: {expected}"), err
  assert len(err.strip().splitlines()) == 1 and "ignored" in err, err
  assert not (tmp_path / "work").exists()  # refused before the workdir or any data was touched


def test_every_data_field_is_read_by_some_source():
  read = set(datasets.COMMON_FIELDS).union(*datasets.FIELDS_READ.values())
  assert set(config_lib.base_config().data) == read
  assert set(datasets.FIELDS_READ) == set(datasets.SOURCES)
  for source in datasets.SOURCES:  # the defaults are never refused
    assert datasets.unused_fields(_data_cfg(source=source), config_lib.base_config().data) == []
