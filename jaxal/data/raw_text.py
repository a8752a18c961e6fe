"""The original texts of a few pool examples, read back from the source by their ids.

The pool keeps token ids only (a pool of 3.6M reviews would otherwise hold every review in
memory); a person labeling a query (`label_studio`) must read the text itself. `texts_of(cfg,
ids, labels, class_names)` reads just the rows of `ids` again, joined exactly as the tokenizer
saw them. An id names its source row whatever the pool's order (`data.shuffle_train`,
`data.max_train`, the carved test and validation splits, a streamed pool's conversion into
`WORKDIR/pool_stream` all keep each example's id):
* `csv`: the id `FILE:N` is record N of `data.path` (the header is record 1; blank lines count,
  as when it was read), read in one pass that stops after the last wanted record; the columns
  of `data.text_column` are joined with `data.text_separator`, blank ones skipped.
* `tfds` with text features (`data.text_keys`, or the known keys of the dataset): the id
  `NAME/SPLIT/i` is record i of `data.train_split`, read by index with `tfds.data_source`; a
  dataset whose records carry their own `id` is scanned, in order, until every wanted id is found.
  The features are joined with a space.
Each row's label is checked against the pool's: a source edited since the pool was read is a
`DataError` naming the row, never another example's text. Sources that hold token ids (npz,
hdf5, array_record with `data.modality = "text"`) have no text to show: `texts_of` returns the
id with a note saying so (`shows_text` tells which sources show text).
"""

import csv

import numpy as np

from jaxal import paths
from jaxal.data import datasets
from jaxal.data import files
from jaxal.data.types import DataError, require_file


def tfds_text_keys(cfg) -> tuple[str, ...]:
  """The TFDS features joined into a text, as `datasets.load_tfds_split` chooses them."""
  known = datasets._TFDS_TEXT_KEYS  # pylint: disable=protected-access
  return tuple(k for k in cfg.text_keys.split(",") if k) or known.get(cfg.name, ())


def shows_text(cfg) -> bool:
  """Whether `cfg`'s source keeps the original texts (csv, tfds text features)."""
  return cfg.source == "csv" or (cfg.source == "tfds" and bool(tfds_text_keys(cfg)))


def no_text(cfg, example_id) -> str:
  """What stands for the text of an example whose source holds token ids only."""
  return f"{example_id} (no text to show: the {cfg.source} source holds token ids)"


def texts_of(cfg, ids, labels, class_names) -> list[str]:
  """The original texts of the pool examples `ids` (whose pool labels are `labels`), in order."""
  ids, labels = [str(i) for i in np.asarray(ids).tolist()], np.asarray(labels).tolist()
  if not ids:
    return []
  if cfg.source == "csv":
    return _csv_texts(cfg, ids, labels, list(class_names))
  if shows_text(cfg):
    return _tfds_texts(cfg, ids, labels)
  return [no_text(cfg, i) for i in ids]


def _changed(where: str, why: str) -> DataError:
  return DataError(f"{where}: {why} since the pool was read; the source changed under the run "
                   "(put it back, or start a new --workdir)")


def _column(path, spec: str, head) -> int:
  if head is not None and spec in head:
    return head.index(spec)
  if spec.isdigit():
    return int(spec)
  raise DataError(f"{path}: no column {spec!r}" + (f"; the header has {head}" if head is not None else ""))


def _csv_texts(cfg, ids, labels, class_names) -> list[str]:
  path = require_file(cfg.path, "path")
  wanted = {}  # record number -> positions in `ids`
  for k, example_id in enumerate(ids):
    name, _, number = example_id.rpartition(":")
    if name != path.name or not number.isdigit():
      raise DataError(f"pool example {example_id!r} is not a row of data.path={cfg.path}")
    wanted.setdefault(int(number), []).append(k)
  separator, out, last = cfg.get("text_separator", " "), [None] * len(ids), max(wanted)
  try:
    with paths.open_text(path) as f:  # as `files.read_csv_text` reads it: no BOM, newline=""
      reader = csv.reader(f)
      head = next(reader, None) if cfg.csv_header else None
      text_indices = [_column(path, s, head) for s in files.text_column_specs(cfg.text_column, head)]
      label_index = _column(path, cfg.label_column, head)
      for number, row in enumerate(reader, start=2 if cfg.csv_header else 1):
        for k in wanted.get(number, ()):
          where = f"{path}:{number}"
          if max(text_indices + [label_index]) >= len(row):
            raise _changed(where, f"the row has {len(row)} columns")
          if row[label_index].strip() != class_names[labels[k]]:
            raise _changed(where, f"the label is {row[label_index].strip()!r}, not {class_names[labels[k]]!r}")
          out[k] = separator.join(row[i] for i in text_indices if row[i].strip())
        if number >= last:
          break
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"{path}: cannot read CSV: {e}") from None
  if None in out:
    raise _changed(f"{path}:{ids[out.index(None)].rpartition(':')[2]}", "the row is gone")
  return out


def _tfds_texts(cfg, ids, labels) -> list[str]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  kwargs = {"data_dir": cfg.data_dir} if cfg.data_dir else {}
  try:
    source = tfds.data_source(cfg.name, split=cfg.train_split, download=False, **kwargs)
  except Exception as e:  # pylint: disable=broad-except  (tfds raises many kinds)
    raise DataError(f"TFDS {cfg.name}[{cfg.train_split}]: cannot be opened to read the queried texts: {e}") from None
  n = min(len(source), cfg.max_examples) if cfg.max_examples else len(source)
  keys, where = tfds_text_keys(cfg), f"TFDS {cfg.name}[{cfg.train_split}]"
  if n and "id" in source[0]:  # the record's own id: scanned for
    wanted, index = set(ids), {}
    for i in range(n):
      if len(index) == len(wanted):
        break
      record_id = source[i]["id"]
      record_id = record_id.decode() if isinstance(record_id, bytes) else str(record_id)
      if record_id in wanted:
        index[record_id] = i
    missing = sorted(wanted - set(index))
    if missing:
      raise _changed(f"{where} id {missing[0]!r}", "the record is gone")
    rows = [index[i] for i in ids]
  else:
    prefix, rows = f"{cfg.name}/{cfg.train_split}/", []
    for example_id in ids:
      number = example_id[len(prefix):]
      if not example_id.startswith(prefix) or not number.isdigit() or int(number) >= n:
        raise DataError(f"pool example {example_id!r} is not a record of {where}")
      rows.append(int(number))
  out = []
  for row, label in zip(rows, labels):
    record = source[row]
    if int(np.asarray(record[cfg.label_key]).reshape(-1)[0]) != label:
      raise _changed(f"{where} record {row}", f"its label is {record[cfg.label_key]}, not {label}")
    out.append(" ".join(datasets._as_str(record[k]) for k in keys))  # pylint: disable=protected-access
  return out
