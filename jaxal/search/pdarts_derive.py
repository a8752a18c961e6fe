"""P-DARTS's discrete steps (ALGORITHMS.md §8): pruning ops between stages and deriving the
final cell with the skip-connect limit. Pure numpy on the stages' softmax(α).

Ties follow the reference: pruning drops the first minimum (repeated argmin), and edge
ranking is a stable ascending sort keeping the last two, so later indices win ties.
"""

import numpy as np

from jaxal.models import darts

PRIMITIVES = darts.PRIMITIVES
NONE, SKIP = darts.NONE, darts.SKIP

Switches = tuple[tuple[int, ...], ...]


def lowest(weights, k: int) -> list[int]:
  """Slots of the `k` smallest weights, by repeated argmin (the first minimum goes first)."""
  w = np.array(weights, np.float64)
  out = []
  for _ in range(k):
    i = int(np.argmin(w))
    out.append(i)
    w[i] = np.inf
  return out


def lowest_no_none(weights, ops, k: int) -> list[int]:
  """Like `lowest`, but `none` (if on, always slot 0) is dropped first and counts towards k."""
  if NONE not in ops:
    return lowest(weights, k)
  return [0] + [i + 1 for i in lowest(np.asarray(weights)[1:], k - 1)]


def prune(switches: Switches, probs: np.ndarray, k: int, *, drop_none: bool) -> Switches:
  """Switches off the `k` weakest ops of every edge (`drop_none`: `none` goes first)."""
  out = []
  for ops, p in zip(switches, probs):
    drop = set(lowest_no_none(p, ops, k) if drop_none else lowest(p, k))
    out.append(tuple(o for slot, o in enumerate(ops) if slot not in drop))
  return tuple(out)


def top_two_edges(strength, nodes: int = 4) -> list[int]:
  """Per intermediate node, its two strongest incoming edges (stable sort, later wins ties)."""
  keep, start = [], 0
  for k in range(nodes):
    n = 2 + k
    order = sorted(range(n), key=lambda i: strength[start + i])
    keep += sorted([start + order[-1], start + order[-2]])
    start += n
  return keep


def _derive_once(switches: Switches, probs: np.ndarray, nodes: int) -> dict[int, int]:
  """`{edge: op}` for the kept edges: each edge's top non-`none` op, two edges per node."""
  chosen = {}
  for e, (ops, p) in enumerate(zip(switches, probs)):
    drop = set(lowest_no_none(p, ops, len(ops) - 1))
    chosen[e] = next(o for slot, o in enumerate(ops) if slot not in drop)
  strength = [float(np.max(p)) for p in probs]
  return {e: chosen[e] for e in top_two_edges(strength, nodes)}


def derive_cell(switches: Switches, probs: np.ndarray, *, max_skips: int | None = None, nodes: int = 4):
  """Derives a discrete cell from the last stage's switches and softmax(α).

  Args:
    switches: the ops on per edge during the last stage.
    probs: `(edges, ops on)` softmax weights of that stage.
    max_skips: the skip-connect limit M (None: no limit; the reduction cell has none).
  Returns:
    `(edges, removed)`: `[[op name, input], ...]` two per node in edge order, and the
    number of skip-connect weights zeroed to meet the limit.
  """
  probs = np.array(probs, np.float64)
  for e, ops in enumerate(switches):
    if NONE in ops:
      probs[e, 0] = 0.0  # `none` never counts towards an edge's strength
  kept = _derive_once(switches, probs, nodes)
  removed = 0
  while max_skips is not None and sum(o == SKIP for o in kept.values()) > max_skips:
    skip_edges = [e for e, o in kept.items() if o == SKIP]
    weakest = min(skip_edges, key=lambda e: (probs[e, switches[e].index(SKIP)], e))
    probs[weakest, switches[weakest].index(SKIP)] = 0.0
    removed += 1
    kept = _derive_once(switches, probs, nodes)
    if removed > len(switches):
      raise RuntimeError("could not meet the skip-connect limit")
  inputs = darts.edge_inputs(nodes)
  return [[PRIMITIVES[kept[e]], inputs[e][1]] for e in sorted(kept)], removed
