"""`WORKDIR/data_fingerprint.json`: refuses to continue a run on data other than its own.

The digests come from `jaxal.data.fingerprint`; this module keeps the file: written by the
first run, compared by every later one (see that module for why).
"""

import json
import sys

from jaxal import paths
from jaxal.checkpoint import run_files
from jaxal.data import fingerprint

FILE_NAME = "data_fingerprint.json"


class DataChanged(run_files.WorkdirConflict):
  """The data differs from the data the workdir's run started with."""


def _has_checkpoints(workdir) -> bool:
  checkpoints = paths.of(workdir) / "checkpoints"
  return checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())


def check_or_write(workdir, digests: dict, *, accept: bool, write: bool) -> None:
  """Compares `digests` (`fingerprint.of_splits`) with the workdir's file; writes them (when
  `write`) if the file is new or the change accepted.

  Raises:
    DataChanged: the data differs and `accept` is False, or the pool's size differs (the
      checkpoints index pool rows, so no run can continue on another pool).
  """
  path = paths.of(workdir) / FILE_NAME
  changes = []
  # Absent: a new workdir, or one written before fingerprints. Without a checkpoint nothing of
  # the old data was used, so a run that stopped before its first one may take new data.
  if path.exists() and _has_checkpoints(workdir):
    try:
      old = json.loads(path.read_text())
      changes = fingerprint.differences(old["splits"], digests)
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
    run_files.atomic_write_text(path, json.dumps({"version": 1, "splits": digests}, indent=1, sort_keys=True))
