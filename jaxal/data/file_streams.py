"""Image folders, CSV texts and TFDS read by example index, for `source_streams` (which see)."""

import array
import collections
import csv
import functools

import numpy as np

from jaxal import paths
from jaxal.data import datasets
from jaxal.data import files
from jaxal.data import tokenize
from jaxal.data.source_streams import Rows, lazy, read_in_chunks
from jaxal.data.types import DataError, Split, require_file, shape_option

# ----------------------------------------------------------------------------- image folders


class ImageFiles(Rows):
  """One image file per row, decoded when read (`files._decode_image`)."""

  def __init__(self, paths_, shape, image_size):
    self.paths, self.shape, self.image_size = paths_, tuple(shape), image_size

  def decode(self, indices) -> np.ndarray:
    from PIL import Image  # pylint: disable=g-import-not-at-top
    out = np.empty((len(indices),) + self.shape, np.uint8)
    for k, i in enumerate(np.asarray(indices).tolist()):
      f = self.paths[i]
      try:
        with f.open("rb") as raw, Image.open(raw) as im:
          im.load()
          arr = files._decode_image(im, f, self.image_size)  # pylint: disable=protected-access
      except DataError:
        raise
      except Exception as e:  # PIL raises many kinds for corrupt files
        raise DataError(f"{f}: cannot decode image: {e}") from None
      if arr.shape[:2] != self.shape[:2]:
        raise DataError(f"{f}: image size {arr.shape[:2]} differs from {self.shape[:2]} of the first image "
                        "(set data.image_size to resize)")
      out[k] = np.repeat(arr, 3, axis=-1) if arr.shape[-1] < self.shape[-1] else arr
    return out


def _gray(mode: str) -> bool:  # the channels `files._decode_image` gives a mode: 1 or 3
  return mode in ("L", "LA", "1") or mode in files._SIXTEEN_BIT_MODES  # pylint: disable=protected-access


def _scan_folder(root, class_names, image_size):
  """`(files, labels, (h, w), gray?, class_names)` from the folder and each image's header."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if not root.is_dir():
    raise DataError(f"{root}: not a folder of class subfolders")
  found = sorted(d.name for d in root.iterdir() if d.is_dir())
  if not found:
    raise DataError(f"{root}: no class subfolders")
  class_names = class_names or found
  unknown = sorted(set(found) - set(class_names))
  if unknown:
    raise DataError(f"{root}: class folders {unknown} are not in the training classes {class_names}")
  paths_, labels, size, gray = [], [], None, True
  for label, name in enumerate(class_names):
    folder = root / name
    if not folder.is_dir():
      continue
    found_files = sorted(f for f in folder.iterdir() if f.suffix.lower() in files._IMAGE_SUFFIXES)  # pylint: disable=protected-access
    if not found_files and name in found:
      raise DataError(f"{root}: class folder {name!r} has no images (PNG/JPEG)")
    for f in found_files:
      try:
        with f.open("rb") as raw, Image.open(raw) as im:
          mode, (w, h) = im.mode, im.size
      except Exception as e:  # pylint: disable=broad-except
        raise DataError(f"{f}: cannot decode image: {e}") from None
      hw = tuple(image_size) if image_size else (h, w)
      size = size or hw
      if hw != size:
        raise DataError(f"{f}: image size {hw} differs from {size} of the first image (set data.image_size to resize)")
      gray = gray and _gray(mode)
      paths_.append(f)
      labels.append(label)
  if not paths_:
    raise DataError(f"{root}: no PNG/JPEG images found")
  return paths_, np.array(labels, np.int32), size, gray, class_names


def load_image_folder(cfg):
  image_size = shape_option(cfg.image_size)
  scans = [_scan_folder(require_file(cfg.path, "path"), None, image_size)]
  if cfg.test_path:
    scans.append(_scan_folder(require_file(cfg.test_path, "test_path"), scans[0][4], image_size))
  channels = 1 if all(s[3] for s in scans) else 3  # gray beside colour: all RGB, as in memory
  splits = [Split(lazy(ImageFiles(f, size + (channels,), image_size), len(f)), y, np.array([str(p) for p in f]))
            for f, y, size, _, _ in scans]
  return splits[0], splits[1] if len(splits) > 1 else None, scans[0][4]


# ----------------------------------------------------------------------------- CSV and TFDS texts


class CsvRows(Rows):
  """Texts of a CSV file read row by row from each row's byte offset."""

  dtype = np.dtype(object)

  def __init__(self, path, offsets, text_indices, separator):
    self.path, self.offsets, self.text_indices, self.separator = path, offsets, text_indices, separator

  def decode(self, indices) -> np.ndarray:
    out, reader, following = np.empty(len(indices), object), None, -1
    with paths.of(self.path).open("rb") as f:
      for k, i in enumerate(np.asarray(indices).tolist()):
        if i != following:  # a run of consecutive rows is read on from one seek
          f.seek(int(self.offsets[i]))
          reader = csv.reader(line.decode("utf-8") for line in iter(f.readline, b""))
        row = next(reader)
        while not row:  # blank lines between rows
          row = next(reader)
        following = i + 1
        out[k] = self.separator.join(row[j] for j in self.text_indices if row[j].strip())
    return out


def _csv_offsets(path):
  """Yields `(byte offset, row)` for each CSV row, one pass (a BOM is skipped, as `open_text` does)."""
  with paths.of(path).open("rb") as f:
    start = 3 if f.read(3) == b"\xef\xbb\xbf" else 0
    f.seek(start)
    state = {"next": start}

    def lines():
      for line in f:
        state["next"] += len(line)
        yield line.decode("utf-8")

    reader, begin = csv.reader(lines()), start
    for row in reader:
      yield begin, row
      begin = state["next"]


def _csv_split(path, cfg):
  """A CSV file's `(texts view, raw labels, ids)` with the checks of `files.read_csv_text`."""
  spec, label_column, header = cfg.text_column, cfg.label_column, cfg.csv_header
  rows = _csv_offsets(path)
  try:
    if header:
      first = next(rows, None)
      if first is None:
        raise DataError(f"{path}: empty CSV")
      head, first_line = first[1], 2
    else:
      head, first_line = None, 1

    def col(name):
      if head is not None and name in head:
        return head.index(name)
      if name.isdigit():
        return int(name)
      raise DataError(f"{path}: no column {name!r}; the header has {head}" if head is not None else
                      f"{path}: data.csv_header is False, so columns must be indices, got {name!r}")
    text_indices, li = [col(s) for s in files.text_column_specs(spec, head)], col(label_column)
    needed, columns = max(text_indices + [li]) + 1, "columns" if len(text_indices) > 1 else "column"
    # Compact per-row records (3.6M rows of Amazon reviews): offsets, line numbers, label codes.
    offsets, lines, codes, seen = array.array("q"), array.array("q"), array.array("i"), {}
    for line, (offset, row) in enumerate(rows, start=first_line):
      if not row:
        continue
      if needed > len(row):
        raise DataError(f"{path}:{line}: expected at least {needed} columns, got {len(row)}")
      if not any(row[i].strip() for i in text_indices):
        raise DataError(f"{path}:{line}: empty text in {columns} {spec!r}")
      if not row[li].strip():
        raise DataError(f"{path}:{line}: empty label in column {label_column!r}")
      offsets.append(offset)
      lines.append(line)
      codes.append(seen.setdefault(row[li].strip(), len(seen)))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"{path}: cannot read CSV: {e}") from None
  if not offsets:
    raise DataError(f"{path}: no rows")
  rows_ = CsvRows(path, np.frombuffer(offsets, np.int64), text_indices, cfg.get("text_separator", " "))
  ids = np.char.add(f"{path.name}:", np.frombuffer(lines, np.int64).astype(str))
  return lazy(rows_, len(offsets)), np.frombuffer(codes, np.int32), list(seen), ids


def load_csv(cfg):
  """`files.load_csv_split`'s labels, class names and ids; texts read by row when used."""
  train_path = require_file(cfg.path, "path")
  texts, codes, raw, ids = _csv_split(train_path, cfg)
  if cfg.class_names_path:
    names = files.read_class_names(require_file(cfg.class_names_path, "class_names_path"))
  else:
    names = sorted(raw, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
  index = {n: i for i, n in enumerate(names)}

  def labels_of(codes_, raw_labels, ids_):
    for code, r in enumerate(raw_labels):
      if r not in index:  # named at its first row, as the in-memory reader does
        raise DataError(f"{ids_[int(np.argmax(codes_ == code))]}: label {r!r} is not one of the {len(names)} classes"
                        + (f" in {cfg.class_names_path}" if cfg.class_names_path else " seen in training"))
    return np.array([index[r] for r in raw_labels], np.int32)[codes_]

  train, test = Split(texts, labels_of(codes, raw, ids), ids), None
  if cfg.test_path:
    ttexts, tcodes, traw, tids = _csv_split(require_file(cfg.test_path, "test_path"), cfg)
    test = Split(ttexts, labels_of(tcodes, traw, tids), tids)
  return train, test, names


def encode_texts(cfg, train: Split, test: Split):
  """`datasets.load`'s tokenization, a chunk of texts at a time: token ids as lazy views."""
  vocab = None
  if cfg.tokenizer == "words":
    counts = collections.Counter()
    for chunk in read_in_chunks(train.inputs, np.arange(len(train))):
      counts.update(w for t in chunk for w in tokenize._words(t))  # pylint: disable=protected-access
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:30000 - 2]  # build_word_vocab's ranking
    vocab = {w: i + 2 for i, (w, _) in enumerate(ranked)}
  _, vocab_size = tokenize.encode_texts([""], tokenizer=cfg.tokenizer, max_length=1, fit_texts=[])
  if vocab is not None:
    vocab_size = len(vocab) + 2
  out = [_with_inputs(s, lazy(TokenRows(s.inputs, cfg, vocab), len(s))) for s in (train, test)]
  return out[0], out[1], vocab_size


def _with_inputs(split: Split, inputs) -> Split:
  return Split(inputs, split.labels, split.ids)


class TokenRows(Rows):
  """Token ids of a lazy view of texts, encoded when read."""

  dtype, from_texts = np.dtype(np.int32), True

  def __init__(self, texts, cfg, vocab):
    self.texts, self.tokenizer, self.max_length, self.vocab = texts, cfg.tokenizer, cfg.max_length, vocab
    self.shape = (cfg.max_length,)

  def decode(self, indices) -> np.ndarray:
    texts = list(self.texts.read(np.asarray(indices, np.int64)))
    if self.vocab is None:
      return tokenize.encode_texts(texts, tokenizer=self.tokenizer, max_length=self.max_length)[0]
    ids = np.zeros((len(texts), self.max_length), np.int32)
    for row, text in enumerate(texts):
      toks = [self.vocab.get(w, tokenize.UNK_ID) for w in tokenize._words(text)][:self.max_length]  # pylint: disable=protected-access
      ids[row, :len(toks)] = toks
    return ids


class TfdsRows(Rows):
  """`tfds.data_source` read by index (random access into its ArrayRecord files, no conversion);
  images at one size (`datasets.tfds_image_sizer`: `data.image_size`, or the first image's)."""

  def __init__(self, source, key: str, text_keys, sized):
    self.source, self.key, self.text_keys, self.sized = source, key, tuple(text_keys), sized
    if self.text_keys:
      self.dtype, self.shape = np.dtype(object), ()
    else:
      first = self.sized(source[0][key], 0) if len(source) else np.zeros((0, 0, 1), np.uint8)
      self.dtype, self.shape = first.dtype, first.shape

  def decode(self, indices) -> np.ndarray:
    records = [self.source[i] for i in np.asarray(indices).tolist()]
    if self.text_keys:
      out = np.empty(len(records), object)
      out[:] = [" ".join(datasets._as_str(r[k]) for k in self.text_keys) for r in records]  # pylint: disable=protected-access
      return out
    if not records:
      return np.empty((0,) + self.shape, self.dtype)
    return np.stack([self.sized(r[self.key], i) for i, r in zip(np.asarray(indices).tolist(), records)])


def load_tfds(cfg):
  """The TFDS source read by index (`datasets.load_tfds_split`'s labels and ids, inputs lazy)."""
  return datasets.load_tfds_split(cfg, split_of=functools.partial(_tfds_split, cfg))


def _tfds_split(cfg, source, n, labels, ids, image_key, text_keys, split_name="") -> Split:
  rows = TfdsRows(source, image_key, text_keys, datasets.tfds_image_sizer(cfg, split_name))
  if not text_keys and rows.dtype != np.uint8:
    raise DataError(f"TFDS feature {image_key!r} holds {rows.dtype}; the streamed pool reads uint8 images")
  return Split(lazy(rows, n), labels, ids)


def reads_in_place(cfg) -> bool:
  """Whether a streamed run reads this source where it lies (TFDS images) rather than a conversion:
  texts are tokenized first, so they are converted."""
  return cfg.source == "tfds" and cfg.modality != "text" and not (
      tuple(k for k in cfg.text_keys.split(",") if k) or datasets._TFDS_TEXT_KEYS.get(cfg.name))  # pylint: disable=protected-access


def open_in_place(cfg):
  """The run's `Dataset` on a TFDS data_dir prepared as array_record, no conversion: the pool's
  inputs are a `StreamedInputs` over `tfds.data_source` (random access by index); the test split,
  small, is read into memory. The same rows, labels, ids and checks as `datasets.load`."""
  dataset = datasets.load(cfg, read=load_tfds)
  test = dataset.test
  dataset.test = Split(np.asarray(test.inputs), test.labels, test.ids)
  return dataset
