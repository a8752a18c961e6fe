"""A fingerprint of a run's data, kept in `WORKDIR/data_fingerprint.json`.

Checkpoints store pool indices and the labels revealed for them; if the data under a workdir
changes (a shuffled npz, a new export), a resumed run would pair stored labels with other rows
and train on them. So the first run records a sha256 per split and part (ids, inputs, labels)
with the split sizes, and every later run on the workdir compares: a difference is refused,
naming what changed, unless the user accepts it (`--accept_data_change`), which records the
new fingerprint. Arrays are hashed a chunk of rows at a time, never copied whole.
"""

import hashlib
import json
import pathlib
import sys

import numpy as np

from jaxal import workdir as workdir_lib

FILE_NAME = "data_fingerprint.json"
PARTS = ("ids", "inputs", "labels")
SPLITS = ("pool", "validation", "test")
CHUNK_BYTES = 1 << 24


class DataChanged(workdir_lib.WorkdirConflict):
  """The data differs from the data the workdir's run started with."""


def digest_array(x: np.ndarray) -> str:
  """sha256 of an array's dtype, row shape and contents, fed `CHUNK_BYTES` at a time.

  Strings (ids) are hashed as NUL-terminated UTF-8, so numpy's padded width does not count."""
  x = np.asarray(x)
  strings = x.dtype.kind in "OUS"
  h = hashlib.sha256(f"{'str' if strings else x.dtype.str} {x.shape[1:]}\n".encode())
  row_bytes = max(1, x.itemsize * int(np.prod(x.shape[1:], dtype=np.int64)))
  rows = max(1, CHUNK_BYTES // (row_bytes * (4 if strings else 1)))
  for start in range(0, len(x), rows):
    chunk = x[start:start + rows]
    if strings:
      h.update("".join(f"{v}\0" for v in chunk.ravel()).encode("utf-8", "surrogatepass"))
    else:
      h.update(np.ascontiguousarray(chunk).data)
  return h.hexdigest()


def of_splits(**splits) -> dict:
  """`{split name: {"size", "ids", "inputs", "labels"}}` for the given `Split`s (None: absent)."""
  return {name: {"size": len(split), **{part: digest_array(getattr(split, part)) for part in PARTS}}
          for name, split in splits.items() if split is not None}


def differences(old: dict, new: dict) -> list[str]:
  """What changed, e.g. `["pool size 1797 -> 1700", "test labels changed"]`."""
  out = []
  for name in [s for s in SPLITS if s in old or s in new] + sorted((set(old) | set(new)) - set(SPLITS)):
    a, b = old.get(name), new.get(name)
    if a is None or b is None:
      out.append(f"{name} split {'added' if a is None else 'removed'}")
    elif a.get("size") != b["size"]:
      out.append(f"{name} size {a.get('size')} -> {b['size']}")
    else:
      out += [f"{name} {part} changed" for part in PARTS if a.get(part) != b[part]]
  return out


def _has_checkpoints(workdir) -> bool:
  checkpoints = pathlib.Path(workdir) / "checkpoints"
  return checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())


def check_or_write(workdir: pathlib.Path, fingerprint: dict, *, accept: bool, write: bool) -> None:
  """Compares `fingerprint` with the workdir's; writes it (when `write`) if new or accepted.

  Raises:
    DataChanged: the data differs and `accept` is False, or the pool's size differs (the
      checkpoints index pool rows, so no run can continue on another pool).
  """
  path = pathlib.Path(workdir) / FILE_NAME
  changes = []
  # Absent: a new workdir, or one written before fingerprints. Without a checkpoint nothing of
  # the old data was used, so a run that stopped before its first one may take new data.
  if path.exists() and _has_checkpoints(workdir):
    try:
      old = json.loads(path.read_text())
      changes = differences(old["splits"], fingerprint)
    except (ValueError, KeyError, TypeError, AttributeError):
      changes = [f"{path} is unreadable"]
    if not changes:
      return
    shown = "; ".join(changes)
    if any(c.startswith("pool size") for c in changes):
      raise DataChanged(f"{workdir}: the data differs from this run's ({shown}); its checkpoints index the "
                        "old pool, so it cannot continue on this data: use another --workdir")
    if not accept:
      raise DataChanged(f"{workdir}: the data differs from this run's ({shown}). Use another --workdir, or "
                        "pass --accept_data_change to continue this run on the new data.")
    if write:
      print(f"warning: {workdir}: continuing on changed data ({shown}); --accept_data_change given",
            file=sys.stderr, flush=True)
  if write:
    workdir_lib.atomic_write_text(path, json.dumps({"version": 1, "splits": fingerprint}, indent=1, sort_keys=True))
