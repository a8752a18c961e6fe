"""The per-round outputs of a run: `rounds.jsonl`, TensorBoard scalars, `curves.png`.

One place says what a completed round writes; `run_files`, `jaxal.tensorboard` and
`jaxal.report` keep the formats. Only the primary process writes.
"""

import dataclasses

from etils import epath

from jaxal import paths
from jaxal import tensorboard
from jaxal.checkpoint import run_files


@dataclasses.dataclass(frozen=True)
class RoundOutputs:
  """Writes a run's round records and the views of them its config asks for."""

  workdir: epath.Path
  title: str  # of the learning curve
  tensorboard: bool
  plot: bool
  primary: bool

  @classmethod
  def for_run(cls, config, workdir, dataset_name: str, primary: bool) -> "RoundOutputs":
    return cls(paths.of(workdir), f"{dataset_name}: {config.acquisition.name}", bool(config.output.tensorboard),
               bool(config.output.plot), primary)

  def rewrite(self, history: list[dict]) -> None:
    """`rounds.jsonl` as the checkpoint has it: drops any line written after the checkpoint."""
    if self.primary:
      run_files.write_rounds(self.workdir, history)

  def add_round(self, history: list[dict]) -> None:
    """After the round `history[-1]` is checkpointed: its record, scalars and the curve."""
    if not self.primary:
      return
    run_files.write_rounds(self.workdir, history)
    if self.tensorboard:
      tensorboard.log_round(self.workdir, history[-1])
    if self.plot:
      from jaxal import report  # pylint: disable=import-outside-toplevel  (matplotlib: 24 MB resident, when plotting)
      report.plot_learning_curve(history, self.workdir / "curves.png", title=self.title)
