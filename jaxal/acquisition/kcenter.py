"""Greedy k-center (core-set; Sener & Savarese 2018; ALGORITHMS.md §3), jitted end to end.

Farthest-first traversal over Euclidean distance, starting from the labeled set as centers:
each pick is the point whose distance to its nearest center is largest, then that point
becomes a center. The whole loop runs on device (`lax.fori_loop`), with one compilation per
`(n, d, budget)` shape whatever the labeled count.

Memory is O(n*d) for the embeddings plus O(n) working space: the initial distances to the
labeled centers are computed a block of centers at a time with the expanded-norm GEMM
(clamped at 0), and each greedy step computes its distance row directly as
`sum((x - x_u)**2)`, exact and without cancellation. Squared distances are kept (argmax is
the same). Ties go to the lowest index. Picked and labeled points get `-inf`, so duplicates
can never be picked twice. With no labeled point, the first center is the point farthest
from the mean (an index-independent rule, so selections are permutation-equivariant).
`storage_dtype=jnp.bfloat16` halves the bytes read per pick; distances still accumulate in
float32.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import parallel


def _init_min_d2(x, labeled_mask, block):
  """Squared distance of every point to its nearest labeled point (inf when none)."""
  n = x.shape[0]
  xf = x.astype(jnp.float32)
  sq = jnp.sum(xf * xf, axis=1)
  num_labeled = jnp.sum(labeled_mask)
  labeled_idx = jnp.nonzero(labeled_mask, size=n, fill_value=0)[0]
  num_blocks = (num_labeled + block - 1) // block
  padded_idx = jnp.concatenate([labeled_idx, jnp.zeros((block,), labeled_idx.dtype)])

  def body(b, min_d2):
    idx = jax.lax.dynamic_slice(padded_idx, (b * block,), (block,))
    valid = (b * block + jnp.arange(block)) < num_labeled
    c = xf[idx]
    d2 = sq[:, None] + jnp.sum(c * c, axis=1)[None, :] - 2.0 * (xf @ c.T)
    d2 = jnp.where(valid[None, :], jnp.maximum(d2, 0.0), jnp.inf)
    return jnp.minimum(min_d2, jnp.min(d2, axis=1))

  return jax.lax.fori_loop(0, num_blocks, body, jnp.full((n,), jnp.inf, jnp.float32))


@functools.partial(jax.jit, static_argnames=("budget", "block"))
def _kcenter(x, labeled_mask, valid, budget: int, block: int):
  min_d2 = _init_min_d2(x, labeled_mask, block)
  # The labeled set's own entries are 0 up to round-off: exclude them explicitly.
  min_d2 = jnp.where(labeled_mask, -jnp.inf, min_d2)
  any_labeled = jnp.any(labeled_mask)
  xf = x.astype(jnp.float32)
  xf_mean = jnp.sum(jnp.where(valid[:, None], xf, 0.0), axis=0) / jnp.sum(valid)
  from_mean = jnp.sum((xf - xf_mean) ** 2, axis=1)
  # Without labeled points every entry is +inf: rank by distance from the mean instead.
  min_d2 = jnp.where(any_labeled, min_d2, from_mean)
  min_d2 = jnp.where(valid, min_d2, -jnp.inf)  # padding rows (sharded runs) are never picked

  def step(i, carry):
    min_d2, picks = carry
    u = jnp.argmax(min_d2)
    d2 = jnp.sum((x.astype(jnp.float32) - x[u].astype(jnp.float32)) ** 2, axis=1)
    first_without_labels = jnp.logical_and(i == 0, jnp.logical_not(any_labeled))
    min_d2 = jnp.where(first_without_labels, d2, jnp.minimum(min_d2, d2))
    min_d2 = min_d2.at[u].set(-jnp.inf)  # picked and labeled points stay at -inf
    return min_d2, picks.at[i].set(u.astype(jnp.int32))

  _, picks = jax.lax.fori_loop(0, budget, step, (min_d2, jnp.zeros((budget,), jnp.int32)))
  return picks


def kcenter_greedy(embeddings, labeled_mask, budget: int, *, block: int = 256,
                   storage_dtype=jnp.float32, mesh=None) -> np.ndarray:
  """`budget` unlabeled indices chosen farthest-first from the labeled centers.

  Args:
    embeddings: `(n, d)` float features (penultimate layer).
    labeled_mask: `(n,)` bool, the initial centers.
    budget: number of points to pick (at most the number of unlabeled points).
    block: labeled centers per GEMM block in the initial distance pass.
    storage_dtype: dtype the embeddings are stored and read in (float32 or bfloat16).
    mesh: optional device mesh; the rows are then split over its `data` axis (padded to a
      multiple of the device count with rows that can never be picked), and each device
      scans its own share. The picks are the same as on one device.
  Returns:
    `(budget,)` int32 indices in pick order.
  """
  labeled_mask = np.asarray(labeled_mask, bool)
  if budget > int((~labeled_mask).sum()):
    raise ValueError(f"budget {budget} exceeds the {int((~labeled_mask).sum())} unlabeled points")
  x = np.asarray(embeddings)
  n = x.shape[0]
  valid = np.ones(n, bool)
  if mesh is not None:
    pad = -n % mesh.size
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    labeled_mask = np.concatenate([labeled_mask, np.zeros(pad, bool)])
    valid = np.concatenate([valid, np.zeros(pad, bool)])
    rows = parallel.batch_sharded(mesh)
    x, labeled_mask, valid = jax.device_put((jnp.asarray(x, storage_dtype), labeled_mask, valid), rows)
  else:
    x = jnp.asarray(x, storage_dtype)
  return np.asarray(_kcenter(x, jnp.asarray(labeled_mask), jnp.asarray(valid), int(budget), int(block)))
