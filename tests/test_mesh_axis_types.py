"""Meshes as users make them: Explicit axes (`jax.make_mesh`'s default), Auto axes, no mesh.

Every public function that takes a mesh, a sharding or sharded arrays gives the same results
with each. jaxal computes on the Auto twin of a user's mesh (`parallel.as_auto_mesh`), so an
Explicit mesh runs the very program an Auto one does: bit-equal results. JAX fixes its
device count at start-up, so the 8-device comparisons run in a subprocess.
"""

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxal import parallel
from tests.conftest import run_on_host_devices


def greedy_kcenter64(x, labeled, budget):
  """Farthest-first in float64, brute force: from the labeled rows, or without any from the
  row farthest from the mean; ties to the lowest index."""
  x = np.asarray(x, np.float64)
  if labeled.any():
    d = ((x[:, None] - x[labeled][None]) ** 2).sum(-1).min(1)
  else:
    d = ((x - x.mean(0)) ** 2).sum(1)
  d[labeled] = -np.inf
  picks = []
  for step in range(budget):
    picks.append(int(np.argmax(d)))
    new = ((x - x[picks[-1]]) ** 2).sum(1)
    d = new if step == 0 and not labeled.any() else np.minimum(d, new)
    d[labeled] = -np.inf
    d[picks] = -np.inf
  return np.array(picks)


def _explicit_auto_and_no_mesh_agree():
  import jax.numpy as jnp

  from jaxal import acquisition, config as config_lib, inference, models
  from jaxal.data import augment, pipeline
  from jaxal.train import trainer as trainer_lib

  assert jax.device_count() == 8
  explicit = jax.make_mesh((8,), ("data",))
  assert explicit.axis_types == (AxisType.Explicit,)  # JAX's default, the case this file is about
  auto = parallel.make_mesh(0)
  assert auto.axis_types == (AxisType.Auto,)
  meshes = {"none": None, "auto": auto, "explicit": explicit}
  host = lambda a: np.asarray(jax.device_get(a))
  rng = np.random.default_rng(0)

  # k-center over 301 rows (padded to 304 on a mesh), against the float64 greedy; the
  # embeddings also as arrays on the Explicit mesh, replicated, or split over `data` with no
  # mesh given.
  emb = rng.normal(size=(301, 16)).astype(np.float32)
  replicated = jax.device_put(emb, NamedSharding(explicit, P()))
  split = jax.device_put(emb[:296], NamedSharding(explicit, P("data")))
  for num_labeled in (0, 30):
    lab = np.zeros(301, bool)
    lab[:num_labeled] = True
    want = greedy_kcenter64(emb, lab, 25)
    for name, mesh in meshes.items():
      np.testing.assert_array_equal(acquisition.kcenter_greedy(emb, lab, 25, mesh=mesh), want, err_msg=name)
    np.testing.assert_array_equal(acquisition.kcenter_greedy(replicated, lab, 25, mesh=explicit), want)
    np.testing.assert_array_equal(acquisition.kcenter_greedy(split, lab[:296], 25),
                                  greedy_kcenter64(emb[:296], lab[:296], 25))

  # BADGE: the same picks on every mesh, from host or Explicit-mesh arrays.
  probs = np.asarray(jax.nn.softmax(rng.normal(size=(301, 5)) * 3, axis=-1))
  lab = np.arange(301) < 30
  want = acquisition.badge(probs, emb, lab, 40, jax.random.key(4))
  for name, mesh in meshes.items():
    np.testing.assert_array_equal(acquisition.badge(probs, emb, lab, 40, jax.random.key(4), mesh=mesh), want, name)
  np.testing.assert_array_equal(acquisition.badge(jax.device_put(probs, NamedSharding(explicit, P())), replicated,
                                                  lab, 40, jax.random.key(4), mesh=explicit), want)

  # Two Trainer steps of a tiny fastText; the pool as each user would place it (on the
  # Explicit mesh: split over `data`). Explicit gives Auto's params bit for bit, and one
  # device's up to float reassociation.
  x = rng.integers(0, 50, (64, 12)).astype(np.int32)
  y = (np.arange(64) % 3).astype(np.int32)
  c = config_lib.base_config().train
  c.batch_size, c.epochs, c.epoch_size, c.steps_per_call, c.lr_schedule = 16, 1, 32, 1, "0:0.5"
  pre = pipeline.make_preprocess(x, "text", "none")
  model = models.create("fasttext", 3, vocab_size=50, dim=8, bigrams=False)
  pools = {"none": jnp.asarray(x), "auto": parallel.replicate(jnp.asarray(x), auto),
           "explicit": jax.device_put(x, NamedSharding(explicit, P("data")))}
  params = {}
  for name, mesh in meshes.items():
    trainer = trainer_lib.Trainer(model, c, pre, augment.AugmentConfig(), (12,), np.int32, mesh=mesh)
    fit = trainer.fit(jax.random.key(0), pools[name], y, np.arange(32))
    params[name] = [host(p) for p in jax.tree_util.tree_leaves(fit.state.params)]
    if name == "none":
      state = fit.state
  for a, b, z in zip(params["explicit"], params["auto"], params["none"]):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, z, rtol=2e-4, atol=2e-5)

  # Predictor: the one-device model, scored with a user's own sharding on the Explicit mesh
  # (its variables placed there too), with jaxal's Auto sharding, and on one device.
  variables = {"none": state.variables, "auto": parallel.replicate(state.variables, auto),
               "explicit": jax.device_put(state.variables, NamedSharding(explicit, P()))}
  shardings = {"none": None, "auto": parallel.batch_sharded(auto), "explicit": NamedSharding(explicit, P("data"))}
  outputs = {name: [host(o) for o in inference.Predictor(model, variables[name], pools[name], pre, chunk_size=24,
                                                         sharding=shardings[name]).outputs()] for name in meshes}
  for a, b, z in zip(outputs["explicit"], outputs["auto"], outputs["none"]):
    assert a.shape[0] == 64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, z, rtol=1e-5, atol=1e-6)
  print("OK")


def test_explicit_auto_and_no_mesh_agree():
  run_on_host_devices("tests.test_mesh_axis_types:_explicit_auto_and_no_mesh_agree")


def test_greedy_reference_is_farthest_first():
  x = np.array([[0.0], [1.0], [5.0], [2.5], [9.0]])
  assert greedy_kcenter64(x, np.array([True, False, False, False, False]), 3).tolist() == [4, 2, 3]
  # Without labels: first the row farthest from the mean (3.5), then farthest from it.
  assert greedy_kcenter64(x, np.zeros(5, bool), 2).tolist() == [4, 0]


def test_auto_twin_keeps_devices_and_names():
  explicit = jax.make_mesh((1,), ("data",))
  twin = parallel.as_auto_mesh(explicit)
  assert twin.axis_types == (AxisType.Auto,) and twin.axis_names == ("data",)
  assert list(twin.devices.flat) == list(explicit.devices.flat)
  assert parallel.as_auto_mesh(twin) is twin and parallel.as_auto_mesh(None) is None
  assert parallel.batch_sharded(explicit) == NamedSharding(twin, P("data"))
  moved = parallel.on_auto_mesh({"a": jax.device_put(np.arange(3.0), NamedSharding(explicit, P()))})
  assert moved["a"].sharding.mesh == twin


def test_mesh_without_a_data_axis_is_a_clear_error():
  mesh = Mesh(np.array(jax.devices()[:1]), ("batch",), axis_types=(AxisType.Explicit,))
  with pytest.raises(ValueError, match=r"mesh axis named 'data'; this mesh has axes \('batch',\)"):
    parallel.batch_sharded(mesh)


def test_inside_set_mesh_of_an_explicit_mesh_is_a_clear_error():
  mesh = jax.make_mesh((1,), ("data",))
  with jax.set_mesh(mesh), pytest.raises(ValueError, match="jax.set_mesh"):
    parallel.batch_sharded(mesh)
