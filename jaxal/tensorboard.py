"""TensorBoard scalars of a run, next to `rounds.jsonl` (with `output.tensorboard=True`).

Each completed round adds its numeric fields to `WORKDIR/tensorboard/`, at step = number of
labels (the x axis of a learning curve):

* `metrics/`: test_accuracy, test_loss, train_accuracy, train_loss, val_accuracy, queried, ...
* `time/`: train_seconds, selection_seconds, search_seconds;
* `architecture/`: num_params, depth.

    tensorboard --logdir WORKDIR/tensorboard      # or a folder holding several workdirs

The writer is tensorboardX, an optional dependency: `pip install 'jaxal[tensorboard]'`.
"""

import contextlib
import tempfile

from jaxal import config as config_lib
from jaxal import paths

LOGDIR = "tensorboard"
_ARCHITECTURE = ("num_params", "depth")


def tag_of(key: str) -> str:
  """The TensorBoard tag of a `rounds.jsonl` field."""
  if key.endswith("_seconds"):
    return f"time/{key}"
  if key in _ARCHITECTURE:
    return f"architecture/{key}"
  return f"metrics/{key}"


def scalars(record: dict) -> dict[str, float]:
  """The numeric top-level fields of a round record, by tag (not its step fields)."""
  out = {}
  for key, value in record.items():
    if key in ("num_labeled",) or isinstance(value, bool) or not isinstance(value, (int, float)):
      continue
    out[tag_of(key)] = float(value)
  return out


def _writer_class():
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise config_lib.ConfigError(
        "output.tensorboard=True needs tensorboardX: pip install 'jaxal[tensorboard]' "
        "(or pip install tensorboardX), or set --config.output.tensorboard=False") from None
  return SummaryWriter


def check_available() -> None:
  """Raises `ConfigError` now if `output.tensorboard=True` cannot be honoured."""
  _writer_class()


def log_round(workdir, record: dict) -> None:
  """Appends one round's scalars to `workdir/tensorboard/` (one small event file per round).

  Args:
    workdir: the run directory.
    record: a round record as written to `rounds.jsonl`.
  """
  writer_cls = _writer_class()
  logdir = paths.of(workdir) / LOGDIR
  with contextlib.ExitStack() as stack:
    # tensorboardX writes local files only (its gs:// writer needs google-cloud-storage): on shared
    # storage the round's event file is written to a local temporary folder, then uploaded.
    local = logdir if paths.is_local(logdir) else stack.enter_context(tempfile.TemporaryDirectory())
    # tensorboardX names event files by the second; the round suffix keeps them apart.
    writer = writer_cls(str(local), filename_suffix=f".round{int(record['round']):04d}")
    try:
      for tag, value in scalars(record).items():
        writer.add_scalar(tag, value, global_step=int(record["num_labeled"]))
    finally:
      writer.close()
    if not paths.is_local(logdir):
      logdir.mkdir(parents=True, exist_ok=True)
      for event_file in paths.of(local).iterdir():
        paths.write_atomic(logdir / event_file.name, event_file.read_bytes())


def read_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
  """`{tag: [(step, value), ...]}` from the event files under `logdir`, read with TensorBoard's
  own event loader (`pip install tensorboard`, in the `tensorboard` extra)."""
  from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  out = {}
  for path in sorted(paths.of(logdir).glob("events.out.tfevents.*")):
    for event in event_file_loader.EventFileLoader(str(path)).Load():
      for v in event.summary.value:  # the loader turns simple_value into a scalar tensor
        value = v.simple_value if v.WhichOneof("value") == "simple_value" else tensor_util.make_ndarray(v.tensor)
        out.setdefault(v.tag, []).append((int(event.step), float(value)))
  return {tag: sorted(points) for tag, points in out.items()}
