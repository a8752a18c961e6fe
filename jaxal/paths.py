"""Workdir and data paths that may live on shared storage (`gs://`, `s3://`): all go through `etils.epath`.

`pathlib.Path("gs://bucket/run")` is the local folder `gs:/bucket/run`, so a pod whose workers
are given `--workdir=gs://...` would each write a local `gs:` folder. `epath.Path` reaches the
bucket (through tf.io.gfile, or fsspec with gcsfs/s3fs), the path layer orbax checkpoints with.
Local paths behave as before: atomic writes still go through a temporary file and a rename.
Code that needs an OS path (h5py, tokenizers, ArrayRecord, flock) asks `local()` for one,
which refuses a URL in one line naming the config field.
"""

import contextlib
import errno
import io
import os
import pathlib

from etils import epath


def is_local(path) -> bool:
  """False for a URL (`gs://`, `s3://`, ...); True for an OS path (a FUSE mount of a bucket included)."""
  return "://" not in os.fspath(path)


def of(path) -> epath.Path:
  """`path` (str, pathlib or epath) as an `epath.Path`; `~` is expanded in a local path."""
  p = epath.Path(path)
  return p.expanduser() if is_local(p) else p


def absolute(path) -> epath.Path:
  """`of(path)`, made absolute when local (`epath.Path("gs://b").absolute()` is a local `gs:` path)."""
  p = of(path)
  return p.absolute() if is_local(p) else p


def make_dirs(path) -> epath.Path:
  """`of(path)`, created with its parents; a missing client library (gcsfs, s3fs) is an OSError naming it."""
  p = of(path)
  try:
    p.mkdir(parents=True, exist_ok=True)
  except ImportError as e:  # fsspec's words, e.g. "Please install gcsfs to access Google Storage"
    raise OSError(errno.ENOPROTOOPT, f"{scheme(p)} storage is unavailable: {e} (or tensorflow, for tf.io.gfile)",
                  str(p)) from None
  return p


def scheme(path) -> str:
  return os.fspath(path).split("://", 1)[0] + "://" if not is_local(path) else ""


def local(path, field: str, error: type[Exception] = ValueError, needs: str = "this reader") -> pathlib.Path:
  """An OS path for code that needs one (`needs`); for a URL, `error` in one line naming `field`."""
  if not is_local(path):
    raise error(f"{field}: {path} is on {scheme(path)} storage, but {needs} needs a local path "
                "(a local disk, or a bucket mounted with gcsfuse)")
  return pathlib.Path(os.path.expanduser(os.fspath(path)))


def write_atomic(path, data: bytes | str) -> None:
  """Writes `data` so that readers see the old file or the new one, never a torn one.

  Local: a temporary file in the same folder, fsync, then `os.replace`. Object stores: one
  upload, which they make visible whole or not at all (a rename there is a copy, not atomic).
  An OSError names `path`; no temporary file is left behind.
  """
  data = data.encode("utf-8") if isinstance(data, str) else data
  path = of(path)
  if not is_local(path):
    with path.open("wb") as f:
      f.write(data)
    return
  path = pathlib.Path(path)
  tmp = path.with_name(path.name + ".tmp")
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    tmp.replace(path)
  except OSError as e:
    with contextlib.suppress(OSError):
      tmp.unlink(missing_ok=True)
    if e.errno is None:
      raise
    raise OSError(e.errno, e.strerror, str(path)) from None


def open_text(path, encoding: str = "utf-8-sig"):
  """A text reader with `newline=""` (what `csv` wants), for any path epath reaches.

  `encoding` defaults to UTF-8 that drops the byte-order mark Excel writes.
  """
  return io.TextIOWrapper(of(path).open("rb"), encoding=encoding, newline="")


def read_text(path, encoding: str = "utf-8-sig") -> str:
  """The whole text of `path` (epath's own `read_text` ignores `encoding`)."""
  with open_text(path, encoding) as f:
    return f.read()
