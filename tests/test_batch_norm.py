"""jaxal's BatchNorm against flax.linen.BatchNorm, and its product-form VJP against autodiff."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal.cpu import batch_norm as cpu_batch_norm
from jaxal.models import batch_norm


def _inputs(shape, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape).astype(np.float32) * 3.0 + 1.5
  w = rng.normal(size=shape).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(w)


def _params(channels):
  return {"scale": jnp.linspace(0.5, 2.0, channels), "bias": jnp.linspace(-1.0, 1.0, channels)}


# Image maps and plain features under both forms; sequences under the reference form.
@pytest.mark.parametrize("shape,as_product", [((16, 6, 6, 8), True), ((40, 3), True), ((16, 6, 6, 8), False),
                                              ((12, 10, 5), False), ((40, 3), False)])
def test_matches_flax_batch_norm_in_training(shape, as_product, monkeypatch):
  monkeypatch.setattr(batch_norm, "batch_norm_train",
                      lambda *a: (cpu_batch_norm.train_with_product_sums if as_product else batch_norm._train_reference)(*a[:4]))
  x, w = _inputs(shape)
  ours, theirs = batch_norm.BatchNorm(momentum=0.9), nn.BatchNorm(momentum=0.9)
  init_ours = ours.init(jax.random.key(0), x, use_running_average=False)
  init_theirs = theirs.init(jax.random.key(0), x, use_running_average=False)
  assert jax.tree.structure(init_ours) == jax.tree.structure(init_theirs)
  jax.tree.map(np.testing.assert_array_equal, init_ours, init_theirs)
  stats = {"mean": jnp.full(shape[-1], 0.3), "var": jnp.full(shape[-1], 2.0)}

  def loss(module, params, x):
    y, updates = module.apply({"params": params, "batch_stats": stats}, x, use_running_average=False,
                              mutable=["batch_stats"])
    return jnp.sum(jnp.sin(y) * w), (y, updates)

  grad = lambda m: jax.jit(jax.value_and_grad(lambda p, x: loss(m, p, x), argnums=(0, 1), has_aux=True))
  (l1, (y1, u1)), g1 = grad(ours)(_params(shape[-1]), x)
  (l2, (y2, u2)), g2 = grad(theirs)(_params(shape[-1]), x)
  np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), u1, u2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), g1, g2)
  assert not np.allclose(u1["batch_stats"]["mean"], stats["mean"])  # the running averages moved


def test_matches_flax_in_evaluation_and_without_affine_parameters():
  x, _ = _inputs((8, 5, 5, 6), seed=1)
  for kwargs in ({}, {"use_scale": False, "use_bias": False}):
    ours, theirs = batch_norm.BatchNorm(**kwargs), nn.BatchNorm(**kwargs)
    variables = theirs.init(jax.random.key(0), x, use_running_average=False)
    assert jax.tree.structure(ours.init(jax.random.key(0), x, use_running_average=False)) == \
        jax.tree.structure(variables)
    variables = jax.tree.map(lambda v: v + 0.25, variables)
    np.testing.assert_allclose(ours.apply(variables, x, use_running_average=True),
                               theirs.apply(variables, x, use_running_average=True), rtol=1e-6, atol=1e-6)


def test_product_vjp_equals_autodiff_including_the_statistics_cotangents():
  x, w = _inputs((10, 4, 4, 5), seed=2)
  p = _params(5)
  a, b = jnp.linspace(-1.0, 2.0, 5), jnp.linspace(0.5, -0.5, 5)

  def loss(fn, x, scale, bias):
    y, mean, var = fn(x, scale, bias, 1e-5)
    return jnp.sum(jnp.tanh(y) * w) + jnp.sum(mean * a) + jnp.sum(var * b)

  got = jax.grad(lambda *args: loss(cpu_batch_norm.train_with_product_sums, *args), argnums=(0, 1, 2))(x, p["scale"], p["bias"])
  want = jax.grad(lambda *args: loss(batch_norm._train_reference, *args), argnums=(0, 1, 2))(x, p["scale"], p["bias"])
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


def test_bfloat16_compute_keeps_float32_statistics():
  x, _ = _inputs((16, 4, 4, 8), seed=3)
  params = jax.tree.map(lambda v: v.astype(jnp.bfloat16), _params(8))
  stats = {"mean": jnp.zeros(8), "var": jnp.ones(8)}
  y, updates = batch_norm.BatchNorm(momentum=0.9).apply({"params": params, "batch_stats": stats},
                                                         x.astype(jnp.bfloat16), use_running_average=False,
                                                         mutable=["batch_stats"])
  assert y.dtype == jnp.bfloat16 and updates["batch_stats"]["mean"].dtype == jnp.float32
  ref = nn.BatchNorm(momentum=0.9).apply({"params": params, "batch_stats": stats}, x.astype(jnp.bfloat16),
                                         use_running_average=False, mutable=["batch_stats"])[0]
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(ref, np.float32), rtol=2e-2, atol=2e-2)
