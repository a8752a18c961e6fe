"""Datasets as plain in-memory arrays, from every supported source.

A `Dataset` holds a train split (the pool) and a test split. Inputs are uint8 NHWC
images or int32 token ids; labels are int32 in `[0, num_classes)`. Each split also keeps
a stable id per example (file path, row number or TFDS id) for exporting queries.

Sources (`config.data.source`):
* `digits`: scikit-learn's bundled 8x8 digits, no download.
* `tfds`: `tfds.data_source(name, split=..., data_dir=...)` on a data_dir prepared in the
  array_record format; needs no TensorFlow and never downloads (no network at run time).
* `idx`: MNIST-style idx files, gzipped or not.
* `npz`: NumPy `.npz` archives with configurable array keys (loaded with
  `allow_pickle=False`); the labels may sit in a second archive (`data.labels_path`).
* `image_folder`: a folder of class subfolders holding PNG/JPEG images, read as grayscale
  or RGB whatever their PIL mode (palette, 16-bit, CMYK, alpha: see `files._decode_image`).
* `csv`: text in a UTF-8 CSV file (a byte-order mark is dropped) with configurable text and
  label columns (several text columns are joined); an empty text or label is an error naming
  `file:line`. Class names come from a JSON list (`.json`) or a one-name-per-line file.
* `hdf5`: HDF5 datasets with configurable keys (needs `h5py`); labels may sit in a second file.
* `array_record`: a directory written by `jaxal convert` (`data.path`): sharded ArrayRecord
  files and an `index.json` (`jaxal.data.array_record`).

`FIELDS_READ` lists the `data.*` fields each source reads; `config.validate` refuses a field
changed from its default that the source would ignore.

Every loader reports bad input as `DataError`, naming the file and the reason.
"""

import dataclasses
import gzip
import pathlib
from typing import Callable

import numpy as np

from jaxal.data import tokenize
from jaxal.data.array_record import load_array_record_split
from jaxal.data.files import (load_csv_split, load_hdf5_split, load_idx_split, load_image_folder_split,
                              load_npz_split, read_idx, read_image_folder, read_csv_text)
from jaxal.data.types import DataError, Dataset, Split, make_ids

__all__ = ["DataError", "Dataset", "Split", "SOURCES", "FIELDS_READ", "carve", "load", "read_idx",
           "read_image_folder", "read_csv_text", "unused_fields"]


def read_digits() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's digits as `(images (1797, 8, 8) float 0..16, labels)`.

  Read straight from the CSV that ships inside the scikit-learn package: importing
  scikit-learn itself (and SciPy with it) took longer than the whole demo's training.
  Falls back to `sklearn.datasets.load_digits` if the file has moved.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec("sklearn")
  path = pathlib.Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
  if path is not None and path.is_file():
    with gzip.open(path, "rt") as f:
      data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int32)
  from sklearn import datasets as skdatasets  # pylint: disable=g-import-not-at-top
  digits = skdatasets.load_digits()
  return digits.images, digits.target.astype(np.int32)


def load_digits_split(cfg) -> tuple[Split, Split | None, list[str]]:
  del cfg
  raw, target = read_digits()
  images = np.clip(raw * 16, 0, 255).astype(np.uint8)[..., None]  # 0..16 -> 0..255
  split = Split(images, target, make_ids("digits/", len(images)))
  return split, None, [str(i) for i in range(10)]


_TFDS_TEXT_KEYS = {
    "ag_news_subset": ("description",),
    "dbpedia": ("content",),
    "glue/qnli": ("question", "sentence"),
}


def _unreadable_tfds_message(builder, cfg, split_name: str, error: Exception) -> str:
  """Why `tfds.data_source` could not open `split_name`, and how to prepare the data."""
  where = f"data.data_dir={cfg.data_dir!r}" if cfg.data_dir else "the default data_dir (data.data_dir is empty)"
  prepare = (f"prepare it where there is network: `tfds build {cfg.name} --file_format=array_record "
             f"--data_dir=DIR`, then set --config.data.data_dir=DIR")
  if not builder.is_prepared():
    return (f"data.name: TFDS dataset {cfg.name!r} is not prepared under {where} "
            f"(looked in {builder.data_dir}); jaxal does not download at run time: {prepare}")
  return (f"TFDS {cfg.name}[{split_name}] under {where} ({builder.data_dir}) cannot be opened for random "
          f"access ({type(error).__name__}: {error}); tfds.data_source reads the array_record format: "
          f"{prepare}")


def load_tfds_split(cfg, split_of=None) -> tuple[Split, Split | None, list[str]]:
  """The TFDS source in memory; `split_of(source, n, labels, ids, image_key, text_keys, split_name=)` builds each
  split instead (`source_streams`: inputs read by index), labels and ids read a record at a time."""
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
      # download=False: a missing dataset is an error here, never a download at run time.
      source = tfds.data_source(cfg.name, split=split_name, download=False, **kwargs)
    except Exception as e:
      raise DataError(_unreadable_tfds_message(builder, cfg, split_name, e)) from None
    n = len(source)
    if cfg.max_examples:
      n = min(n, cfg.max_examples)
    records = (source[i] for i in range(n)) if split_of else [source[i] for i in range(n)]
    labels, ids = [], []
    for i, r in enumerate(records):
      labels.append(r[cfg.label_key])
      ids.append(str(r.get("id", f"{cfg.name}/{split_name}/{i}")) if not isinstance(r.get("id"), bytes)
                 else r["id"].decode())
    labels, ids = np.array(labels).reshape(-1), np.array(ids)
    if split_of:
      return split_of(source, n, labels, ids, cfg.image_key, text_keys, split_name=split_name)
    if text_keys:
      texts = [" ".join(_as_str(r[k]) for k in text_keys) for r in records]
      inputs = np.array(texts, dtype=object)
    else:
      sized = tfds_image_sizer(cfg, split_name)
      inputs = np.stack([sized(r[cfg.image_key], i) for i, r in enumerate(records)])
    return Split(inputs, labels, ids)

  train = read(cfg.train_split)
  test = read(cfg.test_split) if cfg.test_split else None
  return train, test, class_names


def tfds_image_sizer(cfg, split_name: str):
  """`(image, record index) -> uint8 (h, w, c)` at one size for the whole split: `data.image_size`
  when set (PIL's resize, as the image_folder source does; ImageNet's images each have their own
  size), else the first image's size, another size being a DataError naming the record."""
  size = tuple(int(v) for v in cfg.image_size) if any(cfg.image_size) else None
  first = []

  def sized(image, index: int) -> np.ndarray:
    image = np.asarray(image)
    if size and image.shape[:2] != size:
      from PIL import Image  # pylint: disable=g-import-not-at-top
      gray = image.ndim == 3 and image.shape[-1] == 1
      image = np.asarray(Image.fromarray(image[..., 0] if gray else image).resize(size[::-1]))
      image = image[..., None] if gray else image
    if not first:
      first.append(image.shape)
    elif image.shape != first[0]:
      raise DataError(f"data.image_size: TFDS {cfg.name}/{split_name} record {index} is {image.shape[:2]}, record 0 "
                      f"{first[0][:2]}; set data.image_size=H,W to resize every image")
    return image

  return sized


def _largest(inputs) -> int:
  """The largest value of an array, or of a lazy one (`source_streams`) read a chunk at a time."""
  if isinstance(inputs, np.ndarray):
    return int(inputs.max())
  return max(int(inputs.read(np.arange(s, min(len(inputs), s + 4096))).max()) for s in range(0, len(inputs), 4096))


def _as_str(v) -> str:
  if isinstance(v, bytes):
    return v.decode("utf-8", errors="replace")
  return str(v)


SOURCES: dict[str, Callable] = {
    "digits": load_digits_split,
    "tfds": load_tfds_split,
    "idx": load_idx_split,
    "npz": load_npz_split,
    "image_folder": load_image_folder_split,
    "csv": load_csv_split,
    "hdf5": load_hdf5_split,
    "array_record": load_array_record_split,
}

# The `data.*` fields each source reads (`load` reads COMMON_FIELDS for all of them).
COMMON_FIELDS = ("source", "name", "seed", "num_classes", "test_size", "validation_size", "max_train",
                 "shuffle_train", "pool_storage")
_IMAGES = ("normalization",)  # text inputs skip normalization (pipeline.make_preprocess)
_TEXTS = ("tokenizer", "max_length", "modality")  # raw texts become token ids in `load`
_FILES = ("path", "labels_path", "test_path", "test_labels_path")
_KEYS = ("x_key", "y_key", "test_x_key", "test_y_key")
FIELDS_READ: dict[str, tuple[str, ...]] = {
    "digits": _IMAGES,
    "tfds": _IMAGES + _TEXTS + ("data_dir", "train_split", "test_split", "label_key", "image_key", "text_keys",
                                "max_examples", "image_size"),
    "idx": _IMAGES + _FILES + ("image_shape",),
    "npz": _IMAGES + _FILES + _KEYS + ("image_shape", "modality"),  # modality "text": token-id arrays
    "image_folder": _IMAGES + ("path", "test_path", "image_size"),
    "csv": _TEXTS + ("path", "test_path", "text_column", "text_separator", "label_column", "csv_header",
                     "class_names_path"),
    "hdf5": _IMAGES + _FILES + _KEYS + ("image_shape",),
    "array_record": _IMAGES + ("path", "modality"),  # a `jaxal convert` directory; modality "text": token ids
}


def _own_test_split(cfg) -> str:
  """The field that gives `cfg.source` a test split of its own, or "" when it has none."""
  if cfg.source == "tfds":
    return "data.test_split" if cfg.test_split else ""
  if cfg.source == "array_record":
    return "data.path (its test split)"
  if cfg.source in ("npz", "hdf5") and cfg.test_x_key and not cfg.test_path:
    return "data.test_x_key"
  return "data.test_path" if cfg.test_path and cfg.source != "digits" else ""


def unused_fields(cfg, defaults) -> list[tuple[str, str]]:
  """`(field, why)` for each field of `cfg` changed from `defaults` that `cfg.source` never reads."""
  read = set(COMMON_FIELDS) | set(FIELDS_READ.get(cfg.source, ()))
  changed = [k for k in defaults if k in cfg and _plain(cfg[k]) != _plain(defaults[k])]
  out = [(k, f"the {cfg.source} source does not read it") for k in changed if k not in read]
  test_split = _own_test_split(cfg)
  if "test_size" in changed and test_split:
    out.append(("test_size", f"the {cfg.source} source has a test split ({test_split})"))
  has_test = cfg.test_path or (cfg.source in ("npz", "hdf5") and cfg.test_x_key)
  for k in ("test_labels_path", "test_y_key"):
    if k in changed and k in read and not has_test:
      out.append((k, f"the {cfg.source} source reads no test split (data.test_path is empty)"))
  return out


def _plain(value):
  return tuple(value) if isinstance(value, (list, tuple)) else value



# --------------------------------------------------------------------------- assembly


def carve(split: Split, size: int, seed: int, stratify: bool = True, *,
          field: str = "") -> tuple[Split, Split]:
  """Splits off `size` examples at random (class-stratified); returns `(rest, carved)`.

  `field` names the config field that asked for `size` (e.g. `data.validation_size`) in the error.
  """
  n = len(split)
  if not 0 < size < n:
    where = f"{field}={size}: " if field else ""
    raise DataError(f"{where}cannot carve {size} examples from a split of {n} (need 1 to {n - 1})")
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


def load(cfg, read=None, encode=None) -> Dataset:
  """Loads `config.data` into a `Dataset` (test split carved from train if absent).

  `read` replaces the source's reader and `encode(cfg, train, test) -> (train, test, vocab_size)`
  the tokenization of raw texts: `source_streams` passes readers whose inputs are read by index,
  so a conversion selects, carves and checks the same rows as this in-memory path."""
  if cfg.source not in SOURCES:
    raise DataError(f"data.source: unknown source {cfg.source!r}; known: {', '.join(sorted(SOURCES))}")
  train, test, class_names = (read or SOURCES[cfg.source])(cfg)
  name = cfg.name or cfg.source
  if cfg.get("shuffle_train", False):  # e.g. a CSV sorted by class: max_train would keep a few classes
    train = train.subset(np.random.default_rng(cfg.seed).permutation(len(train)))
  if cfg.max_train and len(train) > cfg.max_train:
    train = train.subset(np.arange(cfg.max_train))
  if test is None:
    if not cfg.test_size:
      raise DataError(f"data.test_size: the {cfg.source} source has no test split here; "
                      "set data.test_size to carve one from the training data")
    train, test = carve(train, cfg.test_size, cfg.seed, field="data.test_size")
  modality = "text" if train.inputs.dtype == object or cfg.modality == "text" else "image"
  vocab_size = 0
  if train.inputs.dtype == object and encode:
    train, test, vocab_size = encode(cfg, train, test)
  elif train.inputs.dtype == object:  # raw texts -> token ids
    fit = list(train.inputs)
    train_ids, vocab_size = tokenize.encode_texts(fit, tokenizer=cfg.tokenizer, max_length=cfg.max_length, fit_texts=fit)
    test_ids, _ = tokenize.encode_texts(list(test.inputs), tokenizer=cfg.tokenizer, max_length=cfg.max_length, fit_texts=fit)
    train = dataclasses.replace(train, inputs=train_ids)
    test = dataclasses.replace(test, inputs=test_ids)
  elif modality == "text":
    vocab_size = max(_largest(train.inputs), _largest(test.inputs)) + 1
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
