"""The config's shape and numeric ranges, checked by `config.validate` before its other checks.

A config file starts from `config.base_config()` and may set only the fields it has: a
misspelt field (`c.train.epochz = 50`) would otherwise be saved and silently ignored. The
`options` sections (`model.options`, `target.options`, `acquisition.options`) are free-form
here and checked by their model or acquisition; a study config adds its `study` section.

Every numeric field has a range in `RANGES` (a test keeps the table complete). Floats must
also be finite. Learning rates are capped at `MAX_LR` (1000, far above any config's; the
shipped ones use at most 0.1): a larger one is taken for a typo, refused before compute
rather than found as a NaN loss (or, with one training step, NaN scores) after it.
"""

import difflib
import math
import numbers

from jaxal.data import pool as pool_lib

MAX_LR = 1000.0
MAX_SEED = 2**32 - 1
# Top-level sections a config may have beyond `base_config()`'s (read by other tools).
EXTRA_SECTIONS = ("study",)
FREE_FORM = ("options",)  # sections whose keys belong to a model or an acquisition


def _int(low, high=None):
  return ("int", low, high, False, False)


def _float(low, high=None, *, low_open=False, high_open=False):
  return ("float", low, high, low_open, high_open)


_SIZE, _COUNT = _int(0), _int(1)
_RATE = _float(0.0, 1.0, high_open=True)  # momentum, dropout: [0, 1)
_FRACTION = _float(0.0, 1.0, low_open=True, high_open=True)
_LR = _float(0.0, MAX_LR, low_open=True)
_DECAY = _float(0.0)
_SEED = _int(0, MAX_SEED)

RANGES = {
    "seed": _SEED,
    "data.seed": _SEED, "data.test_size": _SIZE, "data.validation_size": _SIZE, "data.max_train": _SIZE,
    "data.max_examples": _SIZE, "data.num_classes": _SIZE, "data.max_length": _COUNT,
    "train.momentum": _RATE, "train.weight_decay": _DECAY, "train.batch_size": _COUNT, "train.epochs": _COUNT,
    "train.epoch_size": _SIZE, "train.steps_per_call": _COUNT, "train.stop_at_train_accuracy": _float(0.0, 1.0),
    "train.patience": _SIZE, "train.eval_chunk_size": _COUNT,
    "augment.max_shift": _SIZE, "augment.max_degrees": _float(0.0, 180.0),
    "al.initial_size": _COUNT, "al.num_rounds": _COUNT, "al.max_labeled": _SIZE,
    "al.stop_threshold": _float(0.0), "al.stop_set_size": _COUNT,
    "acquisition.chunk_size": _COUNT,
    "target.epochs": _SIZE,
    "search.initial_blocks": _COUNT, "search.initial_stacks": _COUNT, "search.max_blocks": _COUNT,
    "search.max_stacks": _COUNT, "search.steps": _COUNT, "search.epochs": _SIZE, "search.train_fraction": _FRACTION,
    "search.split_seed": _SEED,
    "search.pdarts.channels": _COUNT, "search.pdarts.nodes": _COUNT, "search.pdarts.epochs": _COUNT,
    "search.pdarts.warmup_epochs": _SIZE, "search.pdarts.batch_size": _COUNT, "search.pdarts.train_portion": _FRACTION,
    "search.pdarts.split_seed": _SEED, "search.pdarts.lr": _LR, "search.pdarts.momentum": _RATE,
    "search.pdarts.weight_decay": _DECAY, "search.pdarts.grad_clip": _float(0.0, low_open=True),
    "search.pdarts.arch_lr": _LR, "search.pdarts.arch_weight_decay": _DECAY, "search.pdarts.max_skips": _SIZE,
    "search.pdarts.upo_size": _SIZE,
    "pretrain.epochs": _COUNT, "pretrain.kmeans_iters": _COUNT, "pretrain.clusters_per_class": _COUNT,
    "pretrain.lr": _LR, "pretrain.batch_size": _COUNT, "pretrain.momentum": _RATE, "pretrain.weight_decay": _DECAY,
    "parallel.num_devices": _SIZE,
}
# Tuples of numbers, each entry in range (their lengths and sums are checked elsewhere).
TUPLE_RANGES = {"search.pdarts.layers": _COUNT, "search.pdarts.drop_ops": _COUNT, "search.pdarts.skip_dropout": _RATE}
SHAPES = ("data.image_shape", "data.image_size")  # (0,) = off, else sizes >= 1
LR_SCHEDULES = ("train.lr_schedule", "target.lr_schedule")  # "epoch:lr,..." ("" = train's, for the target)
MODEL_OPTIONS = ("model.options", "target.options")


def check(config, schema) -> None:
  """Raises `ConfigError` for a field `schema` (`base_config()`) lacks, or a number out of range."""
  check_fields(config, schema)
  check_ranges(config)


def _error(message: str):
  from jaxal.config import ConfigError  # pylint: disable=g-import-not-at-top  (config imports this module)
  return ConfigError(message)


def check_fields(config, schema, prefix: str = "") -> None:
  """Every key of `config` is in `schema`, recursively; `options` sections are not descended."""
  for key in config:
    field = f"{prefix}{key}"
    if key not in schema:
      if not prefix and key in EXTRA_SECTIONS:
        continue
      close = difflib.get_close_matches(key, list(schema), n=1)
      section = prefix.rstrip(".") or "the config"
      hint = f"; did you mean {prefix}{close[0]}?" if close else f"; {section} has {sorted(schema)}"
      raise _error(f"{field}: the config has no such field{hint}")
    value, default = config[key], schema[key]
    if hasattr(default, "items") and key not in FREE_FORM:
      if not hasattr(value, "items"):
        raise _error(f"{field}: must be a section with fields {sorted(default)}, got {value!r}")
      check_fields(value, default, f"{field}.")


def _get(config, field: str):
  node = config
  for part in field.split("."):
    if not hasattr(node, "items") or part not in node:
      return None  # a missing field is `validate`'s to report
    node = node[part]
  return node


def _in_range(value, spec) -> bool:
  kind, low, high, low_open, high_open = spec
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    return False
  if kind == "int" and not isinstance(value, numbers.Integral):
    return False
  if not math.isfinite(value):
    return False
  if value < low or (low_open and value == low):
    return False
  return high is None or value < high or (not high_open and value == high)


def describe(spec) -> str:
  kind, low, high, low_open, high_open = spec
  what, show = ("an integer", str) if kind == "int" else ("a finite number", lambda v: f"{v:g}")
  if high is None:
    return f"{what} {'>' if low_open else '>='} {show(low)}"
  return f"{what} in {'(' if low_open else '['}{show(low)}, {show(high)}{')' if high_open else ']'}"


def check_ranges(config) -> None:
  """Every numeric field, tuple entry, learning rate and numeric model option is in range."""
  for field, spec in RANGES.items():
    value = _get(config, field)
    if value is not None and not _in_range(value, spec):
      raise _error(f"{field}: must be {describe(spec)}, got {value!r}")
  for field, spec in TUPLE_RANGES.items():
    values = _get(config, field)
    if values is not None and not all(_in_range(v, spec) for v in values):
      raise _error(f"{field}: every entry must be {describe(spec)}, got {tuple(values)!r}")
  for field in SHAPES:
    shape = tuple(_get(config, field) or (0,))
    if shape != (0,) and not all(_in_range(v, _COUNT) for v in shape):
      raise _error(f"{field}: must be (0,) (off) or sizes that are integers >= 1, got {shape!r}")
  for field in LR_SCHEDULES:
    text = _get(config, field)
    if not text:
      continue
    try:
      schedule = pool_lib.parse_schedule(text, field, float)
    except ValueError as e:
      raise _error(str(e)) from None
    for _, lr in schedule:
      if not _in_range(lr, _LR):
        raise _error(f"{field}: learning rate {lr:g} must be {describe(_LR)} (above {MAX_LR:g} is taken for a typo)")
  for section in MODEL_OPTIONS:
    for key, value in (_get(config, section) or {}).items():
      if isinstance(value, bool) or not isinstance(value, numbers.Real):
        continue  # strings, flags and tuples are the model's to check
      spec = _RATE if "drop" in key else _float(0.0)  # dropout, block_dropout, drop_path: rates
      if not _in_range(float(value), spec):
        raise _error(f"{section}.{key}: must be {describe(spec)}, got {value!r}")
