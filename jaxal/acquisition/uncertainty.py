"""Uncertainty scores from softmax probabilities (ALGORITHMS.md §1). Higher = query first.

Choices the spec leaves open, as resolved here:
* least confidence is `1 - max_c p_c` (not `-max p`), so it lies in `[0, 1 - 1/C]`;
* margin uses probabilities, never logits (a logit margin ranks differently when C > 2),
  and two tied top classes give margin 0;
* entropy uses `xlogy`, so `p = 0` contributes exactly 0 (no NaN);
* from logits, `least_confidence_from_logits` computes `s / (1 + s)` with
  `s = sum_{c != argmax} exp(z_c - z_max)`: in float32, `1 - max p` is exactly 0 for every
  row with `max p > 1 - 6e-8` (and so is `-expm1(max log_softmax)`, whose `log` rounds
  `1 + s` to 1), so those rows would be ordered by index; this form keeps them ordered.
  The registry's `least_confidence` uses it.
"""

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy


@jax.jit
def least_confidence(probs):
  """Softmax response: `1 - max_c p_c`.

  Args:
    probs: `(n, C)` probabilities.
  Returns:
    `(n,)` scores.
  """
  return 1.0 - jnp.max(probs, axis=-1)


@jax.jit
def least_confidence_from_logits(logits):
  """`1 - max_c softmax(z)_c`, with full relative precision for confident rows.

  Args:
    logits: `(n, C)` logits.
  Returns:
    `(n,)` scores.
  """
  logits = jnp.asarray(logits, jnp.float32)
  top = jnp.argmax(logits, axis=-1)
  rest = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
  rest = jnp.where(jax.nn.one_hot(top, logits.shape[-1], dtype=bool), 0.0, rest)
  s = jnp.sum(rest, axis=-1)
  return s / (1.0 + s)


@jax.jit
def margin(probs):
  """`-(p_(1) - p_(2))`, the negated gap between the two largest probabilities.

  Args:
    probs: `(n, C)` probabilities, C >= 2.
  Returns:
    `(n,)` scores in `[-1, 0]`.
  """
  top2, _ = jax.lax.top_k(probs, 2)
  return -(top2[..., 0] - top2[..., 1])


@jax.jit
def entropy(probs):
  """`-sum_c p_c log p_c`, exact (0) at p = 0 thanks to `xlogy`.

  Args:
    probs: `(n, C)` probabilities.
  Returns:
    `(n,)` scores in `[0, log C]`.
  """
  return -jnp.sum(xlogy(probs, probs), axis=-1)
