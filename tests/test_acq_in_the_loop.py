"""Each acquisition of issue 29 runs in the loop by name, with its options from the config."""

import numpy as np
import pytest

from jaxal import acquisition
from jaxal import loop
from tests.conftest import tiny_config

CASES = {
    "batchbald": {"mc_samples": 4, "batchbald_candidates": 40, "batchbald_samples": 256},
    "epig": {"mc_samples": 4, "epig_targets": 16},
    "typiclust": {},
    "probcover": {},
    "cluster_margin": {},
    "least_confidence": {"stochastic": "softrank", "temperature": 0.5},
    "margin": {"class_balanced": True},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_two_rounds(name, tmp_path):
  c = tiny_config(**{"al.num_rounds": 2, "acquisition.name": name})
  for key, value in CASES[name].items():
    c.acquisition.options[key] = value
  if name in ("batchbald", "epig"):  # MC-dropout needs dropout
    c.model.options.dropout = 0.3
  history = loop.run(c, tmp_path)
  assert [r["num_labeled"] for r in history] == [20, 40]
  assert history[0]["queried"] == 20 and history[0]["acquisition"] == name
  assert name in acquisition.ACQUISITIONS
  assert np.isfinite(history[1]["test_accuracy"])
