"""A streamed pool scored by several processes keeps its outputs where they were computed.

`inference.spread_chunks` gives each device a contiguous block of the pool, a slice per chunk, and
`inference._spread_rows` joins the chunks' outputs into global arrays whose row r is pool row r,
split over the `data` axis with no collective. The end-to-end identity (2 streaming processes pick
what one process of 2 devices picks) is `tests/test_stream.py::test_two_streaming_*`.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import global_arrays
from jaxal import inference
from jaxal import loop
from tests.conftest import tiny_config


def test_spread_chunks_give_each_device_a_contiguous_block():
  n, chunk, devices = 1000, 256, 4
  chunks = inference.spread_chunks(n, chunk, devices)
  assert len(chunks) == 4 and all(c.shape == (chunk,) and c.dtype == np.int32 for c in chunks)
  share, padded = chunk // devices, len(chunks) * chunk
  for d in range(devices):
    held = np.concatenate([c[d * share:(d + 1) * share] for c in chunks])
    block = np.arange(d * padded // devices, (d + 1) * padded // devices)
    np.testing.assert_array_equal(held, np.where(block < n, block, 0))  # padding rows read row 0


SPREAD_ROWS = """
import jax, numpy as np
from jaxal import inference, parallel
mesh = parallel.make_mesh(2)
sharding = parallel.batch_sharded(mesh)
n, chunk = 1000, 256
parts = [(jax.device_put(np.stack([c, -c], 1).astype(np.float32), sharding), jax.device_put(c, sharding))
         for c in inference.spread_chunks(n, chunk, 2)]
compiled = inference._spread_rows.lower(parts, sharding).compile().as_text()
assert not any(op in compiled for op in ("all-to-all", "all-gather", "collective-permute")), "rows moved"
values, rows = inference._spread_rows(parts, sharding)
assert values.sharding.spec == jax.sharding.PartitionSpec("data") and rows.shape == (1024,)
assert [s.index[0] for s in values.addressable_shards] == [slice(0, 512), slice(512, 1024)]
expected = np.where(np.arange(1024) < n, np.arange(1024), 0)
np.testing.assert_array_equal(jax.device_get(rows), expected)
np.testing.assert_array_equal(jax.device_get(values), np.stack([expected, -expected], 1))

from jaxal import models
from jaxal.inference import Predictor
class Spread(Predictor):  # the multi-process streamed pool's path, on one process's two devices
  spread = True
def same(x):
  return x
model = models.create("resnet_grid", 10, blocks=1, stacks=1, width=4)  # no dropout: all passes fold alike
x = parallel.replicate(np.random.default_rng(0).normal(size=(300, 8, 8, 1)).astype(np.float32), mesh)
variables = parallel.replicate(models.init_variables(model, jax.random.key(0), (1, 8, 8, 1)), mesh)
whole, spread = (kind(model, variables, x, same, chunk_size=128, sharding=sharding) for kind in (Predictor, Spread))
assert spread.outputs()[0].shape == (384, 10) and spread.outputs()[0].sharding.spec == jax.sharding.PartitionSpec("data")
for a, b in zip(whole.outputs(), spread.outputs()):
  np.testing.assert_array_equal(jax.device_get(a), jax.device_get(b)[:300])
a, b = (jax.device_get(p.mc_statistics(100, jax.random.key(1))) for p in (whole, spread))
for name in a:
  np.testing.assert_array_equal(a[name], b[name][:300], err_msg=name)
print("ok")
"""


def test_spread_rows_join_chunks_where_computed():
  """Two devices: each keeps the rows it computed, row r of the join is pool row r, and the
  spread Predictor's outputs and MC statistics are the gathered one's, bit for bit."""
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
  done = subprocess.run([sys.executable, "-c", SPREAD_ROWS], env={**os.environ, **env}, capture_output=True,
                        text=True, timeout=120)
  assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.parametrize("overrides, field", [({"acquisition.name": "typiclust"}, "acquisition.name"),
                                              ({"al.stop": "max_confidence"}, "al.stop"),
                                              ({"target.name": "small_cnn"}, "target.agreement"),
                                              ({"oracle.name": "files"}, "oracle.name")])
def test_streamed_multiprocess_run_refuses_whole_pool_stages_before_compute(monkeypatch, tmp_path, overrides,
                                                                            field):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  config = tiny_config(**{"data.pool_storage": "stream", **overrides})
  with pytest.raises(config_lib.ConfigError, match=f"^{field}: "):
    loop.run(config, tmp_path / "work")
  assert not (tmp_path / "work").exists()  # refused before the workdir, the data or any compute
  global_arrays.check_spread_run(tiny_config(**overrides))  # in memory: no refusal
  global_arrays.check_spread_run(tiny_config(**{"data.pool_storage": "stream", "acquisition.name": "coreset"}))
  monkeypatch.setattr(jax, "process_count", lambda: 1)
  global_arrays.check_spread_run(config)  # one process: its outputs are whole
