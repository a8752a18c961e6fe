"""The active-iNAS ResNet grid: depth formula, parameter counts, shapes, training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import models


def hand_count_basic(blocks, stacks, width, in_ch, classes):
  """Parameters of A(basic, blocks, stacks), counted by hand from the layer list."""
  conv = lambda k, i, o: k * k * i * o
  bn = lambda c: 2 * c  # scale + bias (running stats are not params)
  total = conv(3, in_ch, width) + bn(width)
  c_in = width
  for s in range(stacks):
    c = width * 2**s
    for b in range(blocks):
      total += conv(3, c_in, c) + bn(c) + conv(3, c, c) + bn(c)
      if c_in != c:
        total += conv(1, c_in, c) + bn(c)
      c_in = c
  return total + c_in * classes + classes


@pytest.mark.parametrize("blocks,stacks", [(1, 1), (2, 4), (3, 2), (12, 5), (1, 5)])
def test_depth_formula_and_param_count(blocks, stacks):
  m = models.create("resnet_grid", 10, blocks=blocks, stacks=stacks, width=64)
  d = models.describe(m, (1, 32, 32, 3))
  assert d["depth"] == blocks * stacks * 2 + 2
  assert d["num_params"] == hand_count_basic(blocks, stacks, 64, 3, 10)
  assert d["architecture"] == f"resnet_grid({blocks},{stacks})"


def test_resnet18_equivalent():
  d = models.describe(models.create("resnet_grid", 10, blocks=2, stacks=4), (1, 32, 32, 3))
  assert d["depth"] == 18 and d["num_params"] == 11_173_962


def test_bottleneck_depth():
  m = models.create("resnet_grid", 10, blocks=2, stacks=3, block="bottleneck", width=16)
  assert models.describe(m, (1, 32, 32, 3))["depth"] == 2 * 3 * 3 + 2


@pytest.mark.parametrize("stacks", [1, 2, 3, 4, 5])
def test_spatial_extent_before_pooling_is_positive(stacks):
  """32x32 -> 16x16 after the max-pool, halved by every stack after the first."""
  m = models.create("resnet_grid", 10, blocks=1, stacks=stacks, width=2)
  # shapes only: traced, never run
  v = jax.eval_shape(lambda k: models.init_variables(m, k, (2, 32, 32, 3)), jax.random.key(0))
  (logits, emb), inter = jax.eval_shape(lambda v, x: m.apply(v, x, train=False, capture_intermediates=True), v,
                                        jnp.zeros((2, 32, 32, 3)))
  assert logits.shape == (2, 10) and emb.shape == (2, 2 * 2 ** (stacks - 1))
  last = inter["intermediates"]["backbone"][f"stack{stacks - 1}_block0"]["__call__"][0]
  assert last.shape[1:3] == (32 // 2**stacks,) * 2 and last.shape[1] >= 1


def test_outputs_and_mc_dropout_switches():
  m = models.create("resnet_grid", 5, blocks=1, stacks=2, width=4, dropout=0.5)
  x = jax.random.normal(jax.random.key(1), (6, 8, 8, 1))
  # compiled: eagerly, every call dispatched each op one by one (slow)
  v = jax.jit(lambda k: models.init_variables(m, k, x.shape))(jax.random.key(0))
  logits, emb = jax.jit(lambda v, x: m.apply(v, x, train=False))(v, x)
  assert logits.shape == (6, 5) and emb.shape == (6, 8)
  # Deterministic in eval mode; MC-dropout draws differ between keys but not within.
  mc = jax.jit(lambda v, x, k: m.apply(v, x, mc_dropout=True, rngs={"dropout": k}))
  a, _ = mc(v, x, jax.random.key(1))
  b, _ = mc(v, x, jax.random.key(2))
  a2, _ = mc(v, x, jax.random.key(1))
  assert not np.allclose(a, b) and np.allclose(a, a2)
  # MC-dropout keeps BatchNorm in inference mode: one example alone gives the same embedding.
  _, e1 = mc(v, x[:1], jax.random.key(1))
  np.testing.assert_allclose(e1[0], emb[0], rtol=1e-5, atol=1e-6)
  # The head alone on the embedding equals the full model.
  h = m.apply(v, emb, mc_dropout=True, method="head", rngs={"dropout": jax.random.key(1)})
  np.testing.assert_allclose(h, a, rtol=1e-5, atol=1e-6)
