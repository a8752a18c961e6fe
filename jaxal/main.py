"""Command line: `python -m jaxal.main --config=configs/<name>.py --workdir=DIR`.

Overrides work as `--config.train.epochs=3`. Rerunning the same command on the same
workdir resumes after the last completed round. On CPU-only Linux machines the command
restarts itself once with glibc's huge-page tunable (`jaxal.cpu.process`; `JAXAL_HUGE_PAGES=0`
turns it off), and `JAXAL_KEEP_BUFFERS=1` keeps XLA's buffers resident between calls
(faster steady-state training, slower compiles).
"""

import os
import pathlib
import sys

from jaxal.cpu import process as cpu_process

if __name__ == "__main__":
  # Before the imports below: on CPU-only Linux hosts this re-executes the command once, with
  # glibc's huge-page tunable (`JAXAL_HUGE_PAGES=0` turns it off).
  cpu_process.restart_with_huge_pages()

# pylint: disable=wrong-import-position
import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxal import config as config_lib
from jaxal import errors
from jaxal import loop
from jaxal import parallel
from jaxal import oracle as oracle_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, rounds.jsonl and plots "
                                "(default: workdirs/<config file name>).")
_ORACLE = flags.DEFINE_string("oracle", None, "Who labels the queries: 'simulated' (true labels) or 'files' "
                               "(people fill in exported CSVs). Sets config.oracle.name.")
_FORCE = flags.DEFINE_bool("force", False, "Continue a workdir whose saved config differs from this one.")
_ACCEPT_DATA_CHANGE = flags.DEFINE_bool("accept_data_change", False, "Continue a workdir whose data differs from "
                                         "the data its run started with (data_fingerprint.json).")
_VERBOSE_LOGS = flags.DEFINE_bool("log_all", False, "Show INFO logs of the libraries (orbax, ...).")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _VERBOSE_LOGS.value:
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  config = _CONFIG.value
  parallel.initialize_distributed(config.parallel.distributed)
  if config.output.compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(config.output.compilation_cache_dir))
    # JAX caches only compilations over 1 s by default; on CPU most of a run's are shorter.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  if _ORACLE.value:
    with config.unlocked():
      config.oracle.name = _ORACLE.value
  workdir = _WORKDIR.value or os.path.join("workdirs", pathlib.Path(flags.FLAGS["config"].config_filename).stem)
  sys.exit(execute(config, workdir, force=_FORCE.value, accept_data_change=_ACCEPT_DATA_CHANGE.value))


USER_ERRORS = errors.USER_ERRORS


def execute(config, workdir: str, *, force: bool = False, accept_data_change: bool = False) -> int:
  """Runs the loop; returns the exit code (0 done or waiting for labels, 2 bad input)."""
  try:
    loop.run(config, workdir, force=force, accept_data_change=accept_data_change)
  except oracle_lib.LabelsPending as e:
    print(str(e))  # not an error: the run waits for people to label the exported queries
  except Exception as e:  # pylint: disable=broad-except
    text = errors.message(e, workdir)
    if text is None:
      raise  # a bug: keep its traceback
    print(f"error: {text}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  cpu_process.keep_buffers_resident()  # with JAXAL_KEEP_BUFFERS=1; before JAX starts its threads
  cpu_process.use_xla_convolutions()  # with JAXAL_XLA_CONVS=1; before the backend starts
  app.run(main, flags_parser=config_lib.parse_flags)
