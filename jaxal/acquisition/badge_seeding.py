"""BADGE (Ash et al. 2020; ALGORITHMS.md §4): k-means++ seeding on gradient embeddings.

The gradient embedding of point x is `g = (p - onehot(y_hat)) (x) h`, the last layer's
cross-entropy gradient at the predicted label. It is never materialized: with `a = p - e_yhat`,
`|g_i - g_j|^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 <a_i, a_j> <h_i, h_j>`, so each new
center costs two mat-vecs, O(n (C + d)), and memory stays O(n (C + d)).

Seeding runs over unlabeled points only (no labeled centers). The first center is the
largest gradient norm, as in the reference code; each next one is drawn with probability
`D^2 / sum D^2` via the Gumbel-max trick (`argmax(log D^2 + gumbel(key_i))`, one key per
step from `jax.random.split(key, budget)`). If every unchosen point has `D = 0`, the draw
falls back to uniform over the unchosen points.

With a device mesh the rows are split over its `data` axis (padded with rows that are never
candidates). Every step is row-local apart from one argmax, and with JAX's partitionable
threefry the Gumbel noise of row `i` does not depend on the padding, so the picks are the
same as on one device.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import parallel


def gradient_factors(probs):
  """`a = p - onehot(argmax p)` for each row."""
  probs = jnp.asarray(probs, jnp.float32)
  return probs - jax.nn.one_hot(jnp.argmax(probs, axis=-1), probs.shape[-1], dtype=probs.dtype)


def factorized_sq_dist(a, h, na, nh, j):
  """Squared distance from every gradient embedding to embedding `j`, clamped at 0."""
  d2 = na * nh + na[j] * nh[j] - 2.0 * (a @ a[j]) * (h @ h[j])
  return jnp.maximum(d2, 0.0)


@functools.partial(jax.jit, static_argnames=("budget",))
def _badge(probs, embeddings, candidates, budget: int, key):
  a = gradient_factors(probs)
  h = jnp.asarray(embeddings, jnp.float32)
  na, nh = jnp.sum(a * a, axis=1), jnp.sum(h * h, axis=1)
  first = jnp.argmax(jnp.where(candidates, na * nh, -jnp.inf))
  chosen = jnp.zeros_like(candidates).at[first].set(True)
  d2 = factorized_sq_dist(a, h, na, nh, first)
  picks = jnp.zeros((budget,), jnp.int32).at[0].set(first.astype(jnp.int32))
  keys = jax.random.split(key, budget)

  def step(i, carry):
    d2, chosen, picks = carry
    open_ = jnp.logical_and(candidates, jnp.logical_not(chosen))
    logits = jnp.where(open_ & (d2 > 0), jnp.log(jnp.where(d2 > 0, d2, 1.0)), -jnp.inf)
    all_zero = jnp.all(jnp.isneginf(logits))
    logits = jnp.where(all_zero, jnp.where(open_, 0.0, -jnp.inf), logits)
    j = jnp.argmax(logits + jax.random.gumbel(keys[i], logits.shape))
    d2 = jnp.minimum(d2, factorized_sq_dist(a, h, na, nh, j))
    return d2, chosen.at[j].set(True), picks.at[i].set(j.astype(jnp.int32))

  _, _, picks = jax.lax.fori_loop(1, budget, step, (d2, chosen, picks))
  return picks


def badge(probs, embeddings, labeled_mask, budget: int, key, *, mesh=None) -> np.ndarray:
  """`budget` distinct unlabeled indices by k-means++ seeding on gradient embeddings.

  Args:
    probs: `(n, C)` softmax outputs.
    embeddings: `(n, d)` penultimate features.
    labeled_mask: `(n,)` bool; labeled points are never chosen.
    budget: number of points.
    key: PRNG key for the D^2 draws.
    mesh: optional device mesh to split the rows over (same picks as without).
  """
  candidates = ~np.asarray(labeled_mask, bool)
  if budget > int(candidates.sum()):
    raise ValueError(f"budget {budget} exceeds the {int(candidates.sum())} unlabeled points")
  probs, embeddings = np.asarray(probs, np.float32), np.asarray(embeddings, np.float32)
  if mesh is None:
    arrays = jax.device_put((probs, embeddings, candidates))
  else:
    pad = -probs.shape[0] % mesh.size
    padded = [np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) for x in (probs, embeddings, candidates)]
    arrays = jax.device_put(tuple(padded), parallel.batch_sharded(mesh))
  return np.asarray(_badge(*arrays, int(budget), key))
