"""Average-linkage agglomerative clustering, for Cluster-Margin.

Both paths run the nearest-neighbour chain (Murtagh 1983; the algorithm scipy's
`linkage(method="average")` uses) with the Lance-Williams rule
`d(A+B, C) = (|A| d(A, C) + |B| d(B, C)) / (|A| + |B|)`: the merged cluster takes the lower
slot, the higher one retires. Time O(m^2): about 3m chain steps of O(m) vector work each.

* `average_linkage_points(x)`, the exact path over pool points, on the host: a float32
  condensed matrix (lower triangle, row-packed: entry (i, j), j < i, at i(i-1)/2 + j), 2 m^2
  bytes (16,384 points: 0.5 GiB; 50,000: 4.7 GiB), and O(m) besides. Each step reads the
  tip's row over the active slots only (a gather; half of it one page per element, so the
  matrix asks for 2 MiB pages), and a merge writes one row back. The rows of the two chain
  members below the tip are kept (updated at each merge), since a merge and the step after
  it read them again; that cut the 16k-point time by a quarter. Pure numpy, one thread: the
  chain is sequential.
* `average_linkage(dist, sizes)`, on device, one `lax.while_loop` over a full `(m, m)` float32
  matrix updated in place (4 m^2 bytes). Leaves may carry weights: a leaf of weight w counts
  as w points at one location, which is how the large-pool path clusters k-means centroids.

Ties (both paths): a chain's tip prefers its predecessor among equally near clusters (which
guarantees termination), otherwise the lowest slot; an empty chain starts at the lowest
active slot. Merges come back in chain order; `cut` sorts them by height (stable), as scipy
does before labelling.
"""

import functools
import mmap

import jax
import jax.numpy as jnp
import numpy as np


@functools.partial(jax.jit, static_argnames=("chunk",))
def euclidean_matrix(x, *, chunk: int = 1024):
  """`(n, n)` float32 Euclidean distances, built `chunk` rows at a time from centered data
  (expanded form, clamped at 0; the diagonal is exact 0)."""
  x = jnp.asarray(x, jnp.float32)
  x = x - jnp.mean(x, axis=0)
  sq = jnp.sum(x * x, axis=1)
  n = x.shape[0]
  chunk = min(chunk, n)
  steps = -(-n // chunk)

  def body(i, out):
    start = jnp.minimum(i * chunk, n - chunk)
    rows = jax.lax.dynamic_slice_in_dim(x, start, chunk)
    d2 = jax.lax.dynamic_slice_in_dim(sq, start, chunk)[:, None] + sq[None] - 2.0 * rows @ x.T
    d = jnp.sqrt(jnp.maximum(d2, 0.0))
    d = jnp.where(jnp.arange(n)[None] == (start + jnp.arange(chunk))[:, None], 0.0, d)
    return jax.lax.dynamic_update_slice_in_dim(out, d, start, axis=0)

  return jax.lax.fori_loop(0, steps, body, jnp.zeros((n, n), jnp.float32))


def _nn_chain_impl(dist, sizes, active):
  m = dist.shape[0]
  slots = jnp.arange(m, dtype=jnp.int32)
  num_merges = jnp.sum(active).astype(jnp.int32) - 1
  state = dict(d=dist, size=sizes.astype(jnp.float32), active=active, chain=jnp.zeros(m, jnp.int32),
               length=jnp.int32(0), merges=jnp.full((max(m - 1, 1), 2), -1, jnp.int32),
               heights=jnp.zeros(max(m - 1, 1), jnp.float32), done=jnp.int32(0),
               pending=dist[0], pending_at=jnp.int32(0))

  def step(s):
    # The previous step's row/column write comes first, from a loop-carried buffer: written
    # in the step that computed it, XLA copied the whole matrix every step.
    d = jax.lax.dynamic_update_slice_in_dim(s["d"], s["pending"][None], s["pending_at"], axis=0)
    d = jax.lax.dynamic_update_slice_in_dim(d, s["pending"][:, None], s["pending_at"], axis=1)
    chain, length = s["chain"], s["length"]
    chain = jnp.where(length == 0, chain.at[0].set(jnp.argmax(s["active"]).astype(jnp.int32)), chain)
    length = jnp.maximum(length, 1)
    a = chain[length - 1]
    prev = jnp.where(length >= 2, chain[jnp.maximum(length - 2, 0)], -1)
    row = jnp.where(s["active"] & (slots != a), d[a], jnp.inf)
    b = jnp.argmin(row).astype(jnp.int32)
    b = jnp.where((prev >= 0) & (row[jnp.maximum(prev, 0)] <= row[b]), prev, b)
    # A merge puts A+B in slot `lo` (Lance-Williams row, written next step) and retires `hi`;
    # a push rewrites row `lo` with its own values.
    merge = b == prev
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    sa, sb = s["size"][a], s["size"][b]
    new = jnp.where(merge, (sa * d[a] + sb * d[b]) / (sa + sb), d[lo])
    at = jnp.where(merge, s["done"], s["merges"].shape[0])  # out of range: dropped
    return dict(d=d, size=s["size"].at[lo].set(jnp.where(merge, sa + sb, s["size"][lo])),
                active=s["active"].at[hi].set(s["active"][hi] & ~merge),
                chain=jnp.where(merge, chain, chain.at[length].set(b)),
                length=jnp.where(merge, length - 2, length + 1),
                merges=s["merges"].at[at].set(jnp.stack([a, b]), mode="drop"),
                heights=s["heights"].at[at].set(row[b], mode="drop"), done=s["done"] + merge,
                pending=new, pending_at=lo)

  out = jax.lax.while_loop(lambda s: s["done"] < num_merges, step, state)
  return out["merges"], out["heights"], num_merges, out["d"]  # `d` returned so a donated input is reused


_nn_chain = jax.jit(_nn_chain_impl)
_nn_chain_donating = jax.jit(_nn_chain_impl, donate_argnums=0)


def average_linkage(dist, sizes=None, active=None, *, donate: bool = False):
  """Average-linkage merges of `m` leaves from their `(m, m)` distance matrix.

  Args:
    dist: `(m, m)` symmetric distances (device or host).
    sizes: `(m,)` leaf weights (default 1 each).
    active: `(m,)` bool, leaves to cluster (default all; e.g. drop empty k-means cells).
    donate: let the loop update `dist` (a device array the caller drops) in place, saving a copy.
  Returns:
    host `(merges (r, 2) int32 leaf ids, heights (r,) float32)` in chain order, `r` = active - 1:
    merge `j` joins the clusters holding leaves `merges[j, 0]` and `merges[j, 1]` at
    average-linkage distance `heights[j]`.
  """
  m = dist.shape[0]
  # Explicit transfers only (a round's selection runs under `jax.transfer_guard("disallow")`).
  sizes = np.ones(m, np.float32) if sizes is None else np.asarray(jax.device_get(sizes), np.float32)
  active = np.ones(m, bool) if active is None else np.asarray(jax.device_get(active), bool)
  if not isinstance(dist, jax.Array):
    dist = jax.device_put(np.asarray(dist, np.float32))
  run = _nn_chain_donating if donate else _nn_chain
  merges, heights, r, _ = run(dist, jax.device_put(sizes), jax.device_put(active))
  merges, heights, r = jax.device_get((merges, heights, r))
  return np.asarray(merges[:r], np.int32), np.asarray(heights[:r], np.float32)


def _huge_page_array(size: int) -> np.ndarray:
  """A float32 array in anonymous memory the kernel may back with 2 MiB pages (Linux THP in
  "madvise" mode): the chain's column reads hit one page per element, and 4 KiB pages made
  each a TLB miss."""
  if size == 0 or not hasattr(mmap, "MADV_HUGEPAGE"):
    return np.empty(size, np.float32)
  buf = mmap.mmap(-1, 4 * size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
  buf.madvise(mmap.MADV_HUGEPAGE)
  return np.frombuffer(buf, np.float32, size)


def condensed_euclidean(x, *, block_bytes: int = 1 << 28, huge_pages: bool = True) -> np.ndarray:
  """Host float32 condensed Euclidean distances (row-packed lower triangle, see module doc),
  computed from centered data a block of rows at a time (expanded form, clamped at 0), so the
  transient memory is about `block_bytes` besides the 2 n(n-1) byte result."""
  x = np.asarray(x, np.float32)
  x = x - x.mean(axis=0)
  sq = np.einsum("ij,ij->i", x, x)
  n = x.shape[0]
  starts = _row_starts(n + 1)
  out = _huge_page_array(n * (n - 1) // 2) if huge_pages else np.empty(n * (n - 1) // 2, np.float32)
  chunk = max(1, block_bytes // (8 * max(n, 1)))
  for start in range(1, n, chunk):
    stop = min(n, start + chunk)
    block = x[start:stop] @ x[:stop].T
    block *= -2.0
    block += sq[start:stop, None]
    block += sq[None, :stop]
    np.sqrt(np.maximum(block, 0.0, out=block), out=block)
    out[starts[start]:starts[stop]] = block[np.arange(stop)[None] < np.arange(start, stop)[:, None]]
  return out


def _row_starts(n: int) -> np.ndarray:
  """Offset of row i of the row-packed lower triangle: i (i - 1) / 2 (int64)."""
  i = np.arange(n, dtype=np.int64)
  return i * (i - 1) // 2


def average_linkage_points(x, *, block_bytes: int = 1 << 28, huge_pages: bool = True):
  """Exact average-linkage merges of the `(m, d)` points `x` (host; see module doc).

  Returns:
    `(merges (m - 1, 2) int32, heights (m - 1,) float32)`, as `average_linkage`.
  """
  x = np.asarray(jax.device_get(x), np.float32)
  m = x.shape[0]
  cond = condensed_euclidean(x, block_bytes=block_bytes, huge_pages=huge_pages)
  starts = _row_starts(m)
  slots, slot_starts = np.arange(m, dtype=np.int64), starts.copy()  # the active slots, ascending
  size = np.ones(m, np.float32)
  merges, heights = np.zeros((max(m - 1, 0), 2), np.int32), np.zeros(max(m - 1, 0), np.float32)
  chain, done = [], 0
  kept = {}  # the rows of the chain's two members below the tip, over the current slots

  def row(a, at):
    """d(a, s) for the active slots s, with +inf at a's own position `at`."""
    if a in kept:
      return kept[a]
    d = cond[np.concatenate((starts[a] + slots[:at], [0], slot_starts[at + 1:] + a))]
    d[at] = np.inf
    return d

  while done < m - 1:
    if not chain:
      chain.append(int(slots[0]))
    a = chain[-1]
    at = int(np.searchsorted(slots, a))
    d_a = row(a, at)
    near = int(np.argmin(d_a))
    prev_at = int(np.searchsorted(slots, chain[-2])) if len(chain) >= 2 else -1
    if prev_at < 0 or d_a[prev_at] > d_a[near]:
      # A merge of the new tip with `a` reads a's row again, and then the row below: keep both.
      kept = {**{c: kept[c] for c in chain[-2:-1] if c in kept}, a: d_a}
      chain.append(int(slots[near]))
      continue
    b = chain[-2]
    del chain[-2:]
    sa, sb = size[a], size[b]
    new = (sa * d_a + sb * row(b, prev_at)) / (sa + sb)
    merges[done], heights[done] = (a, b), d_a[prev_at]
    done += 1
    (lo, lo_at), hi_at = min((a, at), (b, prev_at)), max(at, prev_at)
    size[lo] = sa + sb
    slots, slot_starts, new = (np.delete(v, hi_at) for v in (slots, slot_starts, new))
    kept = {c: np.delete(d, hi_at) for c, d in kept.items() if c != a and c != b}
    for c, d in kept.items():
      d[lo_at] = new[np.searchsorted(slots, c)]
    keep = np.arange(slots.size) != lo_at
    cond[np.where(slots < lo, starts[lo] + slots, slot_starts + lo)[keep]] = new[keep]
  return merges, heights


def _find(parent, i):
  while parent[i] != i:
    parent[i] = parent[parent[i]]
    i = parent[i]
  return i


def cut(merges, heights, num_leaves: int, *, threshold: float | None = None, num_clusters: int | None = None,
        active=None) -> np.ndarray:
  """Flat clusters `(num_leaves,)` int32, numbered 0.. in order of their first leaf.

  With `threshold` (the paper's epsilon): apply every merge at height <= threshold (average
  linkage is monotone, so this is the dendrogram cut at that height). With `num_clusters`:
  apply merges lowest first (stable) until that many clusters of the active leaves remain.
  Inactive leaves get -1.
  """
  order = np.argsort(heights, kind="stable")
  if threshold is not None:
    order = order[heights[order] <= threshold]
  else:
    order = order[:max(0, len(heights) + 1 - int(num_clusters))]
  parent = list(range(num_leaves))
  for j in order:
    ra, rb = _find(parent, int(merges[j, 0])), _find(parent, int(merges[j, 1]))
    parent[max(ra, rb)] = min(ra, rb)
  roots = np.array([_find(parent, i) for i in range(num_leaves)])
  keep = np.ones(num_leaves, bool) if active is None else np.asarray(active, bool)
  labels = np.full(num_leaves, -1, np.int32)
  labels[keep] = np.unique(roots[keep], return_inverse=True)[1]  # roots: each cluster's lowest leaf
  return labels


def scipy_linkage_matrix(merges, heights, num_leaves: int) -> np.ndarray:
  """The merges as scipy's `(m - 1, 4)` linkage matrix `Z` (for comparisons and dendrograms)."""
  order = np.argsort(heights, kind="stable")
  parent = list(range(num_leaves))
  node = list(range(num_leaves))
  size = [1] * num_leaves
  z = np.zeros((len(order), 4))
  for row, j in enumerate(order):
    ra, rb = _find(parent, int(merges[j, 0])), _find(parent, int(merges[j, 1]))
    a, b = sorted((node[ra], node[rb]))
    z[row] = a, b, heights[j], size[ra] + size[rb]
    root = min(ra, rb)
    parent[max(ra, rb)] = root
    node[root], size[root] = num_leaves + row, size[ra] + size[rb]
  return z
