"""The streamed pool (`data.pool_storage = "stream"`): pool inputs stay in ArrayRecord shards.

A `StreamedInputs` stands where the in-memory pool's `(n, ...)` array stood (`RunData.pool_inputs`
and `data.pool.inputs`): it has the array's `shape` and `dtype`, its `[...]` with a slice or an
index array is another lazy view, and `read(rows)` reads those rows from the shards (checked against
`index.json` when opened). `prefetched(inputs, batches)` reads a sequence of row batches through
grain (`MapDataset` -> `to_iter_dataset` with reader threads and a prefetch buffer), so host reads
overlap the device's work. The Predictor scores chunks read so, and the Trainer feeds each block of
steps the rows it gathers (the labeled set is read once into memory when it is small), so both run
the same per-chunk and per-step computation as the in-memory pool and give the same numbers.

Neither the host nor the device ever holds all the pool's inputs: start-up reads the labels and ids
(one pass over the records) and then computes the normalization statistics and the data
fingerprint in one more streamed pass; the test and validation splits are read into memory.
A source that is not ArrayRecord is converted once into `WORKDIR/pool_stream` (`prepare`), read
source by source (`source_streams`); a TFDS data_dir of images is read in place by index.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import threading

import numpy as np

from jaxal import paths
from jaxal.data import array_record as ar
from jaxal.data import file_streams
from jaxal.data import fingerprint
from jaxal.data import pipeline
from jaxal.data import source_streams
from jaxal.data.types import DataError, Dataset, Split, require_file

STORAGES = ("memory", "stream")
CONVERTED_DIR = "pool_stream"  # under the workdir: a non-ArrayRecord source converted for streaming
SOURCE_FILE = "source_fingerprint.json"
READ_THREADS = 4
PREFETCH = 4  # batches read ahead
CACHE_BYTES = 256 << 20  # the labeled set is read into memory once when its inputs are at most this
HISTOGRAM_BLOCK = 1 << 18  # pixels per bincount in `scan` (its int64 copy: 6 MB for 3 channels)
SCAN_BYTES = 4 << 20  # inputs per batch of `scan` (4096 rows of 3 KB images: a 106 MB higher peak)


class ShardedRecords:
  """Random access by record index to one split's checked shards."""

  def __init__(self, directory: pathlib.Path, index: dict, split: str):
    meta = index["splits"][split]
    self.directory, self.index_path = directory, directory / ar.INDEX_NAME
    self.shape, self.dtype = tuple(meta["input_shape"]), np.dtype(meta["input_dtype"])
    module = ar._records_module()  # pylint: disable=protected-access
    self.paths, self.readers, self.stats, self.locks = [], [], [], []
    counts = []
    for shard in meta["shards"]:
      path = ar._check_shard(directory, shard)  # pylint: disable=protected-access
      try:
        reader = module.ArrayRecordReader(str(path))
        count = reader.num_records()
      except RuntimeError as e:
        raise DataError(f"{path}: unreadable ArrayRecord shard ({e})") from None
      if count != shard["num_records"]:
        raise DataError(f"{path}: shard holds {count} records, {ar.INDEX_NAME} says {shard['num_records']}")
      self.paths.append(path)
      self.readers.append(reader)
      self.locks.append(threading.Lock())
      self.stats.append(_stat(path))
      counts.append(count)
    self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

  def __len__(self) -> int:
    return int(self.starts[-1])

  def __del__(self):  # the shards' file handles go with the run's data
    for reader in getattr(self, "readers", ()):
      reader.close()

  def check_unchanged(self):
    """Raises DataError naming a shard whose size or modification time changed since it was opened."""
    for path, stat in zip(self.paths, self.stats):
      if not path.is_file() or _stat(path) != stat:
        raise DataError(f"{path}: shard changed since the run started (it is read while the run goes on); "
                        "restore it, or start a run on the new data")

  def records(self, indices: np.ndarray) -> list[bytes]:
    """The records at global `indices`, in that order."""
    indices = np.asarray(indices, np.int64)
    shard_of = np.searchsorted(self.starts, indices, side="right") - 1
    out = [None] * len(indices)
    for s in np.unique(shard_of):
      at = np.flatnonzero(shard_of == s)
      local = (indices[at] - self.starts[s]).tolist()
      try:
        with self.locks[s]:
          got = self.readers[s].read(local)
      except RuntimeError as e:
        raise DataError(f"{self.paths[s]}: unreadable record ({e}); the shard changed since the run started") from None
      for k, record in zip(at, got):
        out[k] = record
    return out

  def decode(self, indices: np.ndarray) -> np.ndarray:
    rows = np.empty((len(indices),) + self.shape, self.dtype)
    for k, (i, record) in enumerate(zip(np.asarray(indices).tolist(), self.records(indices))):
      rows[k] = ar.decode_record(record, self.shape, self.dtype, f"{self._where(i)}")[0]
    return rows

  def labels_and_ids(self, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Every record's label and id (one pass, headers decoded only)."""
    labels, ids = np.empty(len(self), np.int32), []
    size = ar.HEADER.itemsize
    for start in range(0, len(self), batch):
      idx = np.arange(start, min(len(self), start + batch))
      for i, record in zip(idx.tolist(), self.records(idx)):
        if len(record) < size or record[:4] != ar.MAGIC:
          raise DataError(f"{self._where(i)}: not a jaxal record")
        header = np.frombuffer(record, ar.HEADER, count=1)[0]
        labels[i] = header["label"]
        ids.append(record[size:size + int(header["id_length"])].decode("utf-8"))
    return labels, np.array(ids)

  def _where(self, i: int) -> str:
    s = int(np.searchsorted(self.starts, i, side="right") - 1)
    return f"{self.paths[s]} record {i - int(self.starts[s])}"


def _stat(path: pathlib.Path) -> tuple[int, int]:
  st = path.stat()
  return st.st_size, st.st_mtime_ns


@dataclasses.dataclass(eq=False)
class StreamedInputs:
  """Pool inputs read by row from shards; a lazy view (`rows` maps its rows to record indices)."""

  records: ShardedRecords
  rows: np.ndarray

  @property
  def shape(self) -> tuple[int, ...]:
    return (len(self.rows),) + self.records.shape

  @property
  def dtype(self) -> np.dtype:
    return self.records.dtype

  @property
  def ndim(self) -> int:
    return len(self.shape)

  @property
  def size(self) -> int:
    return int(np.prod(self.shape, dtype=np.int64))

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, key):
    if isinstance(key, (int, np.integer)):
      return self.read(np.array([key]))[0]
    return StreamedInputs(self.records, self.rows[key])

  def read(self, rows) -> np.ndarray:
    """Rows `rows` of this view as a host array `(len(rows), ...)`."""
    return self.records.decode(self.rows[np.asarray(rows, np.int64)])

  def __array__(self, dtype=None, copy=None):  # a small split (validation) read whole
    out = self.read(np.arange(len(self)))
    return out if dtype is None else out.astype(dtype)

  def scan(self, pooled: bool, chunk_rows: int = 0):
    """`((mean, std) of uint8 images, or None, fingerprint digest)` in one streamed pass; the
    same numbers as `pipeline.channel_statistics` and `fingerprint.digest_array` in memory.
    `chunk_rows` rows per batch (default: about `SCAN_BYTES` of inputs)."""
    h = hashlib.sha256(f"{self.dtype.str} {self.shape[1:]}\n".encode())
    row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
    chunk_rows = chunk_rows or max(1, SCAN_BYTES // max(1, row_bytes))
    channels = self.shape[-1] if self.ndim > 1 else 1
    counts = np.zeros((channels, 256), np.int64)
    batches = [np.arange(s, min(len(self), s + chunk_rows)) for s in range(0, len(self), chunk_rows)]
    for chunk in prefetched(self, batches):
      h.update(np.ascontiguousarray(chunk).data)
      if self.dtype == np.uint8:  # one bincount per block of values: value + 256 * channel
        flat = chunk.reshape(-1, channels)
        for lo in range(0, len(flat), HISTOGRAM_BLOCK):  # bincount widens its input to int64: 8x the bytes
          shifted = flat[lo:lo + HISTOGRAM_BLOCK].astype(np.uint16) + np.arange(0, 256 * channels, 256, dtype=np.uint16)
          counts += np.bincount(shifted.reshape(-1), minlength=256 * channels).reshape(channels, 256)
    stats = None
    if self.dtype == np.uint8:
      counts = counts.sum(axis=0, keepdims=True) if pooled else counts
      moments = [pipeline._exact_moments(row) for row in counts]  # pylint: disable=protected-access
      stats = np.array([m for m, _ in moments]), np.array([s for _, s in moments])
    return stats, h.hexdigest()


def check_config(config) -> None:
  """ConfigError for a bad `data.pool_storage`; the stages that need every pool input on the
  device (DeepCluster pretraining, the P-DARTS and Bayesian searches) refuse the streamed pool."""
  from jaxal.config import ConfigError  # pylint: disable=g-import-not-at-top  (config imports this lazily)
  from jaxal.search import bayesian  # pylint: disable=g-import-not-at-top
  storage = config.data.pool_storage
  if storage not in STORAGES:
    raise ConfigError(f"data.pool_storage: must be memory or stream, got {storage!r}")
  if storage == "stream" and config.pretrain.name != "none":
    raise ConfigError(f"data.pool_storage: stream cannot pretrain on the whole pool "
                      f"(pretrain.name={config.pretrain.name!r}); use memory")
  if storage == "stream" and (config.search.name == "pdarts" or config.search.name in bayesian.SEARCHES):
    raise ConfigError(f"data.pool_storage: stream cannot run search.name={config.search.name!r} (it reads every "
                      "pool input on the device); use memory")


def is_streamed(inputs) -> bool:
  return isinstance(inputs, StreamedInputs)


def prefetched(inputs: StreamedInputs, batches, transform=None):
  """Yields `inputs.read(b)` (or `transform(b)`) for each row batch `b`, in order, read by grain's
  reader threads ahead of use (`PREFETCH` batches), so reads overlap the consumer's work."""
  import grain  # pylint: disable=g-import-not-at-top  (only the streamed pool needs it)
  if not len(batches):
    return iter(())
  inputs.records.check_unchanged()  # a shard replaced since the run started is named, not misread
  fn = transform or inputs.read
  dataset = grain.MapDataset.source(list(range(len(batches)))).map(lambda k: fn(batches[k]))
  return iter(dataset.to_iter_dataset(grain.ReadOptions(num_threads=READ_THREADS, prefetch_buffer_size=PREFETCH)))


def local_positions(sharding, n: int) -> np.ndarray:
  """The positions in an `(n, ...)` batch that this process's devices hold under `sharding`: with
  several processes each reads only its own share of a chunk (all of it on one process)."""
  if sharding is None or sharding.is_fully_addressable:
    return np.arange(n)
  held = set()
  for index in sharding.addressable_devices_indices_map((n,)).values():
    held.update(range(n)[index[0]])
  return np.array(sorted(held), np.int64)


def put_rows(local: np.ndarray, positions: np.ndarray, n: int, sharding):
  """The global `(n, ...)` device array whose rows `positions` are `local` (this process's share),
  laid out by `sharding`; one process's `device_put` of the whole batch otherwise."""
  import jax  # pylint: disable=g-import-not-at-top
  if sharding is None or sharding.is_fully_addressable:
    return jax.device_put(local, sharding)
  return jax.make_array_from_callback((n,) + local.shape[1:], sharding,
                                      lambda index: local[np.searchsorted(positions, np.arange(n)[index[0]])])


def labeled_rows(inputs, labeled: np.ndarray):
  """`(source, position)`: where a training batch's pool rows are read from. The labeled set is
  read into memory once when its inputs are at most `CACHE_BYTES`; `position(idx)` maps pool rows
  to the source's rows."""
  row_bytes = int(np.prod(inputs.shape[1:], dtype=np.int64)) * inputs.dtype.itemsize
  if len(labeled) * row_bytes > CACHE_BYTES:
    return inputs, lambda idx: idx
  order = np.unique(labeled)
  cached = np.concatenate(list(prefetched(inputs, np.array_split(order, max(1, len(order) // 1024)))))
  # Padding steps (no-ops) read pool row 0, labeled or not: any cached row serves them.
  return _InMemory(cached), lambda idx: np.minimum(np.searchsorted(order, idx), len(order) - 1)


@dataclasses.dataclass
class _InMemory:
  array: np.ndarray

  def read(self, rows) -> np.ndarray:
    return self.array[np.asarray(rows)]


# ----------------------------------------------------------------------------- opening a run's data


def prepare(cfg, workdir) -> pathlib.Path | None:
  """The ArrayRecord directory a streamed run reads: `data.path` for the array_record source; for
  any other source, its conversion into `WORKDIR/pool_stream`, written once and rewritten only
  when the source's data changed (that run's fingerprint check then names what changed)."""
  if cfg.source == "array_record":
    directory = pathlib.Path(require_file(cfg.path, "path", local_for="the ArrayRecord reader"))
    if not directory.is_dir():
      raise DataError(f"data.path: {directory} is not a directory written by `jaxal convert`")
    return directory
  if file_streams.reads_in_place(cfg):
    return None  # TFDS images: `tfds.data_source` reads its array_record files by index (open_dataset)
  if workdir is None:
    raise DataError("data.pool_storage: stream on a source other than array_record converts it into the "
                    "workdir; run through jaxal.loop.run, or convert first (`jaxal convert`)")
  out = paths.local(workdir, "--workdir", DataError, "converting the pool for data.pool_storage=stream (or "
                    "`jaxal convert` it to a local folder and set data.source=array_record)") / CONVERTED_DIR
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:  # process 0 converts; the others wait for it, then read
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    if jax.process_index() == 0:
      _convert_once(cfg, out)
    multihost_utils.sync_global_devices("jaxal.stream.prepare")
    return out
  return _convert_once(cfg, out)


def _convert_once(cfg, out: pathlib.Path) -> pathlib.Path:
  """Converts the source into `out` unless it holds this source's data already; the source is
  read by index, a chunk at a time (`source_streams`), never whole."""
  dataset = source_streams.load(cfg)
  digest = source_streams.digests(dataset)
  stamp = out / SOURCE_FILE
  if stamp.is_file() and (out / ar.INDEX_NAME).is_file() and json.loads(stamp.read_text()) == digest:
    return out
  if out.exists():
    shutil.rmtree(out)
  ar.convert(dataset, out)
  tmp = out / (SOURCE_FILE + ".tmp")
  tmp.write_text(json.dumps(digest))
  os.replace(tmp, stamp)
  return out


def open_dataset(cfg, directory: pathlib.Path) -> Dataset:
  """The run's `Dataset` with a streamed pool (`train.inputs` a `StreamedInputs`) and the test
  split in memory; `data.shuffle_train` and `data.max_train` apply to an array_record source as in
  `datasets.load` (a converted source had them applied before conversion). `directory` None: a
  TFDS data_dir read in place (`file_streams.open_in_place`)."""
  if directory is None:
    return file_streams.open_in_place(cfg)
  index = ar.read_index(directory)
  if index.get("modality") == "text" and cfg.modality != "text" and cfg.source == "array_record":
    raise DataError(f"{directory / ar.INDEX_NAME}: holds token ids (modality text); set data.modality=text")
  records = ShardedRecords(directory, index, "pool")
  labels, ids = records.labels_and_ids()
  train = Split(StreamedInputs(records, np.arange(len(records))), labels, ids)
  test = ar.read_split(directory, index, "test")
  if cfg.source == "array_record":
    if cfg.get("shuffle_train", False):
      train = train.subset(np.random.default_rng(cfg.seed).permutation(len(train)))
    if cfg.max_train and len(train) > cfg.max_train:
      train = train.subset(np.arange(cfg.max_train))
  class_names = [str(c) for c in index["class_names"]]
  num_classes = int(cfg.num_classes or len(class_names) or int(index["num_classes"]))
  for split_name, split in (("train", train), ("test", test)):
    if len(split) and split.labels.max() >= num_classes:
      raise DataError(f"{split_name} split: label {int(split.labels.max())} out of range for "
                      f"{num_classes} classes (data.num_classes)")
  if np.unique(train.labels).size < 2:
    raise DataError("train split has fewer than 2 classes; active learning needs at least 2")
  modality = "text" if index.get("modality") == "text" else "image"
  return Dataset(index.get("name") or cfg.name or cfg.source, train, test, num_classes, class_names, modality,
                 int(index.get("vocab_size") or 0))


def fingerprints(pool: Split, inputs_digest: str, **splits) -> dict:
  """`fingerprint.of_splits(pool=pool, **splits)`, the pool's inputs hashed by its streamed pass."""
  entry = {"size": len(pool), "ids": fingerprint.digest_array(pool.ids), "inputs": inputs_digest,
           "labels": fingerprint.digest_array(pool.labels)}
  return {"pool": entry, **fingerprint.of_splits(**splits)}


def preprocess_and_digest(pool: Split, modality: str, normalization: str):
  """`(preprocess, inputs digest)` of a streamed pool: one streamed pass gives both."""
  stats, digest = pool.inputs.scan(pooled=normalization == "scalar")
  if modality == "text":
    return pipeline.TokenIds(), digest
  channels = pool.inputs.shape[-1]
  if normalization == "none":
    return pipeline.Normalize((0.0,) * channels, (1.0,) * channels), digest
  if stats is None:
    raise DataError(f"data.pool_storage: stream normalizes uint8 images only, the pool holds {pool.inputs.dtype}; "
                    "set data.normalization=none or data.pool_storage=memory")
  mean, std = stats
  std = np.where(std > 0, std, 1.0)
  if normalization == "scalar":
    return pipeline.Normalize((float(mean[0]),) * channels, (float(std[0]),) * channels), digest
  return pipeline.Normalize(tuple(float(m) for m in mean), tuple(float(s) for s in std)), digest
