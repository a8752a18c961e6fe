"""Uncertainty scores from softmax probabilities (ALGORITHMS.md §1). Higher = query first."""

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy


@jax.jit
def least_confidence(probs):
  """Softmax response: `1 - max_c p_c`."""
  return 1.0 - jnp.max(probs, axis=-1)


@jax.jit
def margin(probs):
  """`-(p_(1) - p_(2))`, the negated gap between the two largest probabilities."""
  top2, _ = jax.lax.top_k(probs, 2)
  return -(top2[..., 0] - top2[..., 1])


@jax.jit
def entropy(probs):
  """`-sum_c p_c log p_c`, exact (0) at p = 0 thanks to `xlogy`."""
  return -jnp.sum(xlogy(probs, probs), axis=-1)
