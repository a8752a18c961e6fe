"""Malformed files and configs: each gets a clear error naming the file or field, before compute."""


import numpy as np
import pytest

from jaxal import main
from tests.conftest import tiny_config


def _idx(dtype_code, dims, payload):
  header = bytes([0, 0, dtype_code, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)
  return header + payload


def _write(path, data):
  path.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(data, str):
    path.write_text(data, encoding="utf-8")
  else:
    path.write_bytes(data)
  return str(path)


def _png(path, shape=(6, 6, 3)):
  from PIL import Image
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.zeros(shape, np.uint8)).save(path)


GOOD_IMAGES = _idx(0x08, (4, 3, 3), bytes(36))
GOOD_LABELS = _idx(0x08, (4,), bytes([0, 1, 0, 1]))


def _idx_case(images, labels):
  def make(tmp):
    return {"data.source": "idx", "data.path": _write(tmp / "x.idx", images),
            "data.labels_path": _write(tmp / "y.idx", labels), "data.test_size": 1}
  return make


def _npz_case(**arrays):
  def make(tmp):
    path = tmp / "d.npz"
    np.savez(path, **arrays)
    return {"data.source": "npz", "data.path": str(path), "data.test_size": 2}
  return make


def _csv_case(text, **extra):
  def make(tmp):
    cfg = {"data.source": "csv", "data.path": _write(tmp / "t.csv", text), "data.test_size": 1}
    for k, v in extra.items():
      cfg[k] = v(tmp) if callable(v) else v
    return cfg
  return make


def _folder_case(build):
  def make(tmp):
    build(tmp / "imgs")
    return {"data.source": "image_folder", "data.path": str(tmp / "imgs"), "data.test_size": 1}
  return make


def _mixed_sizes(root):
  _png(root / "a" / "0.png", (6, 6, 3))
  _png(root / "b" / "0.png", (7, 6, 3))


def _corrupt_png(root):
  _png(root / "a" / "0.png")
  _write(root / "b" / "0.png", b"\x89PNG garbage")


def _no_class_dirs(root):
  _write(root / "loose.png", b"")


def _empty_class(root):
  _png(root / "a" / "0.png")
  _png(root / "a" / "1.png")
  (root / "b").mkdir(parents=True)


def _h5_case(keys_ok=True, junk=False, x_key=None):
  def make(tmp):
    path = tmp / "d.h5"
    if junk:
      _write(path, b"not hdf5 at all")
    else:
      import h5py
      with h5py.File(path, "w") as f:
        f["x"] = np.zeros((4, 2, 2), np.uint8)
        f["y"] = np.array([0, 1, 0, 1])
        f["train/data"] = np.zeros((4, 2, 2), np.uint8)
    return {"data.source": "hdf5", "data.path": str(path),
            "data.x_key": x_key or ("x" if keys_ok else "images"), "data.y_key": "y", "data.test_size": 1}
  return make


def _npz_bytes(save=np.savez, **arrays):
  import io
  buffer = io.BytesIO()
  save(buffer, **arrays)
  return buffer.getvalue()


_GOOD_NPZ = _npz_bytes(x=np.arange(64, dtype=np.uint8).reshape(4, 4, 4), y=np.arange(4) % 2)


def _corrupt_member():
  """A compressed archive whose `x` member has flipped bytes; its zip directory stays intact."""
  import io
  import zipfile
  raw = _npz_bytes(np.savez_compressed, x=np.arange(64, dtype=np.uint8).reshape(4, 4, 4), y=np.arange(4) % 2)
  info = zipfile.ZipFile(io.BytesIO(raw)).getinfo("x.npy")
  at = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
  return raw[:at] + bytes(b ^ 0xFF for b in raw[at:at + 8]) + raw[at + 8:]


def _npy_bytes():
  import io
  buffer = io.BytesIO()
  np.save(buffer, np.zeros((4, 2, 2), np.uint8))
  return buffer.getvalue()


def _raw_npz_case(raw):
  return lambda t: {"data.source": "npz", "data.path": _write(t / "d.npz", raw), "data.test_size": 1}


FILE_CASES = {
    "idx_truncated": (_idx_case(GOOD_IMAGES[:-3], GOOD_LABELS), "x.idx"),
    "idx_bad_magic": (_idx_case(b"\x01\x02" + GOOD_IMAGES[2:], GOOD_LABELS), "bad magic"),
    "idx_bad_dtype": (_idx_case(_idx(0x42, (4, 3, 3), bytes(36)), GOOD_LABELS), "unknown IDX data type"),
    "idx_empty_file": (_idx_case(b"", GOOD_LABELS), "x.idx"),
    "idx_count_mismatch": (_idx_case(GOOD_IMAGES, _idx(0x08, (3,), bytes([0, 1, 0]))), "4 inputs but 3 labels"),
    "idx_labels_2d": (_idx_case(GOOD_IMAGES, _idx(0x08, (2, 2), bytes(4))), "one-dimensional"),
    "idx_images_1d": (_idx_case(_idx(0x08, (4,), bytes(4)), GOOD_LABELS), "images must be"),
    "idx_corrupt_gzip": (lambda t: {"data.source": "idx", "data.path": _write(t / "x.gz", b"\x1f\x8b\x08junk"),
                                    "data.labels_path": _write(t / "y.idx", GOOD_LABELS), "data.test_size": 1},
                         "x.gz"),
    "npz_missing_key": (_npz_case(images=np.zeros((4, 2, 2), np.uint8), y=np.arange(4) % 2), "no array 'x'"),
    "npz_object_array": (_npz_case(x=np.array([object()] * 4), y=np.arange(4) % 2), "d.npz"),
    "npz_float_labels": (_npz_case(x=np.zeros((4, 2, 2), np.uint8), y=np.array([0.5, 1, 0, 1])), "integers"),
    "npz_negative_label": (_npz_case(x=np.zeros((4, 2, 2), np.uint8), y=np.array([0, -1, 0, 1])), "negative label"),
    "npz_nan_images": (_npz_case(x=np.full((4, 2, 2), np.nan, np.float32), y=np.arange(4) % 2), "NaN"),
    "npz_float_range": (_npz_case(x=np.full((4, 2, 2), 3.0, np.float32), y=np.arange(4) % 2), "[0, 1]"),
    "npz_length_mismatch": (_npz_case(x=np.zeros((5, 2, 2), np.uint8), y=np.arange(4) % 2), "5 inputs but 4 labels"),
    "npz_not_a_zip": (lambda t: {"data.source": "npz", "data.path": _write(t / "d.npz", b"PK? no"),
                                 "data.test_size": 1}, "d.npz"),
    "npz_truncated": (_raw_npz_case(_GOOD_NPZ[:len(_GOOD_NPZ) // 2]), "d.npz: cannot read npz archive"),
    "npz_corrupt_member": (_raw_npz_case(_corrupt_member()), "d.npz: cannot read array 'x'"),
    "npz_is_renamed_npy": (_raw_npz_case(_npy_bytes()), "d.npz: holds a single .npy array"),
    "npz_single_class": (_npz_case(x=np.zeros((6, 2, 2), np.uint8), y=np.zeros(6, int)), "at least 2"),
    "folder_mixed_sizes": (_folder_case(_mixed_sizes), "differs from"),
    "folder_corrupt_png": (_folder_case(_corrupt_png), "cannot decode"),
    "folder_no_classes": (_folder_case(_no_class_dirs), "no class subfolders"),
    "folder_empty_class": (_folder_case(_empty_class), "'b' has no images"),
    "folder_missing": (lambda t: {"data.source": "image_folder", "data.path": str(t / "nope"), "data.test_size": 1},
                       "data.path"),
    "csv_missing_column": (_csv_case("txt,label\na,0\nb,1\nc,0\n"), "no column 'text'"),
    "csv_short_row": (_csv_case("text,label\nhello,0\noops\nbye,1\n"), "t.csv:3"),
    "csv_empty": (_csv_case(""), "empty CSV"),
    "csv_header_only": (_csv_case("text,label\n"), "no rows"),
    "csv_empty_text": (_csv_case("text,label\nhello,0\n,1\nbye,1\n"), "t.csv:3: empty text in column 'text'"),
    "csv_blank_text": (_csv_case("text,label\n  \t ,0\nhi,1\nbye,1\n"), "t.csv:2: empty text"),
    "csv_empty_label": (_csv_case("text,label\nhello,0\nhi, \nbye,1\n"), "t.csv:3: empty label"),
    "csv_bad_utf8": (lambda t: {"data.source": "csv", "data.path": _write(t / "t.csv", b"text,label\n\xff\xfe,0\n"),
                                "data.test_size": 1}, "t.csv"),
    "csv_unknown_label": (_csv_case("text,label\na,x\nb,y\nc,z\n",
                                    **{"data.class_names_path": lambda t: _write(t / "c.json", '["x", "y"]')}),
                          "t.csv:4: label 'z'"),
    "csv_duplicate_classes": (_csv_case("text,label\na,x\nb,y\nc,x\n",
                                        **{"data.class_names_path": lambda t: _write(t / "c.json", '["x", "y", "x"]')}),
                              "duplicate class"),
    "csv_bad_class_json": (_csv_case("text,label\na,x\nb,y\n",
                                     **{"data.class_names_path": lambda t: _write(t / "c.json", '{"x": 1')}),
                           "c.json"),
    "hdf5_missing_key": (_h5_case(keys_ok=False), "no dataset 'images'"),
    "hdf5_not_hdf5": (_h5_case(junk=True), "d.h5"),
    "hdf5_key_is_group": (_h5_case(x_key="train"), "d.h5: 'train' is a group, not a dataset; it holds ['data']"),
}

CONFIG_CASES = {
    "negative_budget": ({"al.initial_size": -5}, "al.initial_size"),
    "budget_above_pool": ({"al.initial_size": 100000}, "al.initial_size"),
    "rounds_exhaust_pool": ({"al.num_rounds": 1000}, "al.query_schedule"),
    "batch_above_pool": ({"train.batch_size": 4096, "acquisition.chunk_size": 4096, "train.eval_chunk_size": 4096},
                         "train.batch_size"),
    "unknown_acquisition": ({"acquisition.name": "oracle_peek"}, "acquisition.name"),
    "unknown_model": ({"model.name": "resnet1000"}, "model.name"),
    "bad_lr_schedule": ({"train.lr_schedule": "zero:0.1"}, "train.lr_schedule"),
    "zero_lr": ({"train.lr_schedule": "0:0"}, "train.lr_schedule"),
    "negative_shift": ({"augment.max_shift": -1}, "augment.max_shift"),
    "bad_source": ({"data.source": "s3"}, "data.source"),
    "test_size_too_big": ({"data.test_size": 5000}, "data.test_size=5000: cannot carve"),
    "validation_size_too_big": ({"data.validation_size": 5000}, "data.validation_size"),
    "too_few_classes": ({"data.num_classes": 3}, "out of range for 3 classes"),
    "bad_model_option": ({"model.options.blocks": 0}, "model"),
}


def _run(tmp_path, capsys, overrides):
  code = main.execute(tiny_config(**overrides), str(tmp_path / "work"))
  err = capsys.readouterr().err
  return code, err


@pytest.mark.parametrize("name", sorted(FILE_CASES))
def test_malformed_files(name, tmp_path, capsys):
  make, expected = FILE_CASES[name]
  code, err = _run(tmp_path, capsys, make(tmp_path))
  assert code == 2, err
  assert expected in err and "Traceback" not in err
  assert len(err.strip().splitlines()) == 1, err
  assert not (tmp_path / "work" / "checkpoints").exists()


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_bad_configs(name, tmp_path, capsys):
  overrides, expected = CONFIG_CASES[name]
  code, err = _run(tmp_path, capsys, overrides)
  assert code == 2, err
  assert expected in err and "Traceback" not in err
  assert len(err.strip().splitlines()) == 1, err
  assert not (tmp_path / "work" / "checkpoints").exists()


def test_there_are_at_least_thirty_cases():
  assert len(FILE_CASES) + len(CONFIG_CASES) >= 30


# --------------------------------------------------------------------------- read right, not refused


def _old_ascii_words(text):
  """The word rule before Unicode support, which ASCII text must keep."""
  import re
  return re.findall(r"[a-z0-9']+", text.lower())


def test_words_split_ascii_exactly_as_before():
  from jaxal.data import tokenize
  rng = np.random.default_rng(0)
  alphabet = np.array(list("aZz09 '_-.,!?\t\n\"()Kk") + [chr(c) for c in range(128)])
  for _ in range(2000):
    text = "".join(rng.choice(alphabet, rng.integers(0, 40)))
    assert tokenize._unicode_words(text) == _old_ascii_words(text), repr(text)
    assert tokenize._words(text) == _old_ascii_words(text), repr(text)


def test_words_keep_every_script():
  from jaxal.data import tokenize
  assert tokenize._words("Héllo WÖRLD, don't") == ["héllo", "wörld", "don't"]
  assert tokenize._words("我爱北京") == ["我", "爱", "北", "京"]  # no spaces: one token per character
  assert tokenize._words("東京タワーは tall。") == ["東", "京", "タ", "ワ", "ー", "は", "tall"]
  assert tokenize._words("مَرْحَبًا بِكُم") == ["مَرْحَبًا", "بِكُم"]  # vowel marks stay inside the word
  assert tokenize._words("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
  assert tokenize._words("foo_bar ٣٤") == ["foo", "bar", "٣٤"]
  assert tokenize._words("great 😀 film 𠀀𠀁") == ["great", "film", "𠀀", "𠀁"]  # beyond the BMP


def _data_cfg(**kw):
  from jaxal import config as config_lib
  c = config_lib.base_config().data
  for k, v in kw.items():
    c[k] = v
  return c


def test_chinese_and_arabic_csv_get_distinct_word_ids(tmp_path):
  from jaxal.data import datasets
  rows = ["猫 喜欢 鱼", "狗 喜欢 骨头", "مرحبا بالعالم", "كتاب جديد"] * 2
  body = "".join(f"{t},{i % 2}\n" for i, t in enumerate(rows))
  path = _write(tmp_path / "t.csv", "text,label\n" + body)
  ds = datasets.load(_data_cfg(source="csv", path=path, test_path=path, max_length=8))
  ids = {tuple(r[r > 0]) for r in np.concatenate([ds.train.inputs, ds.test.inputs])}
  assert all(len(r) >= 2 for r in ids)  # before: every row was all padding
  assert len(ids) == 4  # four distinct texts, four distinct id rows
  assert ds.vocab_size == 2 + len(set("猫喜欢鱼狗骨头")) + 4


def test_csv_with_byte_order_mark_loads(tmp_path):
  from jaxal.data import datasets
  path = tmp_path / "t.csv"
  path.write_bytes("\ufeffid,text,label\n1,good,yes\n2,bad,no\n3,fine,yes\n4,awful,no\n".encode("utf-8"))
  names = tmp_path / "c.json"
  names.write_bytes('\ufeff["no", "yes"]'.encode("utf-8"))
  ds = datasets.load(_data_cfg(source="csv", path=str(path), test_size=2, class_names_path=str(names)))
  assert ds.class_names == ["no", "yes"]
  texts, labels, _ = datasets.read_csv_text(path, "text", "label", True)
  assert texts == ["good", "bad", "fine", "awful"] and labels == ["yes", "no", "yes", "no"]
  assert datasets.read_csv_text(path, "id", "label", True)[0] == ["1", "2", "3", "4"]
