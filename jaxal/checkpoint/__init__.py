"""Every file a run writes in its workdir, and nothing else writes there.

* `steps`: orbax checkpoints under `checkpoints/<round>`, resume and healing;
* `run_files`: `config.json` (and the config diff that guards it), `rounds.jsonl`, atomic writes;
* `lock`: `run.lock`, one run per workdir;
* `data_file`: `data_fingerprint.json`, no silent change of a run's data;
* `outputs`: what each completed round writes (`rounds.jsonl`, TensorBoard, `curves.png`);
* `artifacts`: the other files (label sheets, figures, the pretrained backbone's npz), atomically.

Names are loaded on first use, so readers of `rounds.jsonl` (reports) do not import orbax.
"""

import importlib

_EXPORTS = {
    "RunCheckpoints": "steps", "CheckpointDamaged": "steps",
    "WorkdirConflict": "run_files", "read_rounds": "run_files", "write_rounds": "run_files",
    "atomic_write_text": "run_files", "config_to_json": "run_files", "check_or_write_config": "run_files",
    "os_error_message": "run_files",
    "WorkdirLocked": "lock", "RunLock": "lock", "hold": "lock",
    "DataChanged": "data_file",
    "RoundOutputs": "outputs",
    "save_tree": "artifacts", "load_tree": "artifacts",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name not in _EXPORTS:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
