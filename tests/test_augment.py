"""Augmentation: shapes, flip invariants, identities and per-example keys."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxal.data import augment


def _images(n=6, h=8, w=8, c=3, seed=0):
  return jnp.asarray(np.random.default_rng(seed).random((n, h, w, c)), jnp.float32)


def test_disabled_is_identity():
  x = _images()
  np.testing.assert_array_equal(augment.augment_batch(jax.random.key(0), x, augment.AugmentConfig()), x)


def test_flip_invariants():
  x = _images(n=64)
  y = augment.augment_batch(jax.random.key(1), x, augment.AugmentConfig(flip=True))
  assert y.shape == x.shape
  x, y = np.asarray(x), np.asarray(y)
  flipped = [np.array_equal(b, a[:, ::-1]) for a, b in zip(x, y)]
  kept = [np.array_equal(b, a) for a, b in zip(x, y)]
  assert all(f or k for f, k in zip(flipped, kept))  # each image is flipped or untouched
  assert 10 < sum(flipped) < 54  # about half are flipped
  # A flip keeps every row's multiset of pixels and the column order reversed.
  np.testing.assert_array_equal(np.sort(y, axis=2), np.sort(x, axis=2))


def test_flip_twice_is_identity():
  x = _images()[0]
  np.testing.assert_array_equal(augment.flip_one(jax.random.key(3), augment.flip_one(jax.random.key(3), x)), x)


def test_shift_crops_a_padded_window():
  x = _images(n=16, c=1)
  y = np.asarray(augment.augment_batch(jax.random.key(2), x, augment.AugmentConfig(max_shift=2)))
  assert y.shape == x.shape
  for a, b in zip(np.asarray(x), y):
    padded = np.pad(a, ((2, 2), (2, 2), (0, 0)))
    windows = [padded[dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
    assert any(np.array_equal(b, wdw) for wdw in windows)


def test_rotation_by_90_degrees_matches_rot90_and_zero_is_identity():
  x = _images(n=1, h=7, w=7)[0]
  np.testing.assert_allclose(augment.rotate_by(x, 0.0), x, atol=1e-6)
  r = np.asarray(augment.rotate_by(x, np.pi / 2))
  candidates = [np.rot90(np.asarray(x), k, axes=(0, 1)) for k in (1, 3)]
  assert min(np.abs(r - c).max() for c in candidates) < 1e-4


def test_rotation_stays_in_range_and_shapes():
  x = _images(n=4, h=16, w=12, c=2)
  y = augment.augment_batch(jax.random.key(0), x, augment.AugmentConfig(max_degrees=15.0))
  assert y.shape == x.shape
  assert float(y.min()) >= -1e-6 and float(y.max()) <= 1 + 1e-6


def test_per_example_keys_do_not_depend_on_the_batch():
  cfg = augment.AugmentConfig(flip=True, max_shift=1)
  x = _images(n=8)
  full = augment.augment_batch(jax.random.key(5), x, cfg)
  keys = jax.random.split(jax.random.key(5), 8)
  for i in range(8):
    np.testing.assert_array_equal(full[i], augment.augment_one(keys[i], x[i], cfg))
