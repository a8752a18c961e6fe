"""Per-round checkpoints with orbax, and resume.

After every round the loop saves, under `workdir/checkpoints/<round>`: the pool state
(labeled mask, revealed labels, round), the run's PRNG key data, the round's model
variables, and JSON metadata (the round history and whether the run is finished).
Orbax writes to a temporary directory and renames it when complete, so a crash never
leaves a half-written checkpoint that looks valid.
"""

import pathlib
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxal.data.pool import PoolState


class RunCheckpoints:
  """Saves and restores a run's per-round state."""

  def __init__(self, workdir: str | pathlib.Path, max_to_keep: int = 3):
    self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, pool: PoolState, rng_key_data: np.ndarray, variables, meta: dict) -> None:
    """Saves round `step` (the number of completed rounds) and waits until it is on disk."""
    items = dict(
        pool=ocp.args.StandardSave(pool.to_arrays()),
        rng=ocp.args.StandardSave({"key_data": np.asarray(rng_key_data)}),
        meta=ocp.args.JsonSave(meta),
    )
    if variables:  # the step-0 checkpoint (initial queries) has no model yet
      items["model"] = ocp.args.StandardSave(jax.tree_util.tree_map(np.asarray, variables))
    self.manager.save(step, args=ocp.args.Composite(**items))
    self.manager.wait_until_finished()

  def restore(self, step: int | None = None) -> tuple[PoolState, np.ndarray, dict] | None:
    """`(pool, rng key data, meta)` of `step`, or of the latest readable step.

    Without `step`, a latest checkpoint that cannot be read (corrupted or partial files) is
    reported and skipped in favour of the one before it. Returns None when there is none.
    """
    if step is not None:
      return self._restore_step(step)
    for candidate in sorted(self.manager.all_steps(), reverse=True):
      try:
        return self._restore_step(candidate)
      except Exception as e:  # orbax/tensorstore raise many kinds for damaged files
        print(f"warning: checkpoint {self.directory / str(candidate)} is unreadable ({type(e).__name__}: "
              f"{str(e)[:200]}); falling back to the previous one", file=sys.stderr, flush=True)
    return None

  def _restore_step(self, step: int):
    restored = self.manager.restore(step, args=ocp.args.Composite(
        pool=ocp.args.StandardRestore(), rng=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
    pool = PoolState.from_arrays(restored["pool"])
    meta = dict(restored["meta"])
    if pool.round != step or not isinstance(meta.get("history"), list):
      raise ValueError(f"inconsistent contents (round {pool.round} in step {step})")
    return pool, np.asarray(restored["rng"]["key_data"]), meta

  def restore_model(self, step: int | None = None):
    """The model variables saved at `step` (default: latest)."""
    step = self.latest_step() if step is None else step
    return self.manager.restore(step, args=ocp.args.Composite(model=ocp.args.StandardRestore()))["model"]

  def close(self):
    self.manager.close()
