"""BatchNorm over all axes but the last; under the CPU policy its batch sums are products.

The same variables, defaults and values as `flax.linen.BatchNorm` (params `scale`, `bias`;
batch_stats `mean`, `var`; the fast variance `E[x^2] - E[x]^2`; running averages not updated
while initializing), so checkpoints and model code are interchangeable with it.

Why: XLA:CPU rewrites a sum over the N*H*W rows of an activation into a `reduce-window`
(tree reduction) that ran at 3-5 GB/s, 71 ms of a 409 ms PreAct-ResNet-20 training step at
batch 128 (four such sums per BatchNorm: mean and mean square forward, two in the backward).
A product with a ones vector is a GEMV and ran 2-3x faster (benchmarks/NOTES.md §6e). Under
the CPU policy (`runtime.kernels = "cpu"`) the training-mode forward and backward therefore
take their sums as products (`jaxal.cpu.batch_norm`, a custom VJP with the textbook
BatchNorm gradient); under the stock policy XLA's reductions are used, and autodiff gives
the gradient.
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxal.models import layers


def column_sums(x, as_product: bool):
  """Sum of a float32 array over all axes but the last. As a product, it contracts those
  axes with ones in place (reshaping the operand to rows first let XLA:CPU materialize its
  producers one by one: nine pads of the stem pool's gradient, 80 ms a step in A(1,1))."""
  axes = tuple(range(x.ndim - 1))
  if as_product:
    ones = jnp.ones(x.shape[:-1], x.dtype)
    return jax.lax.dot_general(ones, x, ((axes, axes), ((), ())), precision=jax.lax.Precision.HIGHEST)
  return jnp.sum(x, axis=axes)


def batch_statistics(x, as_product: bool):
  """Batch mean and (biased, fast) variance over all axes but the last of float32 `x`."""
  count = x.size // x.shape[-1]
  mean = column_sums(x, as_product) / count
  var = jnp.maximum(column_sums(x * x, as_product) / count - mean * mean, 0.0)
  return mean, var


def normalize(x, mean, var, scale, bias, epsilon):
  """`(x - mean) * rsqrt(var + eps) * scale + bias` in float32, in the inputs' promoted dtype."""
  mul = jax.lax.rsqrt(var + epsilon) * scale.astype(jnp.float32)
  y = (x.astype(jnp.float32) - mean) * mul + bias.astype(jnp.float32)
  return y.astype(jnp.result_type(x, scale, bias))


def _train_reference(x, scale, bias, epsilon):
  """Training-mode output and batch statistics, with XLA's reductions (differentiated by
  autodiff)."""
  mean, var = batch_statistics(x.astype(jnp.float32), False)
  return normalize(x, mean, var, scale, bias, epsilon), mean, var


def batch_norm_train(x, scale, bias, epsilon: float, as_product: bool = False):
  """`(y, batch mean, batch variance)` of training-mode BatchNorm over all axes but the last.
  `as_product` (the CPU policy's kernels) takes the batch sums as products."""
  if as_product:
    from jaxal.cpu import batch_norm as cpu_batch_norm  # pylint: disable=g-import-not-at-top  (it imports this module)
    return cpu_batch_norm.train_with_product_sums(x, scale, bias, epsilon)
  return _train_reference(x, scale, bias, epsilon)


class BatchNorm(nn.Module):
  """`flax.linen.BatchNorm` over all axes but the last (the attributes jaxal's models use)."""
  use_running_average: bool | None = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  use_bias: bool = True
  use_scale: bool = True
  scale_init: Callable = nn.initializers.ones
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None):
    use_running_average = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
    features = (x.shape[-1],)
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), features)
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), features)
    scale = self.param("scale", self.scale_init, features, jnp.float32) if self.use_scale else None
    bias = self.param("bias", self.bias_init, features, jnp.float32) if self.use_bias else None
    # Absent parameters act as ones and zeros in the inputs' dtype (the output's dtype is
    # that of the inputs and the parameters present, as in flax).
    scale = jnp.ones(features, x.dtype) if scale is None else scale
    bias = jnp.zeros(features, x.dtype) if bias is None else bias
    if use_running_average:
      return normalize(x, ra_mean.value, ra_var.value, scale, bias, self.epsilon)
    y, mean, var = batch_norm_train(x, scale, bias, self.epsilon, layers.runtime_of(self).cpu_kernels)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y
