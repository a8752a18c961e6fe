"""Round-robin selection over groups, on device: the order class-balanced selection and
Cluster-Margin share.

Round `r` takes, from every group with more than `r` eligible points, its `r`-th point in the
group's own order (`within`, ascending, ties to the lower index); inside a round the taken
points follow `round_keys` (ascending, lexicographic; ties to the lower index). A group that
runs out of points simply drops out of later rounds, so the others fill the budget. The
whole order is one sort of `(rank in group, *round_keys, index)`, with static shapes.
"""

import jax.numpy as jnp


def rank_in_group(group, within, eligible):
  """Each eligible point's 0-based rank inside its group by `(within, index)` ascending;
  ineligible points get `n` (after every eligible one).

  Args:
    group: `(n,)` int group ids (any range).
    within: `(n,)` order inside a group, ascending.
    eligible: `(n,)` bool.
  """
  n = group.shape[0]
  index = jnp.arange(n, dtype=jnp.int32)
  # Ineligible points form one extra group placed after all others.
  gmax = jnp.max(jnp.where(eligible, group, 0)) + 1
  g = jnp.where(eligible, group, gmax).astype(jnp.int32)
  order = jnp.lexsort((index, within, g))
  g_sorted = g[order]
  first = jnp.searchsorted(g_sorted, g_sorted, side="left").astype(jnp.int32)
  rank = jnp.zeros(n, jnp.int32).at[order].set(index - first)
  return jnp.where(eligible, rank, n)


def round_robin_order(group, within, round_keys, eligible):
  """Every point in round-robin order (eligible points first); `order[:b]` is the pick of
  `b <= eligible.sum()` points.

  Args:
    group: `(n,)` int group ids.
    within: `(n,)` order inside a group, ascending.
    round_keys: tuple of `(n,)` arrays ordering the points taken in one round (ascending,
      the first key most significant).
    eligible: `(n,)` bool, the points that may be taken.
  Returns:
    `(n,)` int32 indices.
  """
  index = jnp.arange(group.shape[0], dtype=jnp.int32)
  rank = rank_in_group(group, within, eligible)
  keys = (index,) + tuple(reversed(tuple(round_keys))) + (rank,)  # lexsort: last key is primary
  return jnp.lexsort(keys).astype(jnp.int32)
