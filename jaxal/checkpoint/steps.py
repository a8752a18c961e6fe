"""Per-round checkpoints with orbax, resume, and healing of damaged checkpoints.

After every round the loop saves, under `workdir/checkpoints/<round>`: the pool state
(labeled mask, revealed labels, round), the run's PRNG key data, the round's model
variables, JSON metadata (the round history and whether the run is finished) and, when an
acquisition keeps one, the run's acquisition state (`PoolView.state`, e.g. Cluster-Margin's clustering).
Orbax writes to a temporary directory and renames it when complete, so a crash never
leaves a half-written checkpoint that looks valid; disks and people can still damage one.

Resuming heals: an unreadable latest checkpoint is moved aside to `<step>.corrupt-<UTC time>`
(a name orbax does not read as a step), because orbax skips `save(step)` for any step at or
below its latest one and would otherwise keep the damaged folder forever. When no checkpoint
can be read, or `rounds.jsonl` holds rounds that no checkpoint backs, the run refuses
(`CheckpointDamaged`) instead of silently starting over from round 0.
"""

import contextlib
import json
import logging
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from jaxal import paths
from jaxal.data.pool import PoolState

ACQUISITION_ITEM = "acquisition"  # a step's item holding `PoolView.state`


class CheckpointDamaged(RuntimeError):
  """No checkpoint of a run can be read, or the run's files disagree with its checkpoint."""


def _describe(error: Exception) -> str:
  return f"{type(error).__name__}: " + " ".join(str(error).split())[:200]


@contextlib.contextmanager
def _quiet_orbax():
  """Orbax logs an ERROR line per damaged file it meets; the caller reports the damage in one line."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    logger.setLevel(level)


def _rounds_lines(workdir) -> list[str]:
  """The non-blank lines of `rounds.jsonl` (none when it is missing)."""
  path = workdir / "rounds.jsonl"
  return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


class RunCheckpoints:
  """Saves and restores a run's per-round state."""

  def __init__(self, workdir, max_to_keep: int = 3):
    self.workdir = paths.absolute(workdir)  # orbax takes the epath as it is (gs://, s3://, local)
    self.directory = self.workdir / "checkpoints"
    self._max_to_keep = max_to_keep
    self.manager = self._open_manager()

  def _open_manager(self) -> ocp.CheckpointManager:
    with _quiet_orbax():  # it reads every step's metadata file; restoring reports a damaged one
      return ocp.CheckpointManager(
          self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=self._max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, pool: PoolState, rng_key_data: np.ndarray, variables, meta: dict,
           acquisition_state: dict | None = None) -> None:
    """Saves round `step` (the number of completed rounds) and waits until it is on disk;
    `acquisition_state` (`PoolView.state`, arrays only) goes with it when it is not empty."""
    items = dict(
        pool=ocp.args.StandardSave(pool.to_arrays()),
        rng=ocp.args.StandardSave({"key_data": np.asarray(rng_key_data)}),
        meta=ocp.args.JsonSave(meta),
    )
    if variables:  # the step-0 checkpoint (initial queries) has no model yet
      items["model"] = ocp.args.StandardSave(jax.tree_util.tree_map(np.asarray, variables))
    if acquisition_state:
      items[ACQUISITION_ITEM] = ocp.args.StandardSave(jax.tree_util.tree_map(np.asarray, acquisition_state))
    stale = self._set_aside_steps_from(step)
    self.manager.save(step, args=ocp.args.Composite(**items))
    self.manager.wait_until_finished()
    if stale and jax.process_index() == 0:
      for folder in stale:  # only now that the redone step is on disk
        with contextlib.suppress(OSError):
          folder.rmtree()

  def _set_aside_steps_from(self, step: int) -> list[epath.Path]:
    """Renames steps >= `step` (a redone round: an extended run) to `<s>.superseded-<time>`.

    Orbax skips `save(s)` for any `s` at or below its latest step, so a stale step would
    never be replaced; renaming instead of deleting keeps it on disk until its successor is.
    """
    stale_steps = sorted(s for s in self.manager.all_steps() if s >= step)
    if not stale_steps:
      return []
    moved = [self._move_aside(s, "superseded") for s in stale_steps] if jax.process_index() == 0 else []
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes("jaxal_checkpoint_supersede")
    self.manager.close()
    self.manager = self._open_manager()
    return moved

  def restore(self, step: int | None = None) -> tuple[PoolState, np.ndarray, dict] | None:
    """`(pool, rng key data, meta)` of `step`, or of the latest readable step (for readers).

    Without `step`, a latest checkpoint that cannot be read (corrupted or partial files) is
    reported and skipped in favour of the one before it. Returns None when there is none.
    A run resumes with `resume()` instead, which also heals the directory.
    """
    if step is not None:
      try:
        with _quiet_orbax():
          return self._restore_step(step)
      except Exception as e:  # orbax/tensorstore raise many kinds for damaged files
        raise CheckpointDamaged(f"checkpoint {self.directory / str(step)} is unreadable ({_describe(e)})") from e
    restored, damaged = self._newest_readable()
    for candidate, e in damaged:
      print(f"warning: checkpoint {self.directory / str(candidate)} is unreadable ({_describe(e)}); "
            "falling back to the previous one", file=sys.stderr, flush=True)
    return restored

  def _newest_readable(self):
    """`(restored, [(step, error), ...])`: the newest step that restores, and the newer ones that did not."""
    damaged = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        with _quiet_orbax():
          return self._restore_step(step), damaged
      except Exception as e:  # orbax/tensorstore raise many kinds for damaged files
        damaged.append((step, e))
    return None, damaged

  def resume(self, *, primary: bool) -> tuple[PoolState, np.ndarray, dict] | None:
    """The latest readable checkpoint of a run that goes on; None for a fresh run.

    Unreadable later steps are moved aside (by the `primary` process only) and the manager
    reopened, so the redone rounds save those steps afresh. Raises CheckpointDamaged, moving
    nothing, when step folders exist but none can be read, or when there is none but
    `rounds.jsonl` holds rounds.
    """
    restored, damaged = self._newest_readable()
    if restored is None and damaged:
      folders = ", ".join(f"{self.directory / str(s)} ({_describe(e)})" for s, e in damaged)
      raise CheckpointDamaged(f"no checkpoint of this run can be read: {folders}. Nothing was changed; restore "
                              f"{self.directory} from a backup, or start over in a new --workdir")
    if restored is None and _rounds_lines(self.workdir):
      raise CheckpointDamaged(f"{self.workdir / 'rounds.jsonl'} holds rounds but {self.directory} has no checkpoint "
                              "to resume them from. Nothing was changed; restore the checkpoints from a backup, "
                              "or start over in a new --workdir")
    if primary:
      for step, error in damaged:
        moved = self._move_aside(step)
        print(f"warning: checkpoint {self.directory / str(step)} is unreadable ({_describe(error)}); moved it "
              f"aside to {moved.name}; the run redoes the rounds after checkpoint {restored[0].round}",
              file=sys.stderr, flush=True)
    if jax.process_count() > 1:
      ocp.multihost.sync_global_processes("jaxal_checkpoint_resume")  # every process sees the moves
    if damaged or jax.process_count() > 1:
      self.manager.close()  # it still lists the moved steps, and orbax skips saving a step <= latest
      self.manager = self._open_manager()
    return restored

  def _move_aside(self, step: int, why: str = "corrupt") -> epath.Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = self.directory / f"{step}.{why}-{stamp}"
    n = 1
    while target.exists():
      target = self.directory / f"{step}.{why}-{stamp}-{n}"
      n += 1
    (self.directory / str(step)).rename(target)
    return target

  def latest(self) -> tuple[PoolState, np.ndarray, dict] | None:
    """`(pool, rng key data, meta)` of the latest step, never a fallback; None when there is none.

    Raises CheckpointDamaged when the latest step is unreadable or `rounds.jsonl` disagrees
    with its round history.
    """
    step = self.latest_step()
    if step is None:
      return None
    restored = self.restore(step)
    saved = [json.dumps(r, sort_keys=True) for r in restored[2]["history"]]
    try:
      written = [json.dumps(json.loads(line), sort_keys=True) for line in _rounds_lines(self.workdir)]
    except json.JSONDecodeError:
      written = None
    if saved != written:
      written = "unparsable" if written is None else len(written)
      raise CheckpointDamaged(f"{self.workdir / 'rounds.jsonl'} ({written} rounds) disagrees with checkpoint "
                              f"{self.directory / str(step)} ({len(saved)} rounds)")
    return restored

  def _restore_step(self, step: int):
    restored = self.manager.restore(step, args=ocp.args.Composite(
        pool=ocp.args.StandardRestore(), rng=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
    pool = PoolState.from_arrays(restored["pool"])
    meta = dict(restored["meta"])
    if pool.round != step or not isinstance(meta.get("history"), list):
      raise ValueError(f"inconsistent contents (round {pool.round} in step {step})")
    return pool, np.asarray(restored["rng"]["key_data"]), meta

  def restore_acquisition_state(self, step: int) -> dict:
    """The acquisition state saved with `step` (host arrays), or {} when it has none."""
    if not (self.directory / str(step) / ACQUISITION_ITEM).exists():
      return {}
    restored = self.manager.restore(step, args=ocp.args.Composite(**{ACQUISITION_ITEM: ocp.args.StandardRestore()}))
    return jax.tree_util.tree_map(np.asarray, dict(restored[ACQUISITION_ITEM]))

  def restore_model(self, step: int | None = None):
    """The model variables saved at `step` (default: latest)."""
    step = self.latest_step() if step is None else step
    return self.manager.restore(step, args=ocp.args.Composite(model=ocp.args.StandardRestore()))["model"]

  def close(self):
    self.manager.close()
