"""File-format sources: idx, npz, image folders, CSV text and HDF5.

Each `load_*_split(cfg)` returns `(train, test or None, class_names)`; bad input raises
`DataError` naming the file (and line, for CSV) and the reason. Nothing is unpickled.
"""

import contextlib
import csv
import gzip
import json
import zipfile
import zlib

import numpy as np
from etils import epath

from jaxal import paths
from jaxal.data.types import DataError, Split, check_pair, make_ids, require_file, shape_option
from jaxal.data.types import to_labels, to_uint8_images

def read_idx(path: epath.Path) -> np.ndarray:
  """Reads an IDX file (optionally gzipped) into a numpy array."""
  try:
    with paths.of(path).open("rb") as f:
      raw = gzip.GzipFile(fileobj=f).read() if path.suffix == ".gz" else f.read()
  except (OSError, EOFError) as e:
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
    ip = require_file(getattr(cfg, images_field), images_field)
    lp = require_file(getattr(cfg, labels_field), labels_field)
    x = to_uint8_images(read_idx(ip), str(ip), cfg.image_shape)
    y = to_labels(read_idx(lp), str(lp))
    check_pair(x, y, str(ip))
    return Split(x, y, make_ids(f"{ip.name}/", len(y)))

  train = read("path", "labels_path")
  test = read("test_path", "test_labels_path") if cfg.test_path else None
  return train, test, []


def _read_npz_arrays(p: epath.Path, keys) -> list[np.ndarray]:
  """The arrays `keys` of the archive `p`; a truncated, corrupt or non-npz file is a `DataError`."""
  try:
    raw = paths.of(p).open("rb")  # closed with the archive (or, on a bad file, by the collector)
    archive = np.load(raw, allow_pickle=False)
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise DataError(f"{p}: cannot read npz archive (truncated, or not a zip file?): {e}") from None
  if isinstance(archive, np.ndarray):
    raise DataError(f"{p}: holds a single .npy array {archive.dtype} {archive.shape}, not an .npz archive "
                    "of named arrays (write one with np.savez(path, x=images, y=labels))")
  with raw, archive:
    for key in keys:
      if key not in archive.files:
        raise DataError(f"{p}: no array {key!r}; the archive holds {sorted(archive.files)}")
    arrays = []
    for key in keys:
      try:
        arrays.append(archive[key])
      except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{p}: cannot read array {key!r} (truncated or corrupt archive): {e}") from None
  return arrays


def labels_field(cfg, inputs_field: str, own_field: str) -> str:
  """The field naming the file that holds a split's labels (npz, hdf5).

  A split's own labels file (`data.labels_path`, `data.test_labels_path`) when set; a test
  split read from `data.path` (`data.test_x_key`) shares `data.labels_path`; otherwise the
  labels sit beside the inputs.
  """
  if getattr(cfg, own_field):
    return own_field
  if inputs_field == "path" and cfg.labels_path:
    return "labels_path"
  return inputs_field


def _read_pair(cfg, inputs_field, own_labels_field, x_key, y_key, read_arrays):
  """x from the inputs file and y from the labels file (maybe the same one).

  Returns `(x, y, inputs path, the pair's name for errors, the labels' name for errors)`."""
  p = require_file(getattr(cfg, inputs_field), inputs_field)
  field = labels_field(cfg, inputs_field, own_labels_field)
  if field == inputs_field:
    x, y = read_arrays(p, (x_key, y_key))
    return x, y, p, str(p), f"{p}[{y_key}]"
  lp = require_file(getattr(cfg, field), field)
  (x,), (y,) = read_arrays(p, (x_key,)), read_arrays(lp, (y_key,))
  return x, y, p, f"{p}[{x_key}] and {lp}[{y_key}]", f"{lp}[{y_key}]"


def load_npz_split(cfg):
  def read(path_field, own_labels_field, x_key, y_key):
    x, y, p, pair, y_source = _read_pair(cfg, path_field, own_labels_field, x_key, y_key, _read_npz_arrays)
    if cfg.modality == "text":
      inputs = np.asarray(x)
      if not np.issubdtype(inputs.dtype, np.integer) or inputs.ndim != 2:
        raise DataError(f"{p}: text inputs must be a 2-D integer array of token ids, "
                        f"got {inputs.dtype} {inputs.shape}")
      inputs = inputs.astype(np.int32)
    else:
      inputs = to_uint8_images(x, f"{p}[{x_key}]", cfg.image_shape)
    labels = to_labels(y, y_source)
    check_pair(inputs, labels, pair)
    return Split(inputs, labels, make_ids(f"{p.name}/", len(labels)))

  train = read("path", "labels_path", cfg.x_key or "x", cfg.y_key or "y")
  test = None
  if cfg.test_path or cfg.test_x_key:
    test = read("test_path" if cfg.test_path else "path", "test_labels_path", cfg.test_x_key or "x",
                cfg.test_y_key or "y")
  return train, test, []


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}


def _decode_image(im, path: epath.Path, image_size) -> np.ndarray:
  """An opened PIL image as uint8 `(h, w, 1 or 3)`: grayscale stays one channel, colour is RGB.

  Modes: L and RGB as they are; RGBA and LA lose their alpha channel (no compositing);
  palette (P, PA) becomes the RGB colours of its palette, alpha dropped as for RGBA;
  1 (bilevel) becomes L 0/255; CMYK (and any other mode) PIL's `convert("RGB")`;
  16-bit grayscale (I;16, I) is scaled to 8 bits, `round(v * 255 / 65535)`, never wrapped.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if im.mode in _SIXTEEN_BIT_MODES:
    wide = np.asarray(im).astype(np.int64)
    if wide.size and (wide.min() < 0 or wide.max() > 65535):
      raise DataError(f"{path}: {im.mode} pixel values [{wide.min()}, {wide.max()}] are outside 16 bits")
    im = Image.fromarray(np.round(wide * (255 / 65535)).astype(np.uint8), "L")
  elif im.mode in ("P", "PA"):
    im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
  elif im.mode == "1":
    im = im.convert("L")
  elif im.mode not in ("L", "LA", "RGB", "RGBA"):
    im = im.convert("RGB")
  if image_size:
    im = im.resize(tuple(image_size)[::-1])
  arr = np.asarray(im)
  if arr.ndim == 2:
    arr = arr[..., None]
  return arr[..., :1] if arr.shape[-1] == 2 else arr[..., :3]


def _same_channels(*stacks: np.ndarray) -> list[np.ndarray]:
  """Gray `(..., 1)` images beside colour ones become RGB (the gray value in all three channels)."""
  if len({s.shape[-1] for s in stacks}) < 2:
    return list(stacks)
  return [np.repeat(s, 3, axis=-1) if s.shape[-1] == 1 else s for s in stacks]


def read_image_folder(root: epath.Path, class_names: list[str] | None, image_size=()):
  """Reads `root/<class>/<image>`; returns `(images, labels, ids, class_names)`.

  Every image becomes uint8 grayscale or RGB (see `_decode_image` for each PIL mode);
  when a folder mixes grayscale and colour images, all of them become RGB.
  """
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
  size = None
  for label, name in enumerate(class_names):
    folder = root / name
    if not folder.is_dir():
      continue
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES)
    if not files and folder.parent == root and name in found:
      raise DataError(f"{root}: class folder {name!r} has no images (PNG/JPEG)")
    for f in files:
      try:
        with f.open("rb") as raw, Image.open(raw) as im:
          im.load()
          arr = _decode_image(im, f, image_size)
      except DataError:
        raise
      except Exception as e:  # PIL raises many kinds for corrupt files
        raise DataError(f"{f}: cannot decode image: {e}") from None
      if size is None:
        size = arr.shape[:2]
      elif arr.shape[:2] != size:
        raise DataError(f"{f}: image size {arr.shape[:2]} differs from {size} of the first image "
                        "(set data.image_size to resize)")
      images.append(arr)
      labels.append(label)
      ids.append(str(f))
  if not images:
    raise DataError(f"{root}: no PNG/JPEG images found")
  images = _same_channels(*images)
  return np.stack(images), np.array(labels, np.int32), np.array(ids), class_names


def load_image_folder_split(cfg):
  root = require_file(cfg.path, "path")
  x, y, ids, names = read_image_folder(root, None, cfg.image_size)
  train = Split(x, y, ids)
  test = None
  if cfg.test_path:
    tx, ty, tids, _ = read_image_folder(require_file(cfg.test_path, "test_path"), names, cfg.image_size)
    x, tx = _same_channels(x, tx)  # gray train beside colour test (or the reverse): both RGB
    train, test = Split(x, y, ids), Split(tx, ty, tids)
  return train, test, names


def text_column_specs(text_column: str, head: list[str] | None = None) -> list[str]:
  """`data.text_column` as a list of columns: "text", or several joined by commas ("title,body").

  A header column whose name is the whole string (commas and all) is still that one column.
  """
  if head is not None and text_column in head:
    return [text_column]
  specs = [spec.strip() for spec in text_column.split(",")]
  if not all(specs):
    raise DataError(f"data.text_column: {text_column!r} has an empty column name (use 'title,body' for several)")
  return specs


def read_csv_text(path: epath.Path, text_column: str, label_column: str, header: bool, separator: str = " "):
  """Reads `(texts, raw_labels, ids)`; columns are names (with a header) or 0-based indices.

  Several text columns ("title,body") are joined with `separator`, skipping blank ones; a row
  whose text columns are all blank is an error naming `file:line`.
  """
  try:
    with paths.open_text(path) as f:  # UTF-8 without the BOM Excel writes
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
    head, first_line = None, 1
    def col(spec):
      if not spec.isdigit():
        raise DataError(f"{path}: data.csv_header is False, so columns must be indices, got {spec!r}")
      return int(spec)
  text_indices, li = [col(spec) for spec in text_column_specs(text_column, head)], col(label_column)
  needed = max(text_indices + [li]) + 1
  columns = "columns" if len(text_indices) > 1 else "column"
  texts, labels, ids = [], [], []
  for line, row in enumerate(rows, start=first_line):
    if not row:
      continue
    if needed > len(row):
      raise DataError(f"{path}:{line}: expected at least {needed} columns, got {len(row)}")
    parts = [row[i] for i in text_indices if row[i].strip()]
    if not parts:
      raise DataError(f"{path}:{line}: empty text in {columns} {text_column!r}")
    if not row[li].strip():
      raise DataError(f"{path}:{line}: empty label in column {label_column!r}")
    texts.append(separator.join(parts))
    labels.append(row[li].strip())
    ids.append(f"{path.name}:{line}")
  if not texts:
    raise DataError(f"{path}: no rows")
  return texts, labels, np.array(ids)


def read_class_names(path: epath.Path) -> list[str]:
  """Class names from a `.json` file (a JSON list) or any other file (one name per line).

  Lines lose surrounding whitespace, as CSV labels do, and the file its byte-order mark; blank
  lines at the end are ignored, a blank line between names is an error naming `file:line`.
  """
  try:
    text = paths.read_text(path)
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"{path}: cannot read class names: {e}") from None
  if path.suffix.lower() == ".json":
    try:
      names = json.loads(text)
    except ValueError as e:
      raise DataError(f"{path}: class names must be a JSON list of strings: {e}") from None
    if not isinstance(names, list):
      raise DataError(f"{path}: class names must be a JSON list of strings, got a JSON {type(names).__name__}")
    names = [str(c) for c in names]
  else:
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
      names.pop()
    if names and names[0].startswith("[") and _is_json_list(text):
      raise DataError(f"{path}: holds a JSON list; name the file .json, or write one class name per line")
    blank = next((number for number, name in enumerate(names, start=1) if not name), None)
    if blank:
      raise DataError(f"{path}:{blank}: blank line between class names (one name per line)")
  if not names:
    raise DataError(f"{path}: no class names")
  duplicated = sorted({n for n in names if names.count(n) > 1})
  if duplicated:
    raise DataError(f"{path}: duplicate class names {duplicated}")
  return names


def _is_json_list(text: str) -> bool:
  try:
    return isinstance(json.loads(text), list)
  except ValueError:
    return False


def load_csv_split(cfg):
  train_path = require_file(cfg.path, "path")
  separator = cfg.get("text_separator", " ")
  texts, raw, ids = read_csv_text(train_path, cfg.text_column, cfg.label_column, cfg.csv_header, separator)
  if cfg.class_names_path:
    names = read_class_names(require_file(cfg.class_names_path, "class_names_path"))
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
    tp = require_file(cfg.test_path, "test_path")
    ttexts, traw, tids = read_csv_text(tp, cfg.text_column, cfg.label_column, cfg.csv_header, separator)
    test = Split(np.array(ttexts, dtype=object), to_labels(traw, tp, tids), tids)
  return train, test, names


def _read_hdf5_arrays(p: epath.Path, keys) -> list[np.ndarray]:
  """The datasets `keys` (paths such as 'train/data') of the HDF5 file `p`."""
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError("data.source='hdf5' needs h5py: pip install 'jaxal[hdf5]'") from None
  try:
    with contextlib.ExitStack() as files:  # a URL is read through a file object
      f = files.enter_context(h5py.File(p if paths.is_local(p) else files.enter_context(p.open("rb")), "r"))
      for key in keys:
        if key not in f:
          raise DataError(f"{p}: no dataset {key!r}; the file's top level holds {sorted(f.keys())}")
        if not isinstance(f[key], h5py.Dataset):
          raise DataError(f"{p}: {key!r} is a group, not a dataset; it holds {sorted(f[key].keys())} "
                          "(set data.x_key / data.y_key to dataset paths such as 'train/data')")
      return [f[key][()] for key in keys]
  except OSError as e:
    raise DataError(f"{p}: cannot read HDF5 file: {e}") from None


def load_hdf5_split(cfg):
  def read(path_field, own_labels_field, x_key, y_key):
    x, y, p, pair, y_source = _read_pair(cfg, path_field, own_labels_field, x_key, y_key, _read_hdf5_arrays)
    inputs = to_uint8_images(x, f"{p}[{x_key}]", cfg.image_shape)
    labels = to_labels(np.asarray(y).reshape(-1), y_source)
    check_pair(inputs, labels, pair)
    return Split(inputs, labels, make_ids(f"{p.name}/{x_key}/", len(labels)))

  train = read("path", "labels_path", cfg.x_key or "train/data", cfg.y_key or "train/target")
  test = None
  if cfg.test_path or cfg.test_x_key:
    test = read("test_path" if cfg.test_path else "path", "test_labels_path", cfg.test_x_key or "test/data",
                cfg.test_y_key or "test/target")
  return train, test, []
