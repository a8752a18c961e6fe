"""Every source read by example index, never whole: `jaxal convert`, the conversion a streamed run
makes (`stream.prepare`), and TFDS array_record data_dirs read in place.

`load(cfg)` returns the `Dataset` that `datasets.load(cfg)` returns, except that each split's
inputs are a lazy `stream.StreamedInputs` over a `Rows` reader (only labels and ids are in
memory). The shuffle, `max_train`, the carved test split, the label checks and the vocabulary
are the in-memory path's own code (`datasets.load` with this module's readers), so the rows,
ids and labels written are the same. Readers:
* npz: an uncompressed (`np.savez`) member is read by row where it lies in the zip file
  (`FileArray`: `os.preadv`, not a memory map, so resident memory stays small); a compressed
  (`np.savez_compressed`) or remote one is first inflated, in 256 KiB blocks, into a temporary
  `.npy` file (in `$TMPDIR`: it needs room for the array) read the same way;
* idx: read by row the same way (a `.gz` file is inflated into a temporary file first);
* HDF5: read by index through h5py, a chunk of rows at a time;
* image folder: file by file (the sizes and channels come from each file's header);
* CSV: row by row, from the byte offset of each row recorded in one pass;
* TFDS: `tfds.data_source(...)` by index.
Text is tokenized a chunk at a time; the word vocabulary is counted in one pass over the
training texts. The last three live in `file_streams`.
"""

import gzip
import hashlib
import os
import shutil
import tempfile
import zipfile

import numpy as np

from jaxal import paths
from jaxal.data import datasets
from jaxal.data import files
from jaxal.data import fingerprint
from jaxal.data.types import DataError, Split, check_pair, make_ids, require_file, shape_option, to_labels
from jaxal.data.types import to_uint8_images

CHUNK_BYTES = 1 << 20  # inputs read at once while converting (a few copies of it are the peak)
TEXT_ROWS = 256
COPY_BLOCK = 1 << 18


class Rows:
  """Random access to one split's inputs by example index (the `records` of a StreamedInputs)."""

  shape: tuple[int, ...] = ()
  dtype: np.dtype = np.dtype(np.uint8)
  from_texts = False  # read `TEXT_ROWS` at a time: a row's cost is its text, not its token ids

  def decode(self, indices) -> np.ndarray:
    raise NotImplementedError

  def check_unchanged(self):
    """Sources read in place are checked by the run's data fingerprint."""


def lazy(rows: Rows, n: int):
  from jaxal.data import stream  # pylint: disable=g-import-not-at-top  (stream imports this module)
  return stream.StreamedInputs(rows, np.arange(n))


def read_in_chunks(inputs, rows: np.ndarray, chunk_bytes: int = 0):
  """Yields `inputs[rows]` about `chunk_bytes` (`CHUNK_BYTES`) of inputs at a time (texts, and
  token ids read from texts, `TEXT_ROWS` at a time), from an array or a lazy view: what a
  conversion holds at once, however large the source."""
  row_bytes = int(np.prod(inputs.shape[1:], dtype=np.int64)) * np.dtype(inputs.dtype).itemsize
  chunk = max(1, (chunk_bytes or CHUNK_BYTES) // max(1, row_bytes))
  if np.dtype(inputs.dtype) == object or getattr(getattr(inputs, "records", None), "from_texts", False):
    chunk = TEXT_ROWS
  for start in range(0, len(rows), chunk):
    part = rows[start:start + chunk]
    yield inputs.read(part) if hasattr(inputs, "read") else np.asarray(inputs[part])


class ArrayRows(Rows):
  """Rows of a random-access array (a memory map, an h5py dataset) turned into model inputs."""

  def __init__(self, array, convert, shape, dtype, keep=()):
    self.array, self.convert, self.keep = array, convert, keep  # `keep`: open files, temporary files
    self.shape, self.dtype = tuple(shape), np.dtype(dtype)

  def decode(self, indices) -> np.ndarray:
    indices = np.asarray(indices, np.int64)
    order = np.unique(indices)  # h5py reads increasing indices only
    got = self.convert(np.asarray(self.array[order]))
    if len(order) == len(indices) and (order == indices).all():  # a conversion's rows: in order, no copy
      return got
    return got[np.searchsorted(order, indices)]


class FileArray:
  """An `(n, ...)` C-order array stored at byte `offset` of a local file, read by row with
  `os.preadv` into the caller's array: unlike a memory map, whose touched pages stay in the
  process's resident memory, a conversion holds only the rows it reads."""

  def __init__(self, path, dtype: np.dtype, shape: tuple[int, ...], offset: int, keep=()):
    self.fd, self.dtype, self.shape, self.offset, self.keep = os.open(path, os.O_RDONLY), dtype, shape, offset, keep
    self.ndim, self.row_bytes = len(shape), int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

  def __len__(self) -> int:
    return self.shape[0]

  def __del__(self):
    if hasattr(self, "fd"):
      os.close(self.fd)

  def __getitem__(self, rows) -> np.ndarray:
    rows = np.asarray(rows, np.int64)
    out = np.empty((len(rows),) + tuple(self.shape[1:]), self.dtype)
    starts = np.r_[0, np.flatnonzero(np.diff(rows) != 1) + 1, len(rows)]  # runs of consecutive rows: one read each
    for a, b in zip(starts[:-1].tolist(), starts[1:].tolist()):
      want = (b - a) * self.row_bytes
      if want and os.preadv(self.fd, [memoryview(out[a:b]).cast("B")], self.offset + int(rows[a]) * self.row_bytes) != want:
        raise DataError(f"{self.keep[0] if self.keep else 'array file'}: shorter than its header says (changed while read?)")
    return out


def image_rows(x, source: str, image_shape=(), keep=()) -> ArrayRows:
  """`x` (n, ...) as uint8 NHWC images a chunk at a time: `types.to_uint8_images` on each chunk."""
  image_shape = shape_option(image_shape)
  shape = tuple(x.shape)
  if image_shape:
    if int(np.prod(shape[1:], dtype=np.int64)) != int(np.prod(image_shape, dtype=np.int64)):
      raise DataError(f"{source}: cannot reshape {shape} to images of shape {tuple(image_shape)}")
    shape = (shape[0],) + tuple(image_shape)
  if len(shape) == 3:
    shape += (1,)
  if len(shape) != 4:
    raise DataError(f"{source}: images must be (n, h, w) or (n, h, w, c), got shape {shape}"
                    " (set data.image_shape for flat rows)")
  if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
    raise DataError(f"{source}: unsupported image dtype {x.dtype}")
  convert = lambda chunk: to_uint8_images(chunk.reshape((len(chunk),) + shape[1:]), source)
  return ArrayRows(x, convert, shape[1:], np.uint8, keep)


# ----------------------------------------------------------------------------- npz and idx


def _inflated(fileobj, source: str):
  """`fileobj`'s bytes copied into a temporary file, `COPY_BLOCK` at a time; the file is deleted on close."""
  tmp = tempfile.NamedTemporaryFile(prefix="jaxal_", suffix=".npy")
  try:
    shutil.copyfileobj(fileobj, tmp, COPY_BLOCK)
    tmp.flush()
  except (OSError, EOFError, zipfile.BadZipFile, gzip.BadGzipFile, ValueError) as e:
    tmp.close()
    raise DataError(f"{source}: cannot read (truncated or corrupt?): {e}") from None
  return tmp


def npz_member(p, key: str):
  """`(array key read by row, what keeps it open)`; None when `p` is not a zip file (the
  in-memory reader then names what it is)."""
  local = paths.is_local(p)
  try:
    with paths.of(p).open("rb") as raw:
      if not zipfile.is_zipfile(raw):
        return None
      raw.seek(0)
      with zipfile.ZipFile(raw) as z:
        names = {n[:-4] if n.endswith(".npy") else n: n for n in z.namelist()}
        if key not in names:
          raise DataError(f"{p}: no array {key!r}; the archive holds {sorted(names)}")
        info = z.getinfo(names[key])
        if local and info.compress_type == zipfile.ZIP_STORED:
          raw.seek(info.header_offset)
          local_header = raw.read(30)
          start = info.header_offset + 30 + int.from_bytes(local_header[26:28], "little") + \
              int.from_bytes(local_header[28:30], "little")
          return _npy_map(paths.local(p, "data.path"), start, info.file_size, f"{p}[{key}]"), ()
        with z.open(info) as member:
          tmp = _inflated(member, f"{p}[{key}]")
        return _npy_map(tmp.name, 0, os.path.getsize(tmp.name), f"{p}[{key}]"), (tmp,)
  except (OSError, zipfile.BadZipFile, EOFError) as e:
    raise DataError(f"{p}: cannot read npz archive (truncated, or not a zip file?): {e}") from None


def _npy_map(path, start: int, size: int, source: str):
  """The `.npy` array stored at byte `start` of `path` (`size` bytes), read by row (`FileArray`)."""
  with open(path, "rb") as f:
    f.seek(start)
    try:
      version = np.lib.format.read_magic(f)
      read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
      shape, fortran, dtype = read_header(f)
    except ValueError as e:
      raise DataError(f"{source}: not a .npy array: {e}") from None
    offset = f.tell()
  if dtype.hasobject:
    raise DataError(f"{source}: holds Python objects, which jaxal never unpickles")
  need = offset - start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if need > size:
    raise DataError(f"{source}: truncated array ({size} bytes, its header needs {need})")
  if fortran:  # rows are not contiguous: memory-mapped
    return np.memmap(path, dtype, "r", offset, shape, "F")
  return FileArray(path, dtype, tuple(shape), offset, (source,))


def _npz_split(cfg, path_field, own_labels_field, x_key, y_key) -> Split | None:
  p = require_file(getattr(cfg, path_field), path_field)
  got = npz_member(p, x_key)
  if got is None:  # a .npy file or no zip at all: the in-memory reader's error
    files._read_npz_arrays(p, (x_key, y_key))  # pylint: disable=protected-access
    raise DataError(f"{p}: cannot read npz archive (not a zip file)")
  x, keep = got
  field = files.labels_field(cfg, path_field, own_labels_field)
  lp = require_file(getattr(cfg, field), field)
  (y,) = files._read_npz_arrays(lp, (y_key,))  # pylint: disable=protected-access  (labels only)
  pair = str(p) if field == path_field else f"{p}[{x_key}] and {lp}[{y_key}]"
  if cfg.modality == "text":
    if not np.issubdtype(x.dtype, np.integer) or x.ndim != 2:
      raise DataError(f"{p}: text inputs must be a 2-D integer array of token ids, got {x.dtype} {x.shape}")
    rows = ArrayRows(x, lambda chunk: chunk.astype(np.int32), x.shape[1:], np.int32, keep)
  else:
    rows = image_rows(x, f"{p}[{x_key}]", cfg.image_shape, keep)
  return _split(rows, len(x), to_labels(y, f"{lp}[{y_key}]"), pair, f"{p.name}/")


def _split(rows: Rows, n: int, labels: np.ndarray, pair: str, id_prefix: str) -> Split:
  check_pair(range(n), labels, pair)
  return Split(lazy(rows, n), labels, make_ids(id_prefix, n))


def load_npz(cfg):
  train = _npz_split(cfg, "path", "labels_path", cfg.x_key or "x", cfg.y_key or "y")
  test = None
  if cfg.test_path or cfg.test_x_key:
    test = _npz_split(cfg, "test_path" if cfg.test_path else "path", "test_labels_path", cfg.test_x_key or "x",
                      cfg.test_y_key or "y")
  return train, test, []


IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_map(path):
  """An IDX file read by row (a `.gz` one inflated into a temporary file first): `(array, keep)`."""
  keep = ()
  try:
    if path.suffix == ".gz" or not paths.is_local(path):
      with paths.of(path).open("rb") as f:
        tmp = _inflated(gzip.GzipFile(fileobj=f) if path.suffix == ".gz" else f, str(path))
      local, keep = tmp.name, (tmp,)
    else:
      local = paths.local(path, "data.path")
    with open(local, "rb") as f:
      head = f.read(4)
      if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
      if head[2] not in IDX_TYPES:
        raise DataError(f"{path}: unknown IDX data type 0x{head[2]:02x}")
      raw_dims = f.read(4 * head[3])
    size = os.path.getsize(local)
  except OSError as e:
    raise DataError(f"{path}: cannot read IDX file: {e}") from None
  header = 4 + 4 * head[3]
  if len(raw_dims) < 4 * head[3]:
    raise DataError(f"{path}: truncated IDX header")
  dims = tuple(int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(head[3]))
  dtype = np.dtype(IDX_TYPES[head[2]])
  expected = int(np.prod(dims)) * dtype.itemsize
  if size - header != expected:
    raise DataError(f"{path}: IDX header says {dims} ({expected} bytes) but the file holds {size - header} data bytes")
  return FileArray(local, dtype, dims, header, (str(path),)), keep


def load_idx(cfg):
  def read(images_field, labels_field):
    ip = require_file(getattr(cfg, images_field), images_field)
    lp = require_file(getattr(cfg, labels_field), labels_field)
    x, keep = idx_map(ip)
    rows = image_rows(x, str(ip), cfg.image_shape, keep)
    return _split(rows, len(x), to_labels(files.read_idx(lp), str(lp)), str(ip), f"{ip.name}/")

  train = read("path", "labels_path")
  test = read("test_path", "test_labels_path") if cfg.test_path else None
  return train, test, []


# ----------------------------------------------------------------------------- HDF5


def _hdf5_dataset(p, key: str, keep: list):
  import h5py  # pylint: disable=g-import-not-at-top
  try:
    f = h5py.File(p if paths.is_local(p) else p.open("rb"), "r")
  except OSError as e:
    raise DataError(f"{p}: cannot read HDF5 file: {e}") from None
  keep.append(f)
  if key not in f:
    raise DataError(f"{p}: no dataset {key!r}; the file's top level holds {sorted(f.keys())}")
  if not isinstance(f[key], h5py.Dataset):
    raise DataError(f"{p}: {key!r} is a group, not a dataset; it holds {sorted(f[key].keys())} "
                    "(set data.x_key / data.y_key to dataset paths such as 'train/data')")
  return f[key]


def load_hdf5(cfg):
  try:
    import h5py  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise DataError("data.source='hdf5' needs h5py: pip install 'jaxal[hdf5]'") from None

  def read(path_field, own_labels_field, x_key, y_key):
    p = require_file(getattr(cfg, path_field), path_field)
    field = files.labels_field(cfg, path_field, own_labels_field)
    lp = require_file(getattr(cfg, field), field)
    keep = []
    x = _hdf5_dataset(p, x_key, keep)
    y = _hdf5_dataset(lp, y_key, keep)[()]
    pair = str(p) if field == path_field else f"{p}[{x_key}] and {lp}[{y_key}]"
    rows = image_rows(x, f"{p}[{x_key}]", cfg.image_shape, keep)
    return _split(rows, len(x), to_labels(np.asarray(y).reshape(-1), f"{lp}[{y_key}]"), pair,
                  f"{p.name}/{x_key}/")

  train = read("path", "labels_path", cfg.x_key or "train/data", cfg.y_key or "train/target")
  test = None
  if cfg.test_path or cfg.test_x_key:
    test = read("test_path" if cfg.test_path else "path", "test_labels_path", cfg.test_x_key or "test/data",
                cfg.test_y_key or "test/target")
  return train, test, []


def digests(dataset) -> dict:
  """`fingerprint.of_splits(pool=dataset.train, test=dataset.test)`, inputs hashed a chunk at a time."""
  out = {}
  for name, split in (("pool", dataset.train), ("test", dataset.test)):
    x = split.inputs
    h = hashlib.sha256(f"{x.dtype.str} {tuple(x.shape[1:])}\n".encode())
    for chunk in read_in_chunks(x, np.arange(len(x))):
      h.update(np.ascontiguousarray(chunk).data)
    out[name] = {"size": len(split), "ids": fingerprint.digest_array(split.ids), "inputs": h.hexdigest(),
                 "labels": fingerprint.digest_array(split.labels)}
  return out


def load(cfg):
  """`datasets.load(cfg)` with inputs read by index (see the module docstring); digits is read whole."""
  from jaxal.data import file_streams  # pylint: disable=g-import-not-at-top  (it imports this module)
  readers = {"npz": load_npz, "idx": load_idx, "hdf5": load_hdf5, "image_folder": file_streams.load_image_folder,
             "csv": file_streams.load_csv, "tfds": file_streams.load_tfds}
  return datasets.load(cfg, read=readers.get(cfg.source), encode=file_streams.encode_texts)
