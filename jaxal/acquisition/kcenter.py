"""Greedy k-center (core-set; Sener & Savarese 2018; ALGORITHMS.md §3): the public entry.

`kcenter_greedy` picks farthest-first from the labeled centers, on device in one jitted
loop. The unpruned kernel, its lookahead and its guarded update are in `kcenter_dense`; the
pruned kernel (same picks, fewer distances computed) is in `kcenter_pruned`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import compiles, global_arrays, parallel
from jaxal.acquisition.kcenter_dense import _guard_cap, _kcenter
from jaxal.acquisition.kcenter_pruned import _kcenter_pruned


def kcenter_greedy(embeddings, labeled_mask, budget: int, *, block: int | None = None,
                   storage_dtype=jnp.float32, mesh=None, prune: bool = False,
                   dense_fraction: float = 0.05, proj: int = 16, probes: int = 8, probe_fraction: float = 0.3,
                   lookahead: int = 32, with_stats: bool = False):
  """`budget` unlabeled indices chosen farthest-first from the labeled centers.

  Args:
    embeddings: `(n, d)` float features (penultimate layer).
    labeled_mask: `(n,)` bool, the initial centers.
    budget: number of points to pick (at most the number of unlabeled points).
    block: labeled centers per block in the initial nearest-center pass (default: 256,
      fewer above n = 32,768 so that each `(n, block)` temporary stays within 32 MB, at least 16).
    storage_dtype: dtype the embeddings are stored and read in (float32 or bfloat16).
    mesh: optional device mesh (Auto or Explicit axes: the same picks, see
      `parallel.as_auto_mesh`); the rows are then split over its `data` axis (padded to a
      multiple of the device count with rows that can never be picked), and each device
      scans its own share. The picks are the same as on one device. Not combined with
      `prune` (the unpruned sharded kernel runs; the picks are the same). Embeddings whose
      rows are already split over a mesh's `data` axis (`global_arrays.global_rows`: a
      share per process) run so in place, whatever `mesh`; rows past `labeled_mask`'s
      length are padding, never picked, and every process gets the picks.
    prune: screen the (row, new center) pairs by a projected lower bound before reading any
      row, and compute distances only for the pairs that may change (same picks).
    dense_fraction: with `prune`, a step takes the plain update when more than
      `dense_fraction * n * lookahead` pairs pass the screen. A screened pair is read by a
      gather, far slower per pair than the plain update's GEMM, so the screen pays only
      where a few percent of the pairs pass (benchmarks/NOTES.md §12).
    proj: with `prune`, dimension of the projected coordinates the bound uses.
    probes: with `prune`, the kernel first bounds which rows of a 64-row sample the
      `probes` sample rows farthest from the labeled set could bring closer; when that is
      more than `probe_fraction` of them (as on isotropic data, where the screen passes
      nearly everything), it starts as the plain kernel does and every step takes the
      plain update. The picks are the same either way. 0 always screens.
    probe_fraction: with `prune` and `probes`, the probe's threshold above.
    lookahead: each step ranks the `lookahead` largest entries, replays the one-at-a-time
      greedy among them (their distances to each other are all it needs) for as long as its
      next pick provably beats every other row, and takes those picks at once: the same
      picks in the same order, with one read of the rows for several picks. 1 takes one
      pick per step. The working space is O(n * lookahead).
    with_stats: also return `{"fraction_read": ...}`, the (row, center) distances the
      greedy steps computed or streamed, as a share of one pass over all rows per pick (1.0
      without `prune`), `"steps"`, the greedy loop's iterations (fewer than `budget` when the
      lookahead takes several picks per step), and with `prune`, `"screened"`: whether the
      probe chose the screen.
  Returns:
    `(budget,)` int32 indices in pick order (and the stats dict with `with_stats`).
  """
  labeled_mask = np.asarray(labeled_mask, bool)
  if budget > int((~labeled_mask).sum()):
    raise ValueError(f"budget {budget} exceeds the {int((~labeled_mask).sum())} unlabeled points")
  row_mesh = global_arrays.row_mesh(embeddings)
  n = labeled_mask.size if row_mesh is not None else np.shape(embeddings)[0]
  if block is None:
    block = int(min(256, max(16, 2**23 // max(n, 1))))
  valid = np.ones(n, bool)
  guard_cap = 0
  if row_mesh is not None:  # rows already split over a mesh (e.g. a share per process): used in place
    x = parallel.on_auto_mesh(embeddings).astype(storage_dtype)
    labeled_mask, valid = (global_arrays.rows_beside(v, x.shape[0], row_mesh) for v in (labeled_mask, valid))
  elif mesh is not None:
    pad = -n % mesh.size
    x = np.asarray(jax.device_get(embeddings))
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    labeled_mask = np.concatenate([labeled_mask, np.zeros(pad, bool)])
    valid = np.concatenate([valid, np.zeros(pad, bool)])
    x, labeled_mask, valid = jax.device_put((x, labeled_mask, valid), parallel.batch_sharded(mesh))
    x = x.astype(storage_dtype)
  else:  # explicit transfers only (the selection runs under jax.transfer_guard("disallow"))
    x, (labeled_mask, valid) = parallel.to_device(embeddings, storage_dtype), jax.device_put((labeled_mask, valid))
    guard_cap = _guard_cap(n) if x.dtype == jnp.float32 else 0
    if prune:
      call = ((x, labeled_mask, valid, int(budget), int(block), max(1, int(dense_fraction * n * lookahead)),
               max(1, min(int(proj), x.shape[1]))),
              dict(guard_cap=guard_cap, probes=min(int(probes), n), probe_fraction=float(probe_fraction),
                   lookahead=int(lookahead)))
      compiles.compile_ahead(_kcenter_pruned, *call[0], **call[1])
      picks, read, screened, steps = jax.device_get(_kcenter_pruned(*call[0], **call[1]))
      stats = {"fraction_read": float(read), "screened": bool(screened), "steps": int(steps)}
      return (np.asarray(picks), stats) if with_stats else np.asarray(picks)
  call = (x, labeled_mask, valid, int(budget), int(block), guard_cap, int(lookahead),
          parallel.split_mesh(x, row_mesh or mesh))
  compiles.compile_ahead(_kcenter, *call)
  picks, steps = global_arrays.fetch(_kcenter(*call))
  picks = np.asarray(picks)
  return (picks, {"fraction_read": 1.0, "steps": int(steps)}) if with_stats else picks
