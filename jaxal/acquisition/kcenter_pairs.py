"""The sparse pair update shared by the k-center kernels: `minimum(m, direct distance)` over
flagged (row, center) pairs only.

A step flags an (n, k) mask of the pairs that may lower a row's entry (the guard's GEMM
bound, or the pruned kernel's projected screen). The flags are packed 32 to a `uint32` word
per row ("units": (row, word)); the units with a flag are compacted (one `nonzero` over n
times the words), and a running count of their flags gives each pair a position. The pairs
are then read `_CHUNK` at a time: a pair's unit by a binary search in the running count, its
center by the rank of its flag in the word. Compacting the (rows, k) flag matrix itself
(one `nonzero` over rows x k, as before) took 8-9 ms a step at 15k flagged rows on XLA:CPU
against 2-3 ms for the words (benchmarks/NOTES.md §7h).
"""

import functools

import jax
import jax.numpy as jnp

from jaxal.acquisition.kcenter_rows import _row_d2

_CHUNK = 256  # gathered (row, center) pairs per iteration
_WORD = 32


def _pack_flags(maybe):
  """(n, k) bools as (n * words,) uint32 words, flag `j` of a row at bit `j % 32` of its
  word `j // 32`."""
  n, k = maybe.shape
  words = -(-k // _WORD)
  flags = jnp.pad(maybe, ((0, 0), (0, words * _WORD - k))).reshape(n * words, _WORD)
  bit = jnp.uint32(1) << jnp.arange(_WORD, dtype=jnp.uint32)
  return jnp.sum(jnp.where(flags, bit, jnp.uint32(0)), axis=1, dtype=jnp.uint32)


def _nth_set_bit(word, j):
  """Position of the `j`-th (from 0) set bit of each uint32 `word`, counting from bit 0: a
  binary search on the set-bit counts of the low halves. Defined where `j` < the word's count."""
  pos = jnp.zeros(jnp.shape(j), jnp.int32)
  j = jnp.asarray(j, jnp.int32)
  for width in (16, 8, 4, 2, 1):
    low = jax.lax.population_count((word >> pos.astype(jnp.uint32)) & jnp.uint32((1 << width) - 1))
    low = low.astype(jnp.int32)
    skip = j >= low
    pos = jnp.where(skip, pos + width, pos)
    j = jnp.where(skip, j - low, j)
  return pos


def _count_at_most(sorted_values, queries):
  """Per query, how many of the ascending `sorted_values` are <= it: a branch-free binary
  search unrolled in Python (`jnp.searchsorted`'s loop cost a few thunks per level, as much
  as the distances it indexed)."""
  size = sorted_values.shape[0]
  count = jnp.zeros(jnp.shape(queries), jnp.int32)
  step = 1 << max(0, (size - 1).bit_length())
  while step:
    probe = count + step
    below = sorted_values[jnp.minimum(probe, size) - 1] <= queries
    count = jnp.where((probe <= size) & below, probe, count)
    step //= 2
  return count


def _pairs_update(xs, maybe, xc, m, caps, fallback):
  """`m` lowered by the direct distances `_row_d2(xs[i], xc[j])` of the pairs flagged in
  `maybe` (n, k), and the number of pairs computed.

  `caps` lists `(units, pairs)` size tiers, smallest first (a unit is a row's word of 32
  flags: a row when k <= 32); the compaction's cost grows with the tier's units, and the
  first tier that holds the step is taken. When none does, `fallback(m)` instead. Both
  return `(m, row reads)`."""
  n, k = maybe.shape
  words = -(-k // _WORD)
  bits = _pack_flags(maybe)
  counts = jax.lax.population_count(bits).astype(jnp.int32)
  num_units = jnp.sum(counts > 0, dtype=jnp.int32)
  num_pairs = jnp.sum(counts)

  def sparse(unit_cap, m):
    # Unused slots point past the end: their gathers clip and their scatters drop.
    units = jnp.nonzero(counts > 0, size=unit_cap, fill_value=n * words)[0].astype(jnp.int32)
    unit_bits = bits.at[units].get(mode="fill", fill_value=0)
    unit_counts = counts.at[units].get(mode="fill", fill_value=0)
    ends = jnp.cumsum(unit_counts)

    def body(g, m):
      pair = g * _CHUNK + jnp.arange(_CHUNK, dtype=jnp.int32)
      slot = jnp.minimum(_count_at_most(ends, pair), unit_cap - 1)
      rank = pair - (ends[slot] - unit_counts[slot])
      center = (units[slot] % words) * _WORD + _nth_set_bit(unit_bits[slot], rank)
      row = jnp.where(pair < num_pairs, units[slot] // words, n)
      d2 = _row_d2(xs.at[row].get(mode="clip"), xc[jnp.clip(center, 0, k - 1)])
      return m.at[row].min(d2, mode="drop")

    return jax.lax.fori_loop(0, (num_pairs + _CHUNK - 1) // _CHUNK, body, m), num_pairs

  def tiered(m, caps=tuple(caps)):
    if not caps:
      return fallback(m)
    (unit_cap, pair_cap), rest = caps[0], caps[1:]
    unit_cap = min(unit_cap, n * words)
    fits = (num_units <= unit_cap) & (num_pairs <= pair_cap)
    return jax.lax.cond(fits, functools.partial(sparse, unit_cap), lambda m: tiered(m, rest), m)

  return tiered(m)
