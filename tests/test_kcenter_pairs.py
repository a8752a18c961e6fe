"""The k-center kernels' sparse pair update (`kcenter_pairs`) against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal.acquisition import kcenter_pairs, kcenter_rows


def test_nth_set_bit_matches_numpy():
  rng = np.random.default_rng(0)
  words = rng.integers(0, 2**32, size=400, dtype=np.uint64).astype(np.uint32)
  words[:4] = [1, 2**31, 2**32 - 1, 0b1010]
  word_ix, ranks, want = [], [], []
  for i, w in enumerate(words):
    set_bits = [b for b in range(32) if (int(w) >> b) & 1]
    for rank, b in enumerate(set_bits):
      word_ix.append(i)
      ranks.append(rank)
      want.append(b)
  got = jax.jit(kcenter_pairs._nth_set_bit)(jnp.asarray(words[word_ix]), jnp.asarray(ranks, jnp.int32))
  np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("size", [1, 2, 7, 64, 1000])
def test_count_at_most_matches_searchsorted(size):
  rng = np.random.default_rng(size)
  values = np.sort(rng.integers(0, 50, size)).astype(np.int32)  # with repeats
  queries = rng.integers(-5, 60, 300).astype(np.int32)
  queries[:3] = [values[0], values[-1], values[size // 2]]
  got = jax.jit(kcenter_pairs._count_at_most)(jnp.asarray(values), jnp.asarray(queries))
  np.testing.assert_array_equal(np.asarray(got), np.searchsorted(values, queries, side="right"))


@pytest.mark.parametrize("k", [5, 32, 70])  # part of a 32-bit word, exactly one, several (the last partial)
def test_pairs_update_lowers_exactly_the_flagged_pairs(k):
  n, d = 600, 24
  rng = np.random.default_rng(k)
  x = rng.normal(size=(n, d)).astype(np.float32)
  xc = rng.normal(size=(k, d)).astype(np.float32)
  m = rng.uniform(10.0, 80.0, n).astype(np.float32)
  maybe = rng.uniform(size=(n, k)) < 0.03
  maybe[:40] = False  # rows with no flag
  maybe[50, :] = True  # a row with every flag (several words when k > 32)
  maybe[-1, -1] = True  # the last pair
  # Reference: the direct form of every pair, computed densely, kept where flagged.
  dense = np.asarray(jax.jit(kcenter_rows._row_d2)(jnp.asarray(x)[:, None, :], jnp.asarray(xc)[None, :, :]))
  want = np.minimum(m, np.where(maybe, dense, np.inf).min(axis=1))
  d64 = ((x[:, None, :].astype(np.float64) - xc[None].astype(np.float64)) ** 2).sum(-1)
  np.testing.assert_allclose(dense, d64, rtol=1e-5)

  def fallback(m):
    return jnp.full_like(m, -1.0), jnp.int32(-1)

  update = jax.jit(lambda m, maybe, caps: kcenter_pairs._pairs_update(jnp.asarray(x), maybe, jnp.asarray(xc), m, caps,
                                                                     fallback), static_argnums=2)
  for caps in ([(n * 3, n * k)], [(8, n * k), (n * 3, n * k)]):
    got, pairs = update(jnp.asarray(m), jnp.asarray(maybe), tuple(caps))
    np.testing.assert_array_equal(np.asarray(got), want, err_msg=str(caps))
    assert int(pairs) == maybe.sum()
  # No tier holds the step: the fallback runs.
  got, pairs = update(jnp.asarray(m), jnp.asarray(maybe), ((8, n * k), (n * 3, int(maybe.sum()) - 1)))
  assert int(pairs) == -1 and np.all(np.asarray(got) == -1.0)
