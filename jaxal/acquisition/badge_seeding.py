"""BADGE (Ash et al. 2020; ALGORITHMS.md §4): k-means++ seeding on gradient embeddings.

The gradient embedding of point x is `g = (p - onehot(y_hat)) (x) h`, the last layer's
cross-entropy gradient at the predicted label. It is never materialized: with `a = p - e_yhat`,
`|g_i - g_j|^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 <a_i, a_j> <h_i, h_j>`, so each new
center costs two mat-vecs, O(n (C + d)), and memory stays O(n (C + d)).

Seeding runs over unlabeled points only (no labeled centers). The first center is the
largest gradient norm, as in the reference code; each next one is drawn with probability
`D^2 / sum D^2` via the Gumbel-max trick in its ratio form: `argmax(D^2 / E)` with `E = -log
U` exponential, which is `argmax(log D^2 + G)` for the Gumbel draw `G = -log E` that
`jax.random.gumbel(key_i)` makes from the same `U` (one key per step from
`jax.random.split(key, budget)`; no log of `D^2`). If every unchosen point has `D = 0`, the
draw falls back to uniform over the unchosen points.

With a device mesh the rows are split over its `data` axis (padded with rows that are never
candidates). Every step is row-local apart from one argmax, and with JAX's partitionable
threefry the Gumbel noise of row `i` does not depend on the padding, so the picks are the
same as on one device.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import global_arrays, parallel


def gradient_factors(probs):
  """`a = p - onehot(argmax p)` for each row."""
  probs = jnp.asarray(probs, jnp.float32)
  return probs - jax.nn.one_hot(jnp.argmax(probs, axis=-1), probs.shape[-1], dtype=probs.dtype)


def factorized_sq_dist(a, h, na, nh, j, aa=None, row=None):
  """Squared distance from every gradient embedding to embedding `j`, clamped at 0 (`aa`:
  `a @ a[j]` when already computed; `row`: `(a[j], h[j], na[j], nh[j])` when already read)."""
  a_j, h_j, na_j, nh_j = (a[j], h[j], na[j], nh[j]) if row is None else row
  aa = a @ a_j if aa is None else aa
  d2 = na * nh + na_j * nh_j - 2.0 * aa * (h @ h_j)
  return jnp.maximum(d2, 0.0)


_NOISE_BLOCK = 32  # steps whose random draws are generated together
_UNROLL_CLASSES = 32  # up to this many classes, <a_i, a_j> is written out column by column


def _first_max(score):
  """Index of the largest entry, the lowest one among ties (a max and a masked min: XLA:CPU's
  variadic argmax reduction is several times slower)."""
  rows = jnp.arange(score.shape[0], dtype=jnp.int32)
  return jnp.min(jnp.where(score == jnp.max(score), rows, score.shape[0]))


@functools.partial(jax.jit, static_argnames=("budget", "mesh"))
def _badge(probs, embeddings, candidates, budget: int, key, mesh=None):
  """The seeding loop; `mesh`: the rows are split over its `data` axis, and each new center's
  row is read from its owner (`parallel.take_rows`), so that no device gathers all rows."""
  a = gradient_factors(probs)
  h = jnp.asarray(embeddings, jnp.float32)
  n = h.shape[0]
  na, nh = jnp.sum(a * a, axis=1), jnp.sum(h * h, axis=1)
  first = _first_max(jnp.where(candidates, na * nh, -jnp.inf))
  chosen = jnp.zeros_like(candidates).at[first].set(True)
  take = lambda j: parallel.take_rows((a, h, na, nh), j, mesh)
  d2 = factorized_sq_dist(a, h, na, nh, first, row=take(first))
  picks = jnp.zeros((budget,), jnp.int32).at[0].set(first)
  blocks = -(-(budget - 1) // _NOISE_BLOCK)
  keys = jax.random.split(key, budget)
  keys = jnp.concatenate([keys, jax.random.split(keys[0], max(blocks, 1) * _NOISE_BLOCK + 1 - budget)])
  tiny = jnp.finfo(jnp.float32).tiny
  a_t = a.T

  def block(b, carry):
    # Exponential draws `-log U` for a block of steps at once (3x faster than one step at a
    # time); `U` is what `jax.random.gumbel` draws from the same key.
    block_keys = jax.lax.dynamic_slice_in_dim(keys, 1 + b * _NOISE_BLOCK, _NOISE_BLOCK)
    uniform = jax.vmap(lambda k: jax.random.uniform(k, (n,), jnp.float32, minval=tiny, maxval=1.0))(block_keys)
    exp_noise = -jnp.log(uniform)

    def step(t, carry):
      d2, chosen, picks = carry
      open_ = jnp.logical_and(candidates, jnp.logical_not(chosen))
      score = jnp.where(open_, d2 / exp_noise[t], -1.0)
      top = jnp.max(score)
      j = jax.lax.cond(top > 0, lambda: jnp.min(jnp.where(score == top, jnp.arange(n, dtype=jnp.int32), n)),
                       lambda: _first_max(jnp.where(open_, 1.0 / exp_noise[t], -1.0)))
      aa, row = None, take(j)
      if a.shape[1] <= _UNROLL_CLASSES:
        # <a_i, a_j> as C fused multiply-adds over the columns (a K=C dot was a separate,
        # slower op).
        aa = a_t[0] * row[0][0]
        for c in range(1, a.shape[1]):
          aa = aa + a_t[c] * row[0][c]
      new = factorized_sq_dist(a, h, na, nh, j, aa, row)
      return jnp.minimum(d2, new), chosen.at[j].set(True), picks.at[1 + b * _NOISE_BLOCK + t].set(j)

    return jax.lax.fori_loop(0, jnp.minimum(_NOISE_BLOCK, budget - 1 - b * _NOISE_BLOCK), step, carry)

  _, _, picks = jax.lax.fori_loop(0, blocks, block, (d2, chosen, picks))
  return picks


def badge(probs, embeddings, labeled_mask, budget: int, key, *, mesh=None) -> np.ndarray:
  """`budget` distinct unlabeled indices by k-means++ seeding on gradient embeddings.

  Args:
    probs: `(n, C)` softmax outputs.
    embeddings: `(n, d)` penultimate features.
    labeled_mask: `(n,)` bool; labeled points are never chosen.
    budget: number of points.
    key: PRNG key for the D^2 draws.
    mesh: optional device mesh to split the rows over (same picks as without, with Auto or
      Explicit axes: see `parallel.as_auto_mesh`). `probs` and `embeddings` whose rows are
      already split over a mesh's `data` axis (`global_arrays.global_rows`: a share per
      process) run so in place; rows past `labeled_mask`'s length are padding, never picked,
      and every process gets the picks.
  """
  candidates = ~np.asarray(labeled_mask, bool)
  if budget > int(candidates.sum()):
    raise ValueError(f"budget {budget} exceeds the {int(candidates.sum())} unlabeled points")
  row_mesh = global_arrays.row_mesh(embeddings)
  if row_mesh is not None:  # rows already split over a mesh (e.g. a share per process): used in place
    probs, embeddings = parallel.on_auto_mesh((probs, embeddings))
    if global_arrays.row_mesh(probs) != row_mesh or probs.shape[0] != embeddings.shape[0]:
      raise ValueError("badge: probs and embeddings must have their rows split over the same mesh")
    arrays = (probs.astype(jnp.float32), embeddings.astype(jnp.float32),
              global_arrays.rows_beside(candidates, embeddings.shape[0], row_mesh))
  elif mesh is None:  # explicit transfers only (the selection runs under jax.transfer_guard("disallow"))
    arrays = (parallel.to_device(probs, jnp.float32), parallel.to_device(embeddings, jnp.float32),
              jax.device_put(candidates))
  else:
    probs, embeddings = (np.asarray(jax.device_get(v), np.float32) for v in (probs, embeddings))
    pad = -probs.shape[0] % mesh.size
    padded = [np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) for x in (probs, embeddings, candidates)]
    arrays = jax.device_put(tuple(padded), parallel.batch_sharded(mesh))
  split = parallel.split_mesh(arrays[1], row_mesh or mesh)
  return np.asarray(global_arrays.fetch(_badge(*arrays, int(budget), key, split)))
