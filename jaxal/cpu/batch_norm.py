"""BatchNorm's training-mode forward and backward with every batch sum as a product.

XLA:CPU turns a sum over the N*H*W rows of an activation into a slow tree reduction; a
product with a ones vector (a GEMV) ran 2-3x faster (benchmarks/NOTES.md §6e). Values and
gradients equal `jaxal.models.batch_norm`'s reference up to float rounding.
"""

import functools

import jax
import jax.numpy as jnp

from jaxal.models import batch_norm as bn


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def train_with_product_sums(x, scale, bias, epsilon):
  """`batch_norm._train_reference` with every batch sum, forward and backward, as a product."""
  return _forward(x, scale, bias, epsilon)[0]


def _forward(x, scale, bias, epsilon):
  mean, var = bn.batch_statistics(x.astype(jnp.float32), True)
  inv = jax.lax.rsqrt(var + epsilon)
  return (bn.normalize(x, mean, var, scale, bias, epsilon), mean, var), (x, scale, bias, mean, inv)


def _backward(epsilon, residuals, cotangents):
  del epsilon
  x, scale, bias, mean, inv = residuals
  dy, dmean, dvar = cotangents
  centered = x.astype(jnp.float32) - mean
  count = centered.size // centered.shape[-1]
  g = dy.astype(jnp.float32)
  xhat = centered * inv
  dbias = bn.column_sums(g, True)
  dscale = bn.column_sums(g * xhat, True)
  # d/dx of y = xhat * scale + bias through the batch mean and variance, plus the statistics'
  # own cotangents (zero in training: they only feed the running averages).
  dx = (scale.astype(jnp.float32) * inv) * (g - (dbias + xhat * dscale) / count)
  dx = dx + dmean / count + centered * (2.0 * dvar / count)
  return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(bias.dtype)


train_with_product_sums.defvjp(_forward, _backward)
