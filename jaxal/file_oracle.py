"""The `files` oracle: people label exported queries in CSV files.

When a round's queries have no answers yet, `reveal` writes `WORKDIR/queries/round_NNN.csv`
(columns `index`, `id`, `predicted`, `confidence`, `label`; `label` empty) and, for images, a
contact sheet `queries/round_NNN.png`, then raises `LabelsPending`. The person fills in the
`label` column, or drops `WORKDIR/labels/round_NNN.csv` with `id,label` (or `index,label`)
rows, and reruns the same command. Labels are class names exactly as listed; integer class
indices are not accepted, since folder names such as `0`..`9` would make them ambiguous.

Answers are checked before anything is applied; every problem is reported with its file and
line: unknown ids or indices, ids that do not match their index, rows for points that were
not queried, labels outside the class list, duplicated rows, and missing rows (accepted only
with `oracle.allow_partial`). Labels already given never change: a row for a point outside this
round's queries is an error, and when an earlier round's answer file is edited after it was
applied (`labels/applied.json` records each file's SHA-256) a `LabelsIgnoredWarning` says the
edit is ignored. Only CSV and JSON are read and written; CSVs are UTF-8, read with or without
the byte-order mark that Excel writes.
"""

import csv
import dataclasses
import hashlib
import json
import warnings

import numpy as np
from etils import epath

from jaxal import paths
from jaxal.checkpoint import artifacts
from jaxal.checkpoint import run_files
from jaxal.oracle import LabelsPending


class LabelFileError(ValueError):
  """A label file has problems; nothing from it was applied."""


class LabelsIgnoredWarning(UserWarning):
  """An answer file of an earlier round changed after its labels were applied."""


def _sha256(path: epath.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclasses.dataclass
class FileOracle:
  workdir: epath.Path
  ids: np.ndarray
  class_names: list[str]
  images: np.ndarray | None = None  # uint8 NHWC pool images, for contact sheets
  allow_partial: bool = False
  wants_predictions = True

  def query_path(self, round_: int) -> epath.Path:
    return self.workdir / "queries" / f"round_{round_:03d}.csv"

  def label_path(self, round_: int) -> epath.Path:
    return self.workdir / "labels" / f"round_{round_:03d}.csv"

  def applied_path(self) -> epath.Path:
    """Which answer file each round's labels came from, with its SHA-256 (JSON)."""
    return self.workdir / "labels" / "applied.json"

  def reveal(self, indices, *, round: int = 0, predictions: dict | None = None):  # pylint: disable=redefined-builtin
    """Returns `(answered indices, labels)` from this round's answer file.

    Raises:
      LabelsPending: no answers yet; the queries file is written once, its contact sheet is
        drawn again when missing (a run killed between the two).
      LabelFileError: the answer file has problems; nothing is applied.
    """
    indices = np.asarray(indices, np.int64)
    self._warn_about_edited_answers(round)
    query = self.query_path(round)
    labels_file = self.label_path(round)
    if labels_file.exists():
      return self._accept(round, labels_file, indices)
    if query.exists() and self._has_answers(query):
      return self._accept(round, query, indices)
    if not query.exists():
      self._write_queries(query, indices, predictions)
    elif self.images is not None and not query.with_suffix(".png").exists():  # killed before the sheet
      contact_sheet(self.images[indices], self._captions(indices, predictions), query.with_suffix(".png"))
    raise LabelsPending(
        f"{len(indices)} points need labels for round {round}. Fill in the 'label' column of {query} "
        f"(or write {labels_file} with 'id,label' rows), using the class names "
        f"{self._class_list()}, then rerun the same command.")

  def _answers_file(self, round_: int) -> epath.Path:
    labels_file = self.label_path(round_)
    return labels_file if labels_file.exists() else self.query_path(round_)

  def _applied(self) -> dict:
    path = self.applied_path()
    return json.loads(path.read_text()) if path.exists() else {}

  def _accept(self, round_: int, path: epath.Path, indices: np.ndarray):
    answered = self._read(path, indices)
    applied = self._applied()
    applied[f"{round_:03d}"] = {"file": path.relative_to(self.workdir).as_posix(), "sha256": _sha256(path)}
    self.applied_path().parent.mkdir(parents=True, exist_ok=True)
    run_files.atomic_write_text(self.applied_path(), json.dumps(applied, indent=1, sort_keys=True))
    return answered

  def _warn_about_edited_answers(self, round_: int) -> None:
    """Labels already given never change; say so when someone edits an earlier round's answers."""
    for key, entry in sorted(self._applied().items()):
      if int(key) >= round_:
        continue
      now = self._answers_file(int(key))
      if now.relative_to(self.workdir).as_posix() != entry["file"] or not now.exists() or _sha256(now) != entry["sha256"]:
        warnings.warn(
            f"{now}: round {int(key)}'s answers changed after they were applied (from {entry['file']}); "
            "labels already given are never changed, so this edit is ignored. "
            "`jaxal export-labels` shows the labels in use.", LabelsIgnoredWarning, stacklevel=3)

  def _class_list(self) -> str:
    names = self.class_names
    return ", ".join(names[:20]) + (f", ... ({len(names)} classes)" if len(names) > 20 else "")

  def _guesses(self, indices, predictions) -> list[tuple[str, str]]:
    """The model's `(predicted class, confidence)` per query, as written; empty in round 0."""
    if predictions is None:
      return [("", "")] * len(indices)
    return [(self.class_names[int(predictions["predicted_class"][k])], f"{float(predictions['confidence'][k]):.4f}")
            for k in range(len(indices))]

  def _captions(self, indices, predictions) -> list[str]:
    return [f"{int(i)}" + (f"\n{pred[:10]}? {float(conf):.2f}" if pred else "")
            for i, (pred, conf) in zip(indices, self._guesses(indices, predictions))]

  def _write_queries(self, path: epath.Path, indices, predictions):
    rows = [[int(i), self.ids[i], pred, conf, ""] for i, (pred, conf) in zip(indices, self._guesses(indices, predictions))]
    artifacts.write_csv(path, ["index", "id", "predicted", "confidence", "label"], rows)
    if self.images is not None:  # after the CSV: `reveal` redraws a sheet that is missing
      contact_sheet(self.images[indices], self._captions(indices, predictions), path.with_suffix(".png"))

  @staticmethod
  def _has_answers(path: epath.Path) -> bool:
    with paths.open_text(path) as f:
      return any((row.get("label") or "").strip() for row in csv.DictReader(f))

  def _read(self, path: epath.Path, queried: np.ndarray):
    index_of_id = {str(v): i for i, v in enumerate(self.ids)}
    class_index = {n: i for i, n in enumerate(self.class_names)}
    queried_set = set(queried.tolist())
    problems, answers, seen_at = [], {}, {}
    try:
      with paths.open_text(path) as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "label" not in fields or not ({"id", "index"} & set(fields)):
          raise LabelFileError(f"{path}: needs a 'label' column and an 'id' or 'index' column, has {fields}")
        for line, row in enumerate(reader, start=2):
          label = (row.get("label") or "").strip()
          if not label:
            continue
          where = f"{path}:{line}"
          idx = None
          if (row.get("index") or "").strip():
            try:
              idx = int(row["index"])
            except ValueError:
              problems.append(f"{where}: index {row['index']!r} is not an integer")
              continue
            if not 0 <= idx < len(self.ids):
              problems.append(f"{where}: index {idx} is outside the pool")
              continue
            if (row.get("id") or "").strip() and str(self.ids[idx]) != row["id"].strip():
              problems.append(f"{where}: id {row['id']!r} does not belong to index {idx}")
              continue
          else:
            idx = index_of_id.get(row["id"].strip())
            if idx is None:
              problems.append(f"{where}: unknown id {row['id']!r}")
              continue
          if idx not in queried_set:
            problems.append(f"{where}: index {idx} was not queried in this round; only this round's queries "
                            "are read (labels given in earlier rounds are never changed)")
            continue
          if label not in class_index:
            hint = ""
            if label.isdigit() and int(label) < len(self.class_names):
              hint = f"; labels are class names, not indices (class {int(label)} is {self.class_names[int(label)]!r})"
            problems.append(f"{where}: label {label!r} is not a class ({self._class_list()}){hint}")
            continue
          if idx in answers:
            problems.append(f"{where}: index {idx} is labeled again (first at line {seen_at[idx]})")
            continue
          answers[idx], seen_at[idx] = class_index[label], line
    except (OSError, UnicodeDecodeError, csv.Error) as e:
      raise LabelFileError(f"{path}: cannot read: {e}") from None
    missing = [int(i) for i in queried if int(i) not in answers]
    if missing and not self.allow_partial:
      problems.append(f"{path}: {len(missing)} queried points have no label (indices {missing[:10]}"
                      f"{', ...' if len(missing) > 10 else ''}); set oracle.allow_partial=True to accept")
    if problems:
      raise LabelFileError("label file rejected, nothing applied:\n  " + "\n  ".join(problems))
    answered = np.array(sorted(answers), np.int32)
    return answered, np.array([answers[i] for i in answered], np.int32)


def contact_sheet(images: np.ndarray, captions: list[str], path: epath.Path, columns: int = 10) -> None:
  """Writes a grid of `images` (uint8 NHWC, at most 100) with captions as a PNG.

  Query sheets caption each image with its pool index (the CSV's `index` column) and, after
  round 0, the model's guess and confidence.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  n = min(len(images), 100)
  rows = max(1, -(-n // columns))
  fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.4), dpi=80, squeeze=False)
  for k, ax in enumerate(axes.ravel()):
    ax.axis("off")
    if k < n:
      img = images[k]
      ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
      ax.set_title(captions[k], fontsize=7)
  fig.tight_layout()
  artifacts.save_figure(fig, path)  # a kill mid-write leaves no partial sheet behind


def make_file_oracle(config, workdir, data):
  images = data.pool.inputs if data.dataset.modality == "image" else None
  return FileOracle(paths.of(workdir), data.pool.ids, list(data.dataset.class_names), images,
                    bool(config.oracle.allow_partial))
