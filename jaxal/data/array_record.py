"""Datasets as sharded ArrayRecord files plus a small JSON index: `jaxal convert` and the
`array_record` source.

A converted directory holds, per split (`pool`, `test`), shards named
`{split}-{k:05d}-of-{n:05d}.array_record` and one `index.json`:

    {"format": "jaxal.array_record", "version": 1, "name", "modality", "num_classes",
     "class_names", "vocab_size",
     "splits": {"pool": {"num_examples", "input_shape", "input_dtype",
                         "shards": [{"file", "num_records", "bytes", "sha256"}, ...]}, "test": ...}}

One example per record, no pickle. A record is a fixed 12-byte little-endian header, then
the id, then the input:

    bytes 0-3   magic b"JXR1"
    bytes 4-7   label, int32
    bytes 8-11  length L of the id in bytes, uint32
    12..12+L    the example's id, UTF-8
    then        the input: `prod(input_shape)` values of `input_dtype` (uint8 images,
                int32 token ids), C order, little-endian

Ids travel in the records, so the index stays small at millions of examples. The index's
`sha256` and `bytes` per shard let a reader name a shard that is truncated, replaced or
missing before it decodes anything.

`convert` streams: `jaxal convert` and a streamed run's conversion pass it the dataset of
`source_streams.load`, whose inputs are read by index, a chunk at a time, from the source's
files. `load_array_record_split` (the `array_record` source with `data.pool_storage=memory`)
reads every record into in-memory arrays; `stream.ShardedRecords` reads them by index.
"""

import hashlib
import json
import pathlib

import numpy as np

from jaxal import parallel, paths
from jaxal.data.types import DataError, Split, require_file

FORMAT = "jaxal.array_record"
VERSION = 1
INDEX_NAME = "index.json"
SPLITS = ("pool", "test")
MAGIC = b"JXR1"
HEADER = np.dtype([("magic", "S4"), ("label", "<i4"), ("id_length", "<u4")])
READ_BLOCK = 4096  # records decoded per read when a split is loaded into memory
WRITER_OPTIONS = "group_size:1"  # one record per chunk: random access by index, as grain reads
SHARD_BYTES = 128 << 20  # default target size of a shard's inputs


def _records_module():
  try:
    from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  except ImportError as e:  # installed with tensorflow-datasets on Linux; pinned in constraints.txt
    raise DataError(f"ArrayRecord files need the array-record package (pip install array-record): {e}") from None
  return array_record_module


def encode_record(inputs: np.ndarray, label: int, example_id: str) -> bytes:
  """One example as bytes (layout in the module docstring)."""
  id_bytes = str(example_id).encode("utf-8")
  header = np.array([(MAGIC, int(label), len(id_bytes))], HEADER).tobytes()
  little = np.ascontiguousarray(inputs, inputs.dtype.newbyteorder("<"))
  return header + id_bytes + little.tobytes()


def decode_record(record: bytes, shape: tuple[int, ...], dtype: np.dtype, where: str):
  """`(inputs, label, id)` of one record; `where` names the shard and record in errors."""
  size = HEADER.itemsize
  if len(record) < size:
    raise DataError(f"{where}: record of {len(record)} bytes is shorter than its {size}-byte header")
  header = np.frombuffer(record, HEADER, count=1)[0]
  if header["magic"] != MAGIC:
    raise DataError(f"{where}: not a jaxal record (magic {bytes(header['magic'])!r}, expected {MAGIC!r})")
  id_end = size + int(header["id_length"])
  want = id_end + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(record) != want:
    raise DataError(f"{where}: record holds {len(record)} bytes, its header and input shape {shape} "
                    f"{dtype} need {want}")
  inputs = np.frombuffer(record, dtype.newbyteorder("<"), offset=id_end).reshape(shape)
  return inputs, int(header["label"]), record[size:id_end].decode("utf-8")


def _file_digest(path: pathlib.Path) -> str:
  digest, block = hashlib.sha256(), bytearray(1 << 16)  # one reused buffer: a conversion's memory stays small
  view = memoryview(block)
  with open(path, "rb", buffering=0) as f:
    while size := f.readinto(block):
      digest.update(view[:size])
  return digest.hexdigest()


def _shard_name(split: str, k: int, n: int) -> str:
  return f"{split}-{k:05d}-of-{n:05d}.array_record"


def write_split(out: pathlib.Path, split_name: str, split: Split, records_per_shard: int) -> dict:
  """Writes `split` as shards under `out`, its inputs read a chunk at a time (an array or a lazy
  `source_streams` view, so a conversion never holds them whole); returns its index entry."""
  from jaxal.data import source_streams  # pylint: disable=g-import-not-at-top  (it imports datasets, which imports this)
  inputs = split.inputs
  n = len(split)
  num_shards = max(1, -(-n // records_per_shard))
  module = _records_module()
  shards = []
  for k in range(num_shards):
    name = _shard_name(split_name, k, num_shards)
    path = out / name
    rows = np.arange(k * records_per_shard, min(n, (k + 1) * records_per_shard))
    writer = module.ArrayRecordWriter(str(path), WRITER_OPTIONS)
    try:
      done = rows[0] if len(rows) else 0
      for chunk in source_streams.read_in_chunks(inputs, rows):
        for j, row in enumerate(chunk, start=done):
          writer.write(encode_record(row, split.labels[j], split.ids[j]))
        done += len(chunk)
    finally:
      writer.close()
    shards.append({"file": name, "num_records": len(rows), "bytes": path.stat().st_size,
                   "sha256": _file_digest(path)})
  return {"num_examples": n, "input_shape": list(inputs.shape[1:]), "input_dtype": np.dtype(inputs.dtype).name,
          "shards": shards}


def convert(dataset, out, records_per_shard: int = 0) -> pathlib.Path:
  """Writes a `datasets.Dataset` to `out` (shards, then `index.json`); returns the index path. Its
  inputs may be lazy (`source_streams.load`): `jaxal convert` then streams source by source.

  `records_per_shard` 0 picks about `SHARD_BYTES` of inputs per shard. The index is written
  last, through a temporary file, so a directory with an index holds every shard it names.
  """
  out = paths.local(out, "--out", DataError, "the ArrayRecord writer")  # never a local `gs:` folder
  out.mkdir(parents=True, exist_ok=True)
  if (out / INDEX_NAME).exists():
    raise DataError(f"{out / INDEX_NAME} already exists; convert into an empty directory")
  row_bytes = max(1, int(np.prod(dataset.input_shape, dtype=np.int64)) * dataset.train.inputs.dtype.itemsize)
  per_shard = records_per_shard or max(1, SHARD_BYTES // row_bytes)
  splits = {name: write_split(out, name, split, per_shard)
            for name, split in (("pool", dataset.train), ("test", dataset.test))}
  index = {"format": FORMAT, "version": VERSION, "name": dataset.name, "modality": dataset.modality,
           "num_classes": dataset.num_classes, "class_names": list(dataset.class_names),
           "vocab_size": dataset.vocab_size, "splits": splits}
  tmp = out / (INDEX_NAME + ".tmp")
  tmp.write_text(json.dumps(index, indent=1) + "\n")
  tmp.replace(out / INDEX_NAME)
  return out / INDEX_NAME


def read_index(directory: pathlib.Path) -> dict:
  """The parsed and checked `index.json` of a converted directory."""
  path = directory / INDEX_NAME
  if not path.is_file():
    raise DataError(f"{path}: no index file; is {directory} a directory written by `jaxal convert`?")
  try:
    index = json.loads(path.read_text(encoding="utf-8"))
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise DataError(f"{path}: unreadable index ({type(e).__name__}: {e})") from None
  if not isinstance(index, dict) or index.get("format") != FORMAT:
    raise DataError(f"{path}: not a jaxal ArrayRecord index (format is not {FORMAT!r})")
  if index.get("version") != VERSION:
    raise DataError(f"{path}: index version {index.get('version')!r}; this jaxal reads version {VERSION}")
  try:
    for name in SPLITS:
      split = index["splits"][name]
      np.dtype(split["input_dtype"])
      if sum(int(s["num_records"]) for s in split["shards"]) != int(split["num_examples"]):
        raise DataError(f"{path}: the {name} shards' record counts do not add up to its num_examples "
                        f"{split['num_examples']}")
      for s in split["shards"]:
        str(s["file"]), int(s["bytes"]), str(s["sha256"])
    list(index["class_names"]), int(index["num_classes"])
  except (KeyError, TypeError, ValueError) as e:
    if isinstance(e, DataError):
      raise
    raise DataError(f"{path}: unreadable index (missing or malformed field: {type(e).__name__}: {e})") from None
  return index


def _check_shard(directory: pathlib.Path, shard: dict) -> pathlib.Path:
  """The shard's path, once its size and checksum match the index."""
  path = directory / shard["file"]
  if not path.is_file():
    raise DataError(f"{path}: shard named in {directory / INDEX_NAME} is missing")
  size = path.stat().st_size
  if size != shard["bytes"]:
    raise DataError(f"{path}: shard holds {size} bytes, {INDEX_NAME} says {shard['bytes']} "
                    f"({'truncated' if size < shard['bytes'] else 'changed'} since conversion)")
  if _file_digest(path) != shard["sha256"]:
    raise DataError(f"{path}: shard's sha256 differs from {INDEX_NAME}; it changed since conversion")
  return path


def read_split(directory: pathlib.Path, index: dict, name: str) -> Split:
  """Every record of split `name` as in-memory arrays, shards checked against the index."""
  meta = index["splits"][name]
  shape, dtype, n = tuple(meta["input_shape"]), np.dtype(meta["input_dtype"]), int(meta["num_examples"])
  inputs = parallel.aligned_empty((n,) + shape, dtype)  # goes to the device without a copy
  labels = np.empty(n, np.int32)
  ids = []
  module = _records_module()
  row = 0
  for shard in meta["shards"]:
    path = _check_shard(directory, shard)
    try:
      reader = module.ArrayRecordReader(str(path))
      try:
        count = reader.num_records()
        if count != shard["num_records"]:
          raise DataError(f"{path}: shard holds {count} records, {INDEX_NAME} says {shard['num_records']}")
        for begin in range(0, count, READ_BLOCK):  # a block of records at a time, not the whole shard
          for k, record in enumerate(reader.read(begin, min(begin + READ_BLOCK, count)), begin):
            inputs[row], labels[row], example_id = decode_record(record, shape, dtype, f"{path} record {k}")
            ids.append(example_id)
            row += 1
      finally:
        reader.close()
    except RuntimeError as e:  # riegeli's message for a damaged file
      raise DataError(f"{path}: unreadable ArrayRecord shard ({e})") from None
  return Split(inputs, labels, np.array(ids))


def load_array_record_split(cfg):
  """The `array_record` source: `data.path` is a directory written by `jaxal convert`."""
  directory = pathlib.Path(require_file(cfg.path, "path", local_for="the ArrayRecord reader"))
  if not directory.is_dir():
    raise DataError(f"data.path: {directory} is not a directory written by `jaxal convert`")
  index = read_index(directory)
  if index.get("modality") == "text" and cfg.modality != "text":
    raise DataError(f"{directory / INDEX_NAME}: holds token ids (modality text); set data.modality=text")
  pool, test = (read_split(directory, index, name) for name in SPLITS)
  if index.get("modality") == "text":
    _check_vocab_size(directory / INDEX_NAME, index, pool, test)
  return pool, test, [str(c) for c in index["class_names"]]


def _check_vocab_size(path: pathlib.Path, index: dict, pool: Split, test: Split):
  """Refuses token ids whose tokenizer vocabulary `datasets.load` would not recover.

  `datasets.load` sizes the vocabulary of token-id inputs as the largest id + 1; a source
  cannot pass the index's `vocab_size` on yet, and a smaller embedding would silently make
  another model than the original run's.
  """
  derived = int(max(pool.inputs.max(initial=0), test.inputs.max(initial=0))) + 1
  if int(index.get("vocab_size") or derived) != derived:
    raise DataError(f"{path}: the tokenizer's vocab_size {index['vocab_size']} is not the largest token id + 1 "
                    f"({derived}), which is all the array_record source can pass on yet; read the original "
                    "source instead")
