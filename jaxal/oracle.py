"""Oracles: who reveals the labels of queried points.

An oracle answers `reveal(indices, round=..., predictions=...) -> (answered_indices, labels)`.
It may answer a subset (a partial label file, where the config allows it), and it may
raise `LabelsPending` when the answers are not there yet (a person has to label the
exported queries); the loop then saves its state and exits, and the same command resumes.

* `simulated`: reads the true labels of the pool.
* `files`: people fill in exported CSV files (`jaxal.file_oracle`).
* `label_studio`: people annotate tasks in a Label Studio server (`jaxal.label_studio`).

`make_oracle(config, workdir, data)` builds the configured one (`oracle.name`).
"""

import dataclasses
from typing import Callable

import numpy as np


class LabelsPending(Exception):
  """The oracle has no answers yet; the message tells the user what to fill in."""


@dataclasses.dataclass
class SimulatedOracle:
  """Answers every query from the dataset's true labels."""

  true_labels: np.ndarray

  def reveal(self, indices: np.ndarray, *, round: int = 0, predictions: dict | None = None):
    del round, predictions
    indices = np.asarray(indices, np.int32)
    return indices, np.asarray(self.true_labels)[indices].astype(np.int32)


def _simulated(config, workdir, data):
  del config, workdir
  return SimulatedOracle(data.pool.labels)


def _files(config, workdir, data):
  from jaxal import file_oracle  # pylint: disable=g-import-not-at-top
  return file_oracle.make_file_oracle(config, workdir, data)


def _label_studio(config, workdir, data):
  from jaxal import label_studio  # pylint: disable=g-import-not-at-top
  return label_studio.make_label_studio_oracle(config, workdir, data)


# name -> factory(config, workdir, run data) -> oracle
ORACLES: dict[str, Callable] = {"simulated": _simulated, "files": _files, "label_studio": _label_studio}


def make_oracle(config, workdir, data):
  if config.oracle.name not in ORACLES:
    raise ValueError(f"oracle.name: unknown oracle {config.oracle.name!r}; known: {sorted(ORACLES)}")
  return ORACLES[config.oracle.name](config, workdir, data)
