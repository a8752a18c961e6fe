"""One run per workdir: an OS-level lock file (`WORKDIR/run.lock`) held for the whole run.

Two runs on one workdir used to hang inside orbax or run every round twice. Process 0 of a
run takes an exclusive `flock` on the lock file and records its PID and host there; a second
run fails at once with `WorkdirLocked`, naming the holder. The kernel drops the lock when the
holder dies, so a lock file left by a killed run is simply taken over. The other processes of
one multi-process run (`launch/local_multiprocess.sh`) learn from process 0 whether it got the
lock. Where the filesystem has no locks (some network filesystems, object stores such as
`gs://`), the run warns and goes on.
"""

import contextlib
import errno
import json
import os
import socket
import sys
import time

import jax
import numpy as np

from jaxal import paths
from jaxal.checkpoint import run_files

try:
  import fcntl
except ImportError:  # not a POSIX system
  fcntl = None

LOCK_NAME = "run.lock"
# errno values that mean "this filesystem cannot lock", not "someone holds the lock".
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class WorkdirLocked(run_files.WorkdirConflict):
  """Another run holds the workdir."""


class RunLock:
  """An exclusive lock on `workdir/run.lock`; `acquire()` raises `WorkdirLocked` if it is held."""

  def __init__(self, workdir):
    self.path = paths.of(workdir) / LOCK_NAME
    self.fd = None

  def acquire(self) -> bool:
    """True when locked; False (after a warning) where the filesystem cannot lock."""
    if fcntl is None:
      return self._cannot_lock("this system has no fcntl")
    if not paths.is_local(self.path):
      return self._cannot_lock(f"{paths.scheme(self.path)} storage has no file locks")
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise run_files.WorkdirConflict(f"{self.path}: cannot create the lock file ({e.strerror})") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise WorkdirLocked(self._held_message()) from None
      if e.errno in _NO_LOCKS:
        return self._cannot_lock(e.strerror)
      raise
    self.fd = fd
    os.ftruncate(fd, 0)  # a dead holder's record is overwritten
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
    return True

  def release(self) -> None:
    if self.fd is not None:
      os.ftruncate(self.fd, 0)  # before unlocking: the next holder never sees a stale record
      fcntl.flock(self.fd, fcntl.LOCK_UN)
      os.close(self.fd)
      self.fd = None

  def _cannot_lock(self, why: str) -> bool:
    print(f"warning: cannot lock {self.path} ({why}); nothing stops a second run on this workdir",
          file=sys.stderr, flush=True)
    return False

  def _held_message(self) -> str:
    holder = _read_holder(self.path)
    who = f"PID {holder['pid']} on host {holder['host']}" if holder else "a process that has not yet recorded itself"
    return (f"{self.path.parent} is in use by another run ({who}, lock file {self.path}); "
            "wait for it to finish or use another --workdir")


def _read_holder(path, wait_s: float = 1.0) -> dict | None:
  """The holder's `{"pid", "host"}`; waits briefly for a holder that has just locked to write it."""
  deadline = time.monotonic() + wait_s
  while True:
    try:
      holder = json.loads(path.read_text())
      if isinstance(holder, dict) and {"pid", "host"} <= set(holder):
        return holder
    except (OSError, ValueError):
      pass
    if time.monotonic() > deadline:
      return None
    time.sleep(0.05)


@contextlib.contextmanager
def hold(workdir):
  """Holds the workdir's lock for the `with` block: process 0 locks, every process of the run
  raises `WorkdirLocked` if it could not."""
  lock, refused = RunLock(workdir), None
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except run_files.WorkdirConflict as e:  # the other processes must hear of it, not hang
      refused = e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    locked = int(multihost_utils.broadcast_one_to_all(np.int32(refused is None)))
    if not locked and refused is None:
      refused = WorkdirLocked(f"{lock.path.parent} is in use by another run (process 0 of this run could not "
                              f"lock {lock.path}); wait for it to finish or use another --workdir")
  if refused is not None:
    raise refused
  try:
    yield lock
  finally:
    lock.release()
