"""Data parallelism on 8 fake CPU devices matches one device.

JAX fixes its device count at start-up, so the comparisons run in a subprocess with
`--xla_force_host_platform_device_count=8`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import config as config_lib, parallel
from tests.conftest import run_on_host_devices, tiny_config


def _eight_devices_match_one():
  import itertools

  import jax
  import jax.numpy as jnp
  import numpy as np
  from jaxal import acquisition, models, parallel
  from jaxal.data import augment, pipeline
  from jaxal.train import trainer as trainer_lib

  assert jax.device_count() == 8
  mesh = parallel.make_mesh(0)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (300, 8, 8, 1), dtype=np.uint8)
  y = (np.arange(300) % 3).astype(np.int32)
  c = config_lib.base_config().train
  c.batch_size, c.epochs, c.epoch_size, c.steps_per_call, c.lr_schedule = 32, 2, 96, 2, "0:0.05"
  pre = pipeline.make_preprocess(x, "image", "per_channel")
  model = models.create("resnet_grid", 3, blocks=1, stacks=2, width=4)
  aug = augment.AugmentConfig(flip=True, max_shift=1)
  results = []
  for m in (None, mesh):
    t = trainer_lib.Trainer(model, c, pre, aug, (8, 8, 1), np.uint8, mesh=m)
    inputs = parallel.replicate(jnp.asarray(x), m)
    fit = t.fit(jax.random.key(0), inputs, y, np.arange(100))
    if m is not None:
      leaf = jax.tree_util.tree_leaves(fit.state.params)[0]
      assert len(leaf.sharding.device_set) == 8  # really replicated over the mesh
    predictor = t.predictor(fit.state, inputs, chunk_size=64)
    logits, emb = predictor.outputs()
    view = acquisition.PoolView(np.arange(300) < 100, np.arange(300) >= 100, predictor, {})
    picked = acquisition.acquire("least_confidence", view, 20, jax.random.key(1))
    results.append((fit, logits, emb, picked))
  (f1, l1, e1, p1), (f8, l8, e8, p8) = results
  for a, b in zip(jax.tree_util.tree_leaves(f1.state.params), jax.tree_util.tree_leaves(f8.state.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
  np.testing.assert_allclose(l1, l8, rtol=1e-3, atol=1e-4)
  # Selection from the same model scored on 8 devices picks the same indices.
  t8 = trainer_lib.Trainer(model, c, pre, aug, (8, 8, 1), np.uint8, mesh=mesh)
  same_model = t8.predictor(f1.state, parallel.replicate(jnp.asarray(x), mesh), chunk_size=64)
  picked_same = acquisition.acquire("least_confidence", acquisition.PoolView(
      np.arange(300) < 100, np.arange(300) >= 100, same_model, {}), 20, jax.random.key(1))
  np.testing.assert_array_equal(np.sort(picked_same), np.sort(p1))
  # k-center over rows split across the 8 devices (301 rows: padding needed) picks the same.
  # Offset 50 puts the all-zero padding rows far from every real row: a padding row must
  # still never be picked, with or without labels. (Far from the origin the initial GEMM's
  # float32 round-off differs between the sharded and one-device blocks and can swap
  # near-ties, so the picks are compared at offset 0 only.)
  emb = np.random.default_rng(1).normal(size=(301, 16)).astype(np.float32)
  for offset, num_labeled in itertools.product((0.0, 50.0), (0, 30)):
    lab = np.zeros(301, bool)
    lab[:num_labeled] = True
    sharded = acquisition.kcenter_greedy(emb + offset, lab, 25, mesh=mesh)
    assert sharded.max() < 301 and len(set(sharded.tolist())) == 25 and not lab[sharded].any()
    if offset == 0:
      np.testing.assert_array_equal(sharded, acquisition.kcenter_greedy(emb, lab, 25))
  # BADGE over rows split across the 8 devices (301 rows: padding needed) picks the same,
  # and so does the whole `badge` acquisition on a predictor sharded over the mesh.
  probs = jax.nn.softmax(np.random.default_rng(2).normal(size=(301, 5)) * 3, axis=-1)
  for num_labeled in (0, 30):
    lab = np.zeros(301, bool)
    lab[:num_labeled] = True
    np.testing.assert_array_equal(acquisition.badge(probs, emb, lab, 40, jax.random.key(4), mesh=mesh),
                                  acquisition.badge(probs, emb, lab, 40, jax.random.key(4)))
  views = [acquisition.PoolView(np.arange(300) < 100, np.arange(300) >= 100, p, {})
           for p in (same_model, trainer_lib.Trainer(model, c, pre, aug, (8, 8, 1), np.uint8).predictor(
               f1.state, jnp.asarray(x), chunk_size=64))]
  b8, b1 = (acquisition.acquire("badge", v, 20, jax.random.key(5)) for v in views)
  np.testing.assert_array_equal(b8, b1)
  _split_rows_stay_split(mesh)
  _share_helpers_match_numpy(mesh)
  print("OK")


def _share_helpers_match_numpy(mesh):
  """`parallel.top_k_split` and `parallel.take_rows` on rows split over 8 devices against numpy:
  ties to the lower index (across shares too), k above a share's size, bits of -0.0 and bfloat16."""
  import jax
  import jax.numpy as jnp
  rng = np.random.default_rng(3)
  sharded, auto = parallel.batch_sharded(mesh), parallel.as_auto_mesh(mesh)
  m = rng.integers(0, 9, 320).astype(np.float32)  # 40 rows a share, many ties
  for k in (5, 50):
    vals, idx = jax.jit(lambda v, k=k: parallel.top_k_split(v, k, auto))(jax.device_put(m, sharded))
    want = np.lexsort((np.arange(320), -m))[:k]
    np.testing.assert_array_equal(np.asarray(idx), want)
    np.testing.assert_array_equal(np.asarray(vals), m[want])
  x = rng.normal(size=(320, 3)).astype(np.float32)
  x[rng.random((320, 3)) < 0.3] = -0.0
  arrays = (x, x[:, 0].astype(jnp.bfloat16))
  rows = jax.jit(lambda a, b, j: jax.vmap(lambda j: parallel.take_rows((a, b), j, auto))(j))(
      *jax.device_put(arrays, sharded), jnp.asarray([0, 39, 40, 319, 200]))
  for got, a in zip(rows, arrays):
    np.testing.assert_array_equal(np.asarray(got).view(np.uint8), np.asarray(a)[[0, 39, 40, 319, 200]].view(np.uint8))


def _float_collectives(compiled_text: str) -> list[int]:
  """Elements of each float array that a cross-device op of the compiled program returns."""
  import re
  sizes = []
  for line in compiled_text.splitlines():
    if re.search(r" (all-gather|all-reduce|all-to-all|collective-permute)(-start)?\(", line):
      result = line.split("=", 1)[1].split(" all-")[0].split(" collective-")[0]
      sizes += [int(np.prod([int(v) for v in dims.split(",") if v] or [1]))
                for dims in re.findall(r"(?:f32|bf16|f16)\[([\d,]*)\]", result)]
  return sizes


def _split_rows_stay_split(mesh):
  """k-center's and BADGE's programs over rows split across the mesh move only candidates and
  single rows between devices, never a float array of n rows (XLA's partitioner gathers a
  sharded array whole for a `top_k` or a dynamic row index, which each greedy step has)."""
  import jax
  from jaxal.acquisition import badge_seeding, kcenter_dense
  n, sharded = 8 * 16384, parallel.batch_sharded(mesh)  # bad: n entries or n * 4 rows; the initial
  x = jax.device_put(np.zeros((n, 4), np.float32), sharded)  # pass moves each share's nearest centers, 1024 rows at a time
  mask, probs = (jax.device_put(np.zeros(n, bool), sharded), jax.device_put(np.zeros((n, 5), np.float32), sharded))
  auto = parallel.as_auto_mesh(mesh)
  programs = {"kcenter": kcenter_dense._kcenter.lower(x, mask, mask, 64, 16, 0, 32, auto),
              "badge": badge_seeding._badge.lower(probs, x, mask, 64, jax.random.key(0), auto)}
  for name, lowered in programs.items():
    sizes = _float_collectives(lowered.compile().as_text())
    assert sizes and max(sizes) < n // 2, (name, sorted(sizes)[-5:])


def test_eight_devices_match_one():
  run_on_host_devices("tests.test_parallel:_eight_devices_match_one")


def test_indivisible_batch_is_a_clear_error():
  c = tiny_config(**{"train.batch_size": 30})
  with pytest.raises(config_lib.ConfigError, match="train.batch_size: 30 is not divisible by the 8"):
    config_lib.validate_against_devices(c, 8)
  config_lib.validate_against_devices(tiny_config(), 8)


def _offset_view(values, offset_bytes: int):
  """A view of `values`' copy starting `offset_bytes` past a 64-byte boundary."""
  buffer = np.empty(values.nbytes + 128, np.uint8)
  start = -buffer.ctypes.data % 64 + offset_bytes
  view = buffer[start:start + values.nbytes].view(values.dtype).reshape(values.shape)
  view[...] = values
  return view


@pytest.mark.parametrize("offset", [0, 4, 16, 48])
def test_to_device_copies_values_at_any_alignment(offset):
  values = np.random.default_rng(offset).normal(size=(37, 5)).astype(np.float32)
  host = _offset_view(values, offset)
  assert host.ctypes.data % 64 == offset
  out = parallel.to_device(host)
  assert isinstance(out, jax.Array) and out.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(out), values)
  # An unaligned array is first copied into an aligned buffer, which the CPU backend uses in
  # place; an aligned one is used in place directly.
  if jax.default_backend() == "cpu":
    assert out.unsafe_buffer_pointer() % 64 == 0
    assert (out.unsafe_buffer_pointer() == host.ctypes.data) == (offset == 0)


def test_to_device_casts_and_passes_device_arrays_through():
  values = np.arange(12, dtype=np.float64).reshape(3, 4)
  out = parallel.to_device(values)
  assert out.dtype == jnp.float32  # canonicalized like jnp.asarray without x64
  np.testing.assert_array_equal(np.asarray(out), values)
  bf = parallel.to_device(values[:, ::2], jnp.bfloat16)  # non-contiguous, cast on device
  assert bf.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(bf, np.float32), values[:, ::2])
  on_device = jnp.ones((4, 2))
  assert parallel.to_device(on_device) is on_device
  np.testing.assert_array_equal(np.asarray(parallel.to_device([[1, 2]], jnp.float32)), [[1.0, 2.0]])
