"""Every registered acquisition runs in the loop on digits, without recompiling."""

import numpy as np
import pytest

from jaxal import acquisition
from jaxal import checkpoint
from jaxal import loop
from tests.conftest import tiny_config


@pytest.mark.parametrize("name", sorted(acquisition.ACQUISITIONS))
def test_acquisition_in_the_loop(name, tmp_path):
  c = tiny_config(**{"acquisition.name": name, "model.options.dropout": 0.5, "acquisition.options.mc_samples": 8,
                     "al.num_rounds": 3})
  history = loop.run(c, tmp_path)
  assert [r["num_labeled"] for r in history] == [20, 40, 60]
  assert all(r["selection_seconds"] >= 0 for r in history) and history[0]["queried"] == 20
  assert [r["compiles"] for r in history[1:]] == [0, 0]
  ckpts = checkpoint.RunCheckpoints(tmp_path)
  pool, _, _ = ckpts.restore()
  ckpts.close()
  assert pool.num_labeled == 60 and np.unique(np.flatnonzero(pool.labeled_mask)).size == 60
