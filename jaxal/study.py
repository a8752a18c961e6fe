"""The acquisition x architecture study (feature_space_complexity_dal.md, Focus 1).

    python -m jaxal.study --config=configs/study_mnist_cpu.py --root=runs/study
    python -m jaxal.study --config=configs/study_mnist_cpu.py --root=runs/study --report_only

A study config is a run config plus a `study` section: `models` (name -> model options),
`acquisitions`, `seeds`, optionally `pretrain` (comma lists; pretrain names are
`pretrain.name` values, e.g. "none" or "deepcluster", default "none") and optionally `settings`
(name -> nested config overrides, e.g. `init5000=dict(al=dict(initial_size=5000))` or
`augment=dict(augment=dict(flip=True))`: the axes for initial size, acquisition size,
augmentation, or a search method; an `options` dict in an override replaces the whole
options section, since options are model-specific). The grid expands into one run per
(model, setting, pretrain, acquisition, seed) with its own workdir
`ROOT/<model>[/<setting>]/<acquisition>[+<pretrain>]/seed<k>`; a run that already finished
is skipped and an interrupted one resumes, so rerunning the command resumes the study. Runs go one after another; with several processes (`--process_index`,
`--num_processes`, or JAX_PROCESS_ID / JAX_NUM_PROCESSES) each takes every N-th run.
The report (`jaxal.study_report`) compares every acquisition with `random` on the same
model, pretraining and seeds, in tables and figures under ROOT.
"""

import copy
import dataclasses
import itertools
import os
import sys

from jaxal.cpu import process as cpu_process

if __name__ == "__main__":
  # Before the imports below: on CPU-only Linux hosts this re-executes the command once, with
  # glibc's huge-page tunable (`JAXAL_HUGE_PAGES=0` turns it off).
  cpu_process.restart_with_huge_pages()

# pylint: disable=wrong-import-position
from absl import app
from absl import flags
from etils import epath
import ml_collections
from ml_collections import config_flags

from jaxal import checkpoint as checkpoint_lib
from jaxal import config as config_lib
from jaxal import errors
from jaxal import loop
from jaxal import paths
from jaxal import pretrain as pretrain_lib
from jaxal import study_report


@dataclasses.dataclass(frozen=True)
class StudyRun:
  model: str
  acquisition: str
  seed: int
  pretrain: str = "none"
  setting: str = ""  # "" when the study has no `settings` axis

  def workdir(self, root) -> epath.Path:
    cell = self.acquisition if self.pretrain == "none" else f"{self.acquisition}+{self.pretrain}"
    base = paths.of(root) / self.model
    if self.setting:
      base = base / self.setting
    return base / cell / f"seed{self.seed}"

  @property
  def architecture(self) -> str:
    """The model, and the setting when there is one: the unit the spreads compare."""
    return f"{self.model}/{self.setting}" if self.setting else self.model


def pretrain_axis(config) -> list[str]:
  """The `study.pretrain` comma list (default "none"); unknown names raise `ConfigError`."""
  names = [p.strip() for p in str(config.study.get("pretrain", "none")).split(",") if p.strip()]
  for p in names:
    if p not in pretrain_lib.PRETRAINS:  # the registry: built-in and registered pretrainings
      raise config_lib.ConfigError(f"study.pretrain: unknown pretraining {p!r}; "
                                   f"known: {sorted(pretrain_lib.PRETRAINS)}")
  if not names:
    raise config_lib.ConfigError("study.pretrain: empty; use 'none', 'deepcluster' or 'none,deepcluster'")
  return names


def settings_axis(config) -> list[str]:
  """The names of `study.settings` in order, or `[""]` when the study has none."""
  settings = config.study.get("settings")
  if not settings:
    return [""]
  for name in settings:
    if not name or "/" in name or name.startswith("."):
      raise config_lib.ConfigError(f"study.settings: {name!r} is not usable as a folder name")
  return list(settings)


def apply_overrides(config, overrides, where: str) -> None:
  """Merges nested `overrides` into `config` in place; an `options` dict replaces the section.

  Unknown fields and ill-typed values raise `ConfigError` naming `where.<field>`.
  """
  for key, value in overrides.items():
    field = f"{where}.{key}"
    if key not in config:
      raise config_lib.ConfigError(f"{field}: no such config field; known: {sorted(config)}")
    if key == "options":
      config[key] = ml_collections.ConfigDict(dict(value))
    elif isinstance(value, (dict, ml_collections.ConfigDict)):
      if not isinstance(config[key], ml_collections.ConfigDict):
        raise config_lib.ConfigError(f"{field}: is a value, not a section")
      apply_overrides(config[key], value, field)
    else:
      try:
        config[key] = value
      except TypeError as e:
        raise config_lib.ConfigError(f"{field}: {e}") from None


def overrides_between(base, variant) -> dict:
  """The nested overrides that turn config `base` into `variant` (a `study.settings` entry).

  A differing `options` section is given whole (`apply_overrides` replaces options).
  """
  out = {}
  for key in variant:
    if key not in base:
      raise ValueError(f"{key}: not in the base config")
    a, b = base[key], variant[key]
    if key == "options":
      if a.to_dict() != b.to_dict():
        out[key] = b.to_dict()
    elif isinstance(b, ml_collections.ConfigDict):
      sub = overrides_between(a, b)
      if sub:
        out[key] = sub
    elif a != b:
      out[key] = b
  return out


def expand(config) -> list[StudyRun]:
  """Every (model, setting, pretrain, acquisition, seed) of the grid, in a fixed order."""
  s = config.study
  acquisitions = [a.strip() for a in s.acquisitions.split(",") if a.strip()]
  seeds = [int(v) for v in str(s.seeds).split(",") if v.strip()]
  if "random" not in acquisitions:
    acquisitions = ["random"] + acquisitions  # the reference of every metric
  return [StudyRun(m, a, k, p, g) for m, g, p, a, k in
          itertools.product(list(s.models), settings_axis(config), pretrain_axis(config), acquisitions, seeds)]


def run_config(config, run: StudyRun, root=None):
  """The base run config with this run's model, pretraining, acquisition and seed.

  With `root`, pretrained runs share backbones through `ROOT/pretrained` (one per model and
  seed, not per acquisition) unless the config names its own `pretrain.cache_dir`.
  """
  c = copy.deepcopy(config)
  with c.unlocked():
    del c["study"]
    c.model.name = run.model
    c.model.options = ml_collections.ConfigDict(dict(config.study.models[run.model]))
    c.acquisition.name = run.acquisition
    c.pretrain.name = run.pretrain
    if run.setting:
      apply_overrides(c, config.study.settings[run.setting], f"study.settings.{run.setting}")
    if root is not None and run.pretrain != "none" and not c.pretrain.cache_dir:
      c.pretrain.cache_dir = str(paths.absolute(root) / "pretrained")
    c.seed = run.seed
  return c


def is_finished(workdir) -> bool:
  if not (workdir / "checkpoints").exists():
    return False
  ckpts = checkpoint_lib.RunCheckpoints(workdir)
  try:
    restored = ckpts.restore()
    return restored is not None and bool(restored[2].get("finished"))
  finally:
    ckpts.close()


def run_study(config, root, *, process_index: int = 0, num_processes: int = 1) -> list[StudyRun]:
  """Runs this process's share of the grid; returns the runs it ran (skipping finished ones)."""
  for run in expand(config):
    config_lib.validate(run_config(config, run))  # every cell is checked before any compute
  ran = []
  for i, run in enumerate(expand(config)):
    if i % num_processes != process_index:
      continue
    workdir = run.workdir(root)
    if is_finished(workdir):
      print(f"[study] {run}: finished, skipped", flush=True)
      continue
    print(f"[study] {run}: running in {workdir}", flush=True)
    try:
      loop.run(run_config(config, run, root), workdir)
    except Exception as e:  # pylint: disable=broad-except
      text = errors.message(e, workdir)
      if text is None:
        raise  # a bug: keep its traceback
      raise errors.RunFailed(f"{run} (in {workdir}): {text}") from None
    ran.append(run)
  return ran


def report(config, root) -> list[dict]:
  """Writes the study's tables and figures under `root` (`jaxal.study_report`); returns the rows."""
  return study_report.write(expand(config), paths.of(root))


def _define_flags():
  """Flags live here, not at import, so `jaxal.study` imports beside `jaxal.main`."""
  config_flags.DEFINE_config_file("config", None, "Study config file.", lock_config=False)
  flags.DEFINE_string("root", None, "Folder that holds one workdir per run.")
  flags.DEFINE_bool("report_only", False, "Only write the report of finished runs.")
  flags.DEFINE_integer("process_index", int(os.environ.get("JAX_PROCESS_ID", 0)), "This process's share.")
  flags.DEFINE_integer("num_processes", int(os.environ.get("JAX_NUM_PROCESSES", 1)), "Processes sharing the grid.")
  flags.mark_flags_as_required(["config", "root"])


def main(argv):
  del argv
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  try:
    if not f.report_only:
      run_study(f.config, f.root, process_index=f.process_index, num_processes=f.num_processes)
  except errors.USER_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if f.num_processes > 1 and not f.report_only:  # the others may still be running
    print("[study] this share is done; when every process has finished, write the report with "
          "--report_only", flush=True)
    return
  report(f.config, f.root)
  print((paths.of(f.root) / "study.md").read_text())


if __name__ == "__main__":
  cpu_process.keep_buffers_resident()  # with JAXAL_KEEP_BUFFERS=1; before JAX starts its threads
  cpu_process.use_xla_convolutions()  # with JAXAL_XLA_CONVS=1; before the backend starts
  _define_flags()
  app.run(main, flags_parser=config_lib.parse_flags)
