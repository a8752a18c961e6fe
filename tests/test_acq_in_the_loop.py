"""Stochastic batches and class balance run in the loop as options of score-based acquisitions
(every registered acquisition runs in the loop in test_acquisition_loop.py)."""

import numpy as np
import pytest

from jaxal import acquisition
from jaxal import loop
from tests.conftest import tiny_config

CASES = {
    "least_confidence": {"stochastic": "softrank", "temperature": 0.5},
    "margin": {"class_balanced": True},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_two_rounds(name, tmp_path):
  c = tiny_config(**{"al.num_rounds": 2, "acquisition.name": name})
  for key, value in CASES[name].items():
    c.acquisition.options[key] = value
  history = loop.run(c, tmp_path)
  assert [r["num_labeled"] for r in history] == [20, 40]
  assert history[0]["queried"] == 20 and history[0]["acquisition"] == name
  assert name in acquisition.ACQUISITIONS
  assert np.isfinite(history[1]["test_accuracy"])
  assert [r["compiles"] for r in history[1:]] == [0]
