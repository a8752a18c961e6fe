"""The runtime policy: resolved once, recorded, passed explicitly; accelerator programs use stock ops."""

import pathlib
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import loop
from jaxal import models
from jaxal import runtime
from jaxal.checkpoint import run_files
from jaxal.cpu import depthwise as cpu_depthwise
from jaxal.data import augment
from jaxal.models import darts
from jaxal.train import trainer as trainer_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_auto_resolves_by_backend_and_fields_override():
  assert runtime.resolve({}, "cpu").kernels == "cpu"
  assert runtime.resolve({}, "cpu").unroll_steps and runtime.resolve({}, "cpu").init_prng == "non_partitionable"
  for backend in ("gpu", "tpu"):
    assert runtime.resolve({}, backend) == runtime.STOCK
    assert runtime.STOCK.conv_impl == "xla" and not runtime.STOCK.unroll_steps
  mixed = runtime.resolve({"kernels": "stock", "unroll_steps": "scan", "init_prng": "partitionable"}, "cpu")
  assert (mixed.kernels, mixed.conv_impl, mixed.unroll_steps, mixed.init_prng) == ("stock", "xla", False,
                                                                                  "partitionable")
  assert runtime.resolve({"conv_impl": "im2col"}, "gpu").conv_impl == "im2col"
  for policy in (runtime.CPU, runtime.STOCK, mixed):  # the recorded fields select the same policy anywhere
    assert runtime.resolve(policy.as_config(), "gpu") == policy == runtime.resolve(policy.as_config(), "cpu")


@pytest.mark.parametrize("field,value", [("kernels", "gpu"), ("unroll_steps", "yes"), ("conv_impl", "fft")])
def test_bad_runtime_field_is_one_line_naming_it(field, value):
  c = config_lib.base_config()
  c.runtime[field] = value
  with pytest.raises(config_lib.ConfigError, match=rf"^runtime\.{field}: must be one of"):
    config_lib.validate(c)


def test_config_json_records_the_resolved_policy():
  c = loop.with_resolved_runtime(config_lib.base_config())
  saved = run_files.config_to_json(c)
  want = runtime.for_backend(jax.default_backend()).as_config()
  assert '"auto"' not in saved.split('"runtime"')[1].split("}")[0]
  assert dict(ml_collections.ConfigDict(c.runtime)) == want
  assert runtime.from_config(c) == runtime.for_backend(jax.default_backend())
  assert config_lib.base_config().runtime.kernels == "auto"  # the caller's config is not changed


def test_no_environment_reads_or_global_switches_where_programs_are_traced():
  """No `os.environ` under models/, train/, acquisition/; no module-level `global` rebinding."""
  for folder in ("models", "train", "acquisition"):
    for path in (ROOT / "jaxal" / folder).glob("*.py"):
      text = path.read_text()
      assert "os.environ" not in text and "getenv" not in text, path
      assert not re.search(r"^\s+global\s+\w+(\s*,\s*\w+)*\s*$", text, re.M), path


def _supernet_group_counts(policy):
  model = darts.SuperNet(10, channels=4, layers=1, nodes=2, runtime=policy,
                         switches_normal=darts.full_switches(2), switches_reduce=darts.full_switches(2))
  x = jnp.ones((2, 8, 8, 3))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  hlo = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(shapes, x).as_text(dialect="hlo")
  return [int(g) for g in re.findall(r"feature_group_count=(\d+)", hlo)]


def test_supernet_uses_grouped_depthwise_convs_under_the_accelerator_policy():
  """Lowered on the CPU with the stock policy passed explicitly: every depthwise conv of the
  8-channel cell is grouped (feature_group_count = C); the CPU policy's dense form has none."""
  stock = _supernet_group_counts(runtime.STOCK)
  assert stock and set(stock) == {8}, stock
  assert _supernet_group_counts(runtime.CPU) == []


@pytest.mark.parametrize("stride,dilation,k", [(1, 1, 3), (2, 2, 5)])  # plain; strided, dilated, 5x5
def test_diagonal_depthwise_equals_grouped(stride, dilation, k):
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 6))
  taps = jax.random.normal(jax.random.key(1), (k, k, 6))
  g = jax.random.normal(jax.random.key(2), darts.depthwise_conv(x, taps, stride, dilation).shape)
  loss = lambda policy: lambda x, t: jnp.sum(darts.depthwise_conv(x, t, stride, dilation, policy) * g)
  # brute force: per-channel correlation with zero padding
  pad = dilation * (k - 1) // 2
  xp = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  out = np.asarray(darts.depthwise_conv(x, taps, stride, dilation))
  want = np.zeros_like(out)
  for i in range(out.shape[1]):
    for j in range(out.shape[2]):
      for a in range(k):
        for b in range(k):
          want[:, i, j] += xp[:, i * stride + a * dilation, j * stride + b * dilation] * np.asarray(taps)[a, b]
  np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
  assert cpu_depthwise.prefers_dense(6)
  for got, ref in zip(jax.grad(loss(runtime.CPU), (0, 1))(x, taps), jax.grad(loss(runtime.STOCK), (0, 1))(x, taps)):
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def _trainer(policy, steps_per_call=3):
  c = config_lib.base_config().train
  c.update(dict(batch_size=8, epochs=2, steps_per_call=steps_per_call, lr_schedule="0:0.05"))
  model = models.create("small_cnn", 3, width=4, embed=8, dropout=0.3)
  return trainer_lib.Trainer(model, c, lambda x: x.astype(jnp.float32) / 255.0, augment.AugmentConfig(flip=True),
                             (8, 8, 1), np.uint8, runtime=policy)


def test_scan_path_gives_the_unrolled_parameters():
  """Forced on the CPU, the scanned step block trains to the unrolled block's parameters
  (same steps, keys, dropout and augmentation; a short epoch exercises the no-op steps)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.integers(0, 255, (40, 8, 8, 1)), jnp.uint8)
  y = rng.integers(0, 3, 40).astype(np.int32)
  labeled = np.arange(28)
  fits = {}
  for unroll in (True, False):
    policy = runtime.Runtime(kernels="cpu", conv_impl="per_shape", unroll_steps=unroll, init_prng="non_partitionable")
    t = _trainer(policy)
    assert t.model.runtime == policy
    fits[unroll] = t.fit(jax.random.key(4), x, y, labeled)
  a, b = fits[True], fits[False]
  assert a.epochs == b.epochs == 2
  np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=1e-5)
  jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5),
                         a.state.params, b.state.params)
  # a scan, not straight-line code: the scanned block of 3 steps traces the step's convolutions once
  convs = {u: _trainer(runtime.Runtime(unroll_steps=u))._block.lower(*_block_args(fits[True].state, x, y))
           .as_text().count("stablehlo.convolution") for u in (True, False)}
  assert convs[False] > 0 and convs[True] == 3 * convs[False], convs


def _block_args(state, x, y):
  idx = np.zeros((3, 8), np.int32)
  return (state, x, jnp.asarray(y), idx, np.ones(3, bool), jax.random.key(0), np.float32(0.1), np.float32(0.0),
          np.int32(0))


def test_init_prng_is_the_policys_and_deterministic():
  """Each threefry form gives the same init for the same seed; the two forms differ."""
  inits = {}
  for form in ("partitionable", "non_partitionable"):
    t = _trainer(runtime.Runtime(init_prng=form))
    first, again = t.init(jax.random.key(7)), t.init(jax.random.key(7))
    jax.tree_util.tree_map(np.testing.assert_array_equal, first.params, again.params)
    inits[form] = first.params
  leaves = zip(jax.tree_util.tree_leaves(inits["partitionable"]), jax.tree_util.tree_leaves(inits["non_partitionable"]))
  assert any(not np.array_equal(a, b) for a, b in leaves)


ACCELERATOR_POLICY = {"runtime.kernels": "stock", "runtime.conv_impl": "xla", "runtime.unroll_steps": "scan",
                      "runtime.init_prng": "partitionable", "runtime.compiler_options": "none"}


def test_accelerator_policy_resumes_as_if_uninterrupted(tmp_path, monkeypatch):
  """The GPU/TPU policy (stock ops, scanned blocks, partitionable init), forced on the CPU:
  `config.json` records it, rounds after the first compile nothing, and a run killed after
  round 1 then resumed ends with the same records and labeled set as an uninterrupted one
  (which also shows that the same seed gives the same selections)."""
  from tests.conftest import run_killed_after, tiny_config  # pylint: disable=import-outside-toplevel
  from jaxal import checkpoint as checkpoint_lib  # pylint: disable=import-outside-toplevel
  import json  # pylint: disable=import-outside-toplevel
  reference = loop.run(tiny_config(**ACCELERATOR_POLICY), tmp_path / "a")
  saved = json.loads((tmp_path / "a" / "config.json").read_text())["runtime"]
  assert saved == {k.split(".")[1]: v for k, v in ACCELERATOR_POLICY.items()}
  assert [r["compiles"] for r in reference[1:]] == [0] * (len(reference) - 1)
  run_killed_after(monkeypatch, tiny_config(**ACCELERATOR_POLICY), tmp_path / "b", 2)
  resumed = loop.run(tiny_config(**ACCELERATOR_POLICY), tmp_path / "b")
  keys = ("round", "num_labeled", "test_accuracy", "test_loss", "train_loss", "queried")
  assert [{k: r[k] for k in keys} for r in resumed] == [{k: r[k] for k in keys} for r in reference]
  pools = []
  for name in ("a", "b"):
    ckpts = checkpoint_lib.RunCheckpoints(tmp_path / name)
    pools.append(ckpts.restore()[0])
    ckpts.close()
  np.testing.assert_array_equal(pools[0].labeled_mask, pools[1].labeled_mask)
