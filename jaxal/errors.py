"""Errors a command reports as one line with exit code 2: bad input, not a bug in jaxal.

`jaxal.main` and `jaxal.study` share this table, so a study cell stops on a bad file, a
diverging learning rate or an unwritable workdir with the same one line a single run gives.
"""

from jaxal import checkpoint
from jaxal import config as config_lib
from jaxal import file_oracle
from jaxal import label_studio_api
from jaxal.data import datasets
from jaxal.train import trainer as trainer_lib


class RunFailed(RuntimeError):
  """A run of a study stopped on bad input; the message names the run."""


USER_ERRORS = (config_lib.ConfigError, datasets.DataError, checkpoint.WorkdirConflict, file_oracle.LabelFileError,
               label_studio_api.LabelStudioError, checkpoint.CheckpointDamaged, RunFailed)


def message(error: BaseException, workdir) -> str | None:
  """The one-line message for a user error of a run in `workdir`; None for anything else (a bug)."""
  if isinstance(error, USER_ERRORS):
    return str(error)
  if isinstance(error, trainer_lib.TrainingDiverged):
    return _diverged_message(error, workdir)
  if isinstance(error, OSError):  # the workdir is a file, read-only or full; a path cannot be read
    return checkpoint.os_error_message(error, workdir)
  return None


def _diverged_message(error, workdir) -> str:
  """Names the round: the loop rewrites `rounds.jsonl` from its checkpoint before training, so
  its line count is the round that diverged (nothing of that round is saved)."""
  try:
    where = f"round {len(checkpoint.read_rounds(workdir))}: "
  except (OSError, ValueError):
    where = ""
  return f"{where}{error}; nothing of this round was saved"
