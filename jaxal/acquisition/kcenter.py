"""Greedy k-center (core-set; Sener & Savarese 2018; ALGORITHMS.md §3): the public entry.

`kcenter_greedy` picks farthest-first from the labeled centers, on device in one jitted
loop. The unpruned kernel and its guarded GEMV step are in `kcenter_dense`; the kd-tree
pruned kernel (same picks, fewer rows read) is in `kcenter_pruned`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import parallel
from jaxal.acquisition.kcenter_dense import _guard_cap, _kcenter
from jaxal.acquisition.kcenter_pruned import _kcenter_pruned


def kcenter_greedy(embeddings, labeled_mask, budget: int, *, block: int | None = None,
                   storage_dtype=jnp.float32, mesh=None, prune: bool = False, tile: int = 32,
                   dense_fraction: float = 0.3, proj: int = 16, probes: int = 8, with_stats: bool = False):
  """`budget` unlabeled indices chosen farthest-first from the labeled centers.

  Args:
    embeddings: `(n, d)` float features (penultimate layer).
    labeled_mask: `(n,)` bool, the initial centers.
    budget: number of points to pick (at most the number of unlabeled points).
    block: labeled centers per GEMM block in the initial distance pass (default: 256, fewer
      above n = 262,144 so that an `(n, block)` block stays within 256 MB).
    storage_dtype: dtype the embeddings are stored and read in (float32 or bfloat16).
    mesh: optional device mesh; the rows are then split over its `data` axis (padded to a
      multiple of the device count with rows that can never be picked), and each device
      scans its own share. The picks are the same as on one device. Not combined with
      `prune` (the unpruned sharded kernel runs; the picks are the same).
    prune: skip row tiles that a projected lower bound proves unchanged (same picks).
    tile: rows per tile (kd-tree leaf) for `prune`, at most.
    dense_fraction: with `prune`, a step reads every row when more than this fraction of
      tiles needs reading.
    proj: with `prune`, dimension of the projected coordinates the bounds use.
    probes: with `prune`, the kernel first bounds which rows the `probes` farthest points
      could bring closer; when that is more than half of `dense_fraction` of the rows (as
      on isotropic data, where no step skips anything), it runs the plain loop instead of
      building the tree. The picks are the same either way. 0 always builds the tree.
    with_stats: also return `{"fraction_read": ...}`, the share of row reads the greedy
      steps did (1.0 without `prune`), and with `prune`, `"tree"`: whether the probe chose
      the pruned loop.
  Returns:
    `(budget,)` int32 indices in pick order (and the stats dict with `with_stats`).
  """
  labeled_mask = np.asarray(labeled_mask, bool)
  if budget > int((~labeled_mask).sum()):
    raise ValueError(f"budget {budget} exceeds the {int((~labeled_mask).sum())} unlabeled points")
  x = np.asarray(embeddings)
  n = x.shape[0]
  if block is None:
    block = int(min(256, max(16, 2**26 // max(n, 1))))
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
    guard_cap = _guard_cap(n) if x.dtype == jnp.float32 else 0
    if prune:
      group = 4
      num_tiles = 2 ** max(0, int(np.ceil(np.log2(max(n / tile, 1.0)))))
      cap = max(group, int(dense_fraction * num_tiles) // group * group)
      picks, read, tree = _kcenter_pruned(x, jnp.asarray(labeled_mask), jnp.asarray(valid), int(budget), int(block),
                                    int(tile), group, cap, max(1, min(int(proj), x.shape[1])), guard_cap=guard_cap,
                                    probes=min(int(probes), n), probe_fraction=float(dense_fraction) / 2)
      picks = np.asarray(picks)
      stats = {"fraction_read": float(read), "tree": bool(tree)}
      return (picks, stats) if with_stats else picks
    picks = _kcenter(x, jnp.asarray(labeled_mask), jnp.asarray(valid), int(budget), int(block), guard_cap)
    picks = np.asarray(picks)
    return (picks, {"fraction_read": 1.0}) if with_stats else picks
  picks = np.asarray(_kcenter(x, labeled_mask, valid, int(budget), int(block)))
  return (picks, {"fraction_read": 1.0}) if with_stats else picks
