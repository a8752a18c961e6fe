"""pooling: max-pools with nn.max_pool's values and gradients (ties included), under the CPU
policy's custom backward and the stock one."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import functools

from jaxal import runtime
from jaxal.models import pooling

POLICIES = pytest.mark.parametrize("policy", [runtime.CPU, runtime.STOCK], ids=["cpu", "stock"])


@pytest.mark.parametrize("size", [8, 3])  # even; odd (the last row and column dropped)
def test_max_pool_2x2_matches_nn_max_pool(size, policy=runtime.CPU):
  """Forward and gradient through a ReLU (ties at 0) equal nn.max_pool's."""
  x = jax.random.normal(jax.random.key(size), (3, size, size, 5))
  ref = lambda x: nn.max_pool(jax.nn.relu(x), (2, 2), strides=(2, 2))
  ours = lambda x: pooling.max_pool_2x2(jax.nn.relu(x), policy)
  np.testing.assert_array_equal(ours(x), ref(x))
  ct = jax.random.normal(jax.random.key(1), ref(x).shape)
  grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * ct))(x)
  np.testing.assert_allclose(grad(ours), grad(ref), rtol=1e-6, atol=1e-6)


def _numpy_max_pool_3x3_s2(x, g):
  """Brute force: SAME padding, each window's max and its gradient to the first input
  holding it (row-major window order)."""
  n, h, w, c = x.shape
  oh, ow = -(-h // 2), -(-w // 2)
  ph, pw = max((oh - 1) * 2 + 3 - h, 0) // 2, max((ow - 1) * 2 + 3 - w, 0) // 2
  out = np.full((n, oh, ow, c), -np.inf)
  dx = np.zeros(x.shape, np.float64)
  for b in range(n):
    for r in range(oh):
      for s in range(ow):
        for ch in range(c):
          best, where = -np.inf, None
          for i in range(3):
            for j in range(3):
              y, z = 2 * r + i - ph, 2 * s + j - pw
              if 0 <= y < h and 0 <= z < w and x[b, y, z, ch] > best:
                best, where = x[b, y, z, ch], (y, z)
          out[b, r, s, ch] = best
          dx[b, where[0], where[1], ch] += g[b, r, s, ch]
  return out, dx


# Odd and even sides (SAME pads both sides, or only the high one), and a map smaller than a window.
@pytest.mark.parametrize("shape", [(1, 5, 6, 4), (1, 2, 3, 2)])
@pytest.mark.parametrize("ties", [False, True])
@POLICIES
def test_max_pool_3x3_s2_matches_numpy_and_nn_max_pool(shape, ties, policy):
  """Forward equal; gradient to the first max of each window, as select-and-scatter."""
  rng = np.random.default_rng(sum(shape) + ties)
  x = (rng.integers(0, 3, shape) if ties else rng.normal(size=shape)).astype(np.float32)
  ref = lambda x: nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
  want, _ = _numpy_max_pool_3x3_s2(x, np.zeros(ref(x).shape))
  g = rng.normal(size=want.shape).astype(np.float32)
  _, want_dx = _numpy_max_pool_3x3_s2(x, g)
  out, vjp = jax.vjp(functools.partial(pooling.max_pool_3x3_s2, runtime=policy), jnp.asarray(x))
  np.testing.assert_array_equal(out, want.astype(np.float32))
  np.testing.assert_array_equal(out, ref(x))
  # Sums of up to four window gradients: equal up to float32 addition order.
  np.testing.assert_allclose(vjp(jnp.asarray(g))[0], want_dx, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(vjp(jnp.asarray(g))[0], jax.vjp(ref, jnp.asarray(x))[1](jnp.asarray(g))[0],
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 7, 9, 2), (1, 4, 6, 4)])  # odd sides (cropped), even sides
@pytest.mark.parametrize("ties", [False, True])
@POLICIES
def test_max_pool_2x2_gradient_goes_to_the_first_max(shape, ties, policy):
  """Exactly nn.max_pool's gradient (select-and-scatter: first max in row-major order),
  checked against a brute-force loop, ties included."""
  rng = np.random.default_rng(sum(shape) + ties)
  x = (rng.integers(0, 3, shape) if ties else rng.normal(size=shape)).astype(np.float32)
  ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  out, vjp = jax.vjp(functools.partial(pooling.max_pool_2x2, runtime=policy), jnp.asarray(x))
  g = rng.normal(size=out.shape).astype(np.float32)
  want = np.zeros(shape, np.float32)
  for b, r, s, ch in np.ndindex(*out.shape):
    window = [(2 * r + i, 2 * s + j) for i in range(2) for j in range(2)]
    first = max(window, key=lambda p: (x[b, p[0], p[1], ch], -window.index(p)))
    want[b, first[0], first[1], ch] += g[b, r, s, ch]
  np.testing.assert_array_equal(out, ref(x))
  np.testing.assert_array_equal(vjp(jnp.asarray(g))[0], want)
  np.testing.assert_array_equal(vjp(jnp.asarray(g))[0], jax.vjp(ref, jnp.asarray(x))[1](jnp.asarray(g))[0])
