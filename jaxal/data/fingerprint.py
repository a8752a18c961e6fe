"""A fingerprint of a run's data (`checkpoint.data_file` keeps it in `WORKDIR/data_fingerprint.json`).

Checkpoints store pool indices and the labels revealed for them; if the data under a workdir
changes (a shuffled npz, a new export), a resumed run would pair stored labels with other rows
and train on them. So the first run records a sha256 per split and part (ids, inputs, labels)
with the split sizes, and every later run on the workdir compares: a difference is refused,
naming what changed, unless the user accepts it (`--accept_data_change`), which records the
new fingerprint. Arrays are hashed a chunk of rows at a time, never copied whole.
"""

import hashlib

import numpy as np

PARTS = ("ids", "inputs", "labels")
SPLITS = ("pool", "validation", "test")
CHUNK_BYTES = 1 << 24


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
