"""Datasets as plain in-memory arrays, from every supported source.

A `Dataset` holds a train split (the pool) and a test split. Inputs are uint8 NHWC
images or int32 token ids; labels are int32 in `[0, num_classes)`. Each split also keeps
a stable id per example (file path, row number or TFDS id) for exporting queries.

Sources (`config.data.source`):
* `digits`: scikit-learn's bundled 8x8 digits, no download.
* `tfds`: `tfds.data_source(name, split=..., data_dir=...)` on a prepared data_dir;
  needs no TensorFlow.
* `idx`: MNIST-style idx files, gzipped or not.
* `npz`: NumPy `.npz` archives with configurable array keys (loaded with
  `allow_pickle=False`).
* `image_folder`: a folder of class subfolders holding PNG/JPEG images.
* `csv`: text in a CSV file with configurable text and label columns.
* `hdf5`: HDF5 datasets with configurable keys (needs `h5py`).

Every loader reports bad input as `DataError`, naming the file and the reason.
"""

import csv
import dataclasses
import gzip
import json
import os
import pathlib
from typing import Any, Callable

import numpy as np

from jaxal.data import tokenize


class DataError(ValueError):
  """Bad input data; the message names the file or field and the reason."""


@dataclasses.dataclass
class Split:
  """One split: inputs, int32 labels and a stable id per example."""

  inputs: np.ndarray
  labels: np.ndarray
  ids: np.ndarray

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  def subset(self, index: np.ndarray) -> "Split":
    return Split(self.inputs[index], self.labels[index], self.ids[index])


@dataclasses.dataclass
class Dataset:
  """A train split (the active-learning pool) and a test split."""

  name: str
  train: Split
  test: Split
  num_classes: int
  class_names: list[str]
  modality: str  # "image" or "text"
  vocab_size: int = 0

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.train.inputs.shape[1:])


# --------------------------------------------------------------------------- helpers


def _ids(prefix: str, n: int) -> np.ndarray:
  return np.array([f"{prefix}{i}" for i in range(n)])


def shape_option(value) -> tuple[int, ...]:
  """A config shape; `(0,)` or `()` means off."""
  value = tuple(int(v) for v in (value or ()))
  return () if not value or 0 in value else value


def _to_uint8_images(x: np.ndarray, source: str, image_shape=()) -> np.ndarray:
  """Converts images to uint8 NHWC; floats in [0, 1] are scaled by 255."""
  x = np.asarray(x)
  image_shape = shape_option(image_shape)
  if image_shape:
    try:
      x = x.reshape((x.shape[0],) + tuple(image_shape))
    except ValueError:
      raise DataError(f"{source}: cannot reshape {x.shape} to images of shape {tuple(image_shape)}") from None
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise DataError(f"{source}: images must be (n, h, w) or (n, h, w, c), got shape {x.shape}"
                    " (set data.image_shape for flat rows)")
  if x.dtype == np.uint8:
    return x
  if np.issubdtype(x.dtype, np.floating):
    if not np.isfinite(x).all():
      raise DataError(f"{source}: images contain NaN or inf")
    lo, hi = float(x.min(initial=0)), float(x.max(initial=0))
    if lo < 0 or hi > 1.0 + 1e-6:
      raise DataError(f"{source}: float images must lie in [0, 1], got [{lo:g}, {hi:g}]")
    return np.round(x * 255).astype(np.uint8)
  if np.issubdtype(x.dtype, np.integer):
    if x.min(initial=0) < 0 or x.max(initial=0) > 255:
      raise DataError(f"{source}: integer images must lie in [0, 255]")
    return x.astype(np.uint8)
  raise DataError(f"{source}: unsupported image dtype {x.dtype}")


def _to_labels(y: Any, source: str, num_classes: int | None = None) -> np.ndarray:
  y = np.asarray(y)
  if y.ndim != 1:
    raise DataError(f"{source}: labels must be one-dimensional, got shape {y.shape}")
  if not np.issubdtype(y.dtype, np.integer):
    if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
      y = y.astype(np.int64)
    else:
      raise DataError(f"{source}: labels must be integers, got dtype {y.dtype}")
  if y.size and y.min() < 0:
    raise DataError(f"{source}: negative label {int(y.min())}")
  if num_classes is not None and y.size and y.max() >= num_classes:
    raise DataError(f"{source}: label {int(y.max())} out of range for {num_classes} classes")
  return y.astype(np.int32)


def _check_pair(inputs: np.ndarray, labels: np.ndarray, source: str):
  if len(inputs) != len(labels):
    raise DataError(f"{source}: {len(inputs)} inputs but {len(labels)} labels")
  if len(labels) == 0:
    raise DataError(f"{source}: no examples")


def _require_file(path: str, field: str) -> pathlib.Path:
  if not path:
    raise DataError(f"data.{field} must be set for this source")
  p = pathlib.Path(os.path.expanduser(path))
  if not p.exists():
    raise DataError(f"data.{field}: {p} does not exist")
  return p


# --------------------------------------------------------------------------- sources


def load_digits_split(cfg) -> tuple[Split, Split | None, list[str]]:
  from sklearn import datasets as skdatasets  # pylint: disable=g-import-not-at-top
  digits = skdatasets.load_digits()
  images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)[..., None]  # 0..16 -> 0..255
  split = Split(images, digits.target.astype(np.int32), _ids("digits/", len(images)))
  return split, None, [str(i) for i in range(10)]


_TFDS_TEXT_KEYS = {
    "ag_news_subset": ("description",),
    "dbpedia": ("content",),
    "glue/qnli": ("question", "sentence"),
}


def load_tfds_split(cfg) -> tuple[Split, Split | None, list[str]]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  kwargs = {"data_dir": cfg.data_dir} if cfg.data_dir else {}
  try:
    builder = tfds.builder(cfg.name, **kwargs)
  except Exception as e:  # tfds raises many kinds
    raise DataError(f"data.name: TFDS dataset {cfg.name!r} is not available: {e}") from None
  label_feature = builder.info.features[cfg.label_key]
  class_names = list(getattr(label_feature, "names", None) or [])
  text_keys = tuple(k for k in cfg.text_keys.split(",") if k) or _TFDS_TEXT_KEYS.get(cfg.name, ())

  def read(split_name: str) -> Split:
    try:
      source = tfds.data_source(cfg.name, split=split_name, **kwargs)
    except Exception as e:
      raise DataError(f"TFDS {cfg.name}[{split_name}]: cannot open data source under "
                      f"data_dir={cfg.data_dir!r} (prepare it first): {e}") from None
    n = len(source)
    if cfg.max_examples:
      n = min(n, cfg.max_examples)
    records = [source[i] for i in range(n)]
    labels = np.array([r[cfg.label_key] for r in records]).reshape(-1)
    ids = np.array([str(r.get("id", f"{cfg.name}/{split_name}/{i}")) if not isinstance(r.get("id"), bytes)
                    else r["id"].decode() for i, r in enumerate(records)])
    if text_keys:
      texts = [" ".join(_as_str(r[k]) for k in text_keys) for r in records]
      inputs = np.array(texts, dtype=object)
    else:
      inputs = np.stack([np.asarray(r[cfg.image_key]) for r in records])
    return Split(inputs, labels, ids)

  train = read(cfg.train_split)
  test = read(cfg.test_split) if cfg.test_split else None
  return train, test, class_names


def _as_str(v) -> str:
  if isinstance(v, bytes):
    return v.decode("utf-8", errors="replace")
  return str(v)


def read_idx(path: pathlib.Path) -> np.ndarray:
  """Reads an IDX file (optionally gzipped) into a numpy array."""
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataError(f"{path}: cannot read IDX file: {e}") from None
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
    raise DataError(f"{path}: not an IDX file (bad magic number)")
  dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
  if raw[2] not in dtypes:
    raise DataError(f"{path}: unknown IDX data type 0x{raw[2]:02x}")
  ndim = raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f"{path}: truncated IDX header")
  dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
  dtype = np.dtype(dtypes[raw[2]])
  expected = int(np.prod(dims)) * dtype.itemsize
  if len(raw) - header != expected:
    raise DataError(f"{path}: IDX header says {dims} ({expected} bytes) but the file holds "
                    f"{len(raw) - header} data bytes")
  return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_idx_split(cfg):
  def read(images_field, labels_field):
    ip = _require_file(getattr(cfg, images_field), images_field)
    lp = _require_file(getattr(cfg, labels_field), labels_field)
    x = _to_uint8_images(read_idx(ip), str(ip), cfg.image_shape)
    y = _to_labels(read_idx(lp), str(lp))
    _check_pair(x, y, str(ip))
    return Split(x, y, _ids(f"{ip.name}/", len(y)))

  train = read("path", "labels_path")
  test = read("test_path", "test_labels_path") if cfg.test_path else None
  return train, test, []


def load_npz_split(cfg):
  def read(path_field, x_key, y_key):
    p = _require_file(getattr(cfg, path_field), path_field)
    try:
      with np.load(p, allow_pickle=False) as archive:
        for key in (x_key, y_key):
          if key not in archive.files:
            raise DataError(f"{p}: no array {key!r}; the archive holds {sorted(archive.files)}")
        x, y = archive[x_key], archive[y_key]
    except (ValueError, OSError) as e:
      if isinstance(e, DataError):
        raise
      raise DataError(f"{p}: cannot read npz archive: {e}") from None
    if cfg.modality == "text":
      inputs = np.asarray(x)
      if not np.issubdtype(inputs.dtype, np.integer) or inputs.ndim != 2:
        raise DataError(f"{p}: text inputs must be a 2-D integer array of token ids, "
                        f"got {inputs.dtype} {inputs.shape}")
      inputs = inputs.astype(np.int32)
    else:
      inputs = _to_uint8_images(x, f"{p}[{x_key}]", cfg.image_shape)
    labels = _to_labels(y, f"{p}[{y_key}]")
    _check_pair(inputs, labels, str(p))
    return Split(inputs, labels, _ids(f"{p.name}/", len(labels)))

  train = read("path", cfg.x_key or "x", cfg.y_key or "y")
  test = None
  if cfg.test_path or cfg.test_x_key:
    test = read("test_path" if cfg.test_path else "path", cfg.test_x_key or "x", cfg.test_y_key or "y")
  return train, test, []


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def read_image_folder(root: pathlib.Path, class_names: list[str] | None, image_size=()):
  """Reads `root/<class>/<image>`; returns `(images, labels, ids, class_names)`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if not root.is_dir():
    raise DataError(f"{root}: not a folder of class subfolders")
  found = sorted(d.name for d in root.iterdir() if d.is_dir())
  if not found:
    raise DataError(f"{root}: no class subfolders")
  image_size = shape_option(image_size)
  class_names = class_names or found
  unknown = sorted(set(found) - set(class_names))
  if unknown:
    raise DataError(f"{root}: class folders {unknown} are not in the training classes {class_names}")
  images, labels, ids = [], [], []
  shape = None
  for label, name in enumerate(class_names):
    folder = root / name
    if not folder.is_dir():
      continue
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES)
    for f in files:
      try:
        with Image.open(f) as im:
          im.load()
          if image_size:
            im = im.resize(tuple(image_size)[::-1])
          arr = np.asarray(im)
      except Exception as e:  # PIL raises many kinds for corrupt files
        raise DataError(f"{f}: cannot decode image: {e}") from None
      if arr.ndim == 2:
        arr = arr[..., None]
      if arr.shape[-1] == 4:
        arr = arr[..., :3]
      if shape is None:
        shape = arr.shape
      elif arr.shape != shape:
        raise DataError(f"{f}: image shape {arr.shape} differs from {shape} "
                        "(set data.image_size to resize)")
      images.append(arr.astype(np.uint8))
      labels.append(label)
      ids.append(str(f))
  if not images:
    raise DataError(f"{root}: no PNG/JPEG images found")
  return np.stack(images), np.array(labels, np.int32), np.array(ids), class_names


def load_image_folder_split(cfg):
  root = _require_file(cfg.path, "path")
  x, y, ids, names = read_image_folder(root, None, cfg.image_size)
  train = Split(x, y, ids)
  test = None
  if cfg.test_path:
    tx, ty, tids, _ = read_image_folder(_require_file(cfg.test_path, "test_path"), names, cfg.image_size)
    test = Split(tx, ty, tids)
  return train, test, names


def read_csv_text(path: pathlib.Path, text_column: str, label_column: str, header: bool):
  """Reads `(texts, raw_labels, ids)`; columns are names (with a header) or 0-based indices."""
  try:
    with open(path, newline="", encoding="utf-8") as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"{path}: cannot read CSV: {e}") from None
  if header:
    if not rows:
      raise DataError(f"{path}: empty CSV")
    head, rows, first_line = rows[0], rows[1:], 2
    def col(spec):
      if spec in head:
        return head.index(spec)
      if spec.isdigit():
        return int(spec)
      raise DataError(f"{path}: no column {spec!r}; the header has {head}")
  else:
    first_line = 1
    def col(spec):
      if not spec.isdigit():
        raise DataError(f"{path}: data.csv_header is False, so columns must be indices, got {spec!r}")
      return int(spec)
  ti, li = col(text_column), col(label_column)
  texts, labels, ids = [], [], []
  for line, row in enumerate(rows, start=first_line):
    if not row:
      continue
    if max(ti, li) >= len(row):
      raise DataError(f"{path}:{line}: expected at least {max(ti, li) + 1} columns, got {len(row)}")
    texts.append(row[ti])
    labels.append(row[li].strip())
    ids.append(f"{path.name}:{line}")
  if not texts:
    raise DataError(f"{path}: no rows")
  return texts, labels, np.array(ids)


def load_csv_split(cfg):
  train_path = _require_file(cfg.path, "path")
  texts, raw, ids = read_csv_text(train_path, cfg.text_column, cfg.label_column, cfg.csv_header)
  if cfg.class_names_path:
    cp = _require_file(cfg.class_names_path, "class_names_path")
    try:
      names = [str(c) for c in json.loads(cp.read_text())]
    except (ValueError, TypeError) as e:
      raise DataError(f"{cp}: class names must be a JSON list of strings: {e}") from None
  else:
    names = sorted(set(raw), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
  index = {n: i for i, n in enumerate(names)}

  def to_labels(raw_labels, path, ids_):
    out = []
    for r, i in zip(raw_labels, ids_):
      if r not in index:
        raise DataError(f"{i}: label {r!r} is not one of the {len(names)} classes"
                        + (f" in {cfg.class_names_path}" if cfg.class_names_path else " seen in training"))
      out.append(index[r])
    return np.array(out, np.int32)

  train = Split(np.array(texts, dtype=object), to_labels(raw, train_path, ids), ids)
  test = None
  if cfg.test_path:
    tp = _require_file(cfg.test_path, "test_path")
    ttexts, traw, tids = read_csv_text(tp, cfg.text_column, cfg.label_column, cfg.csv_header)
    test = Split(np.array(ttexts, dtype=object), to_labels(traw, tp, tids), tids)
  return train, test, names


def load_hdf5_split(cfg):
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError("data.source='hdf5' needs h5py: pip install 'jaxal[hdf5]'") from None

  def read(path_field, x_key, y_key):
    p = _require_file(getattr(cfg, path_field), path_field)
    try:
      with h5py.File(p, "r") as f:
        for key in (x_key, y_key):
          if key not in f:
            raise DataError(f"{p}: no dataset {key!r}")
        x, y = f[x_key][()], f[y_key][()]
    except OSError as e:
      raise DataError(f"{p}: cannot read HDF5 file: {e}") from None
    inputs = _to_uint8_images(x, f"{p}[{x_key}]", cfg.image_shape)
    labels = _to_labels(np.asarray(y).reshape(-1), f"{p}[{y_key}]")
    _check_pair(inputs, labels, str(p))
    return Split(inputs, labels, _ids(f"{p.name}/{x_key}/", len(labels)))

  train = read("path", cfg.x_key or "train/data", cfg.y_key or "train/target")
  test = None
  if cfg.test_path or cfg.test_x_key:
    test = read("test_path" if cfg.test_path else "path", cfg.test_x_key or "test/data",
                cfg.test_y_key or "test/target")
  return train, test, []


SOURCES: dict[str, Callable] = {
    "digits": load_digits_split,
    "tfds": load_tfds_split,
    "idx": load_idx_split,
    "npz": load_npz_split,
    "image_folder": load_image_folder_split,
    "csv": load_csv_split,
    "hdf5": load_hdf5_split,
}


# --------------------------------------------------------------------------- assembly


def carve(split: Split, size: int, seed: int, stratify: bool = True) -> tuple[Split, Split]:
  """Splits off `size` examples at random (class-stratified); returns `(rest, carved)`."""
  n = len(split)
  if not 0 < size < n:
    raise DataError(f"cannot carve {size} examples from a split of {n}")
  rng = np.random.default_rng(seed)
  if stratify:
    order = _stratified_order(split.labels, rng)
  else:
    order = rng.permutation(n)
  carved = np.sort(order[:size])
  mask = np.zeros(n, bool)
  mask[carved] = True
  return split.subset(np.flatnonzero(~mask)), split.subset(carved)


def _stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """A permutation whose every prefix is close to class-balanced (round robin over classes)."""
  per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
  order = []
  for rank in range(max(len(p) for p in per_class)):
    row = [p[rank] for p in per_class if rank < len(p)]
    order.extend(rng.permutation(row))
  return np.array(order, dtype=np.int64)


def load(cfg) -> Dataset:
  """Loads `config.data` into a `Dataset` (test split carved from train if absent)."""
  if cfg.source not in SOURCES:
    raise DataError(f"data.source: unknown source {cfg.source!r}; known: {', '.join(sorted(SOURCES))}")
  train, test, class_names = SOURCES[cfg.source](cfg)
  name = cfg.name or cfg.source
  if cfg.max_train and len(train) > cfg.max_train:
    train = train.subset(np.arange(cfg.max_train))
  if test is None:
    if not cfg.test_size:
      raise DataError(f"data.test_size: the {cfg.source} source has no test split here; "
                      "set data.test_size to carve one from the training data")
    train, test = carve(train, cfg.test_size, cfg.seed)
  modality = "text" if train.inputs.dtype == object or cfg.modality == "text" else "image"
  vocab_size = 0
  if train.inputs.dtype == object:  # raw texts -> token ids
    fit = list(train.inputs)
    train_ids, vocab_size = tokenize.encode_texts(fit, tokenizer=cfg.tokenizer, max_length=cfg.max_length, fit_texts=fit)
    test_ids, _ = tokenize.encode_texts(list(test.inputs), tokenizer=cfg.tokenizer, max_length=cfg.max_length, fit_texts=fit)
    train = dataclasses.replace(train, inputs=train_ids)
    test = dataclasses.replace(test, inputs=test_ids)
  elif modality == "text":
    vocab_size = int(max(train.inputs.max(), test.inputs.max())) + 1
  num_classes = int(cfg.num_classes or len(class_names) or int(max(train.labels.max(), test.labels.max())) + 1)
  if not class_names:
    class_names = [str(i) for i in range(num_classes)]
  for split_name, split in (("train", train), ("test", test)):
    if split.labels.max() >= num_classes:
      raise DataError(f"{split_name} split: label {int(split.labels.max())} out of range for "
                      f"{num_classes} classes (data.num_classes)")
  if modality == "image" and train.inputs.shape[1:] != test.inputs.shape[1:]:
    raise DataError(f"train images {train.inputs.shape[1:]} and test images {test.inputs.shape[1:]} differ in shape")
  present = np.unique(train.labels)
  if present.size < 2:
    raise DataError(f"train split has {present.size} class(es); active learning needs at least 2")
  return Dataset(name, train, test, num_classes, class_names, modality, vocab_size)
