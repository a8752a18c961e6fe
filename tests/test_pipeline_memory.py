"""Normalization statistics in chunks: the same numbers as numpy on the whole pool, no float copy."""

import numpy as np
import pytest

from jaxal.data import pipeline


def _reference(images, pooled):
  x = np.asarray(images, np.float64) / 255.0
  if pooled:
    return np.array([x.mean()]), np.array([x.std()])
  axes = tuple(range(x.ndim - 1))
  return x.mean(axis=axes), x.std(axis=axes)


@pytest.mark.parametrize("pooled", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_chunked_statistics_match_numpy_float64(pooled, dtype):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (1003, 5, 4, 3), dtype=np.uint8)
  images[:, :, :, 2] //= 7  # channels with different spreads
  if dtype == np.float32:
    images = images.astype(np.float32)
  row_bytes = 5 * 4 * 3 * 8
  # 64 rows a chunk: 1003 is no multiple of it, so the last chunk is short.
  mean, std = pipeline.channel_statistics(images, pooled=pooled, chunk_bytes=64 * row_bytes)
  want_mean, want_std = _reference(images, pooled)
  np.testing.assert_allclose(mean, want_mean, rtol=1e-12, atol=0)
  np.testing.assert_allclose(std, want_std, rtol=1e-12, atol=0)
  assert mean.shape == (1 if pooled else 3,)


@pytest.mark.parametrize("normalization", ["per_channel", "scalar"])
def test_make_preprocess_statistics_and_constant_channel(normalization):
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (257, 3, 3, 2), dtype=np.uint8)
  images[..., 1] = 9  # a constant channel: std 0 -> 1, as before
  pre = pipeline.make_preprocess(images, "image", normalization)
  x = images.astype(np.float64) / 255.0
  if normalization == "scalar":
    assert pre.mean == pytest.approx((x.mean(),) * 2, rel=1e-12)
    assert pre.std == pytest.approx((x.std(),) * 2, rel=1e-12)
  else:
    assert pre.mean == pytest.approx(tuple(x.mean(axis=(0, 1, 2))), rel=1e-12)
    assert pre.std == pytest.approx((x[..., 0].std(), 1.0), rel=1e-12)


def test_statistics_never_copy_the_pool_as_floats():
  """Working memory stays a fraction of the pool's bytes (the float64 copy took 16 times them)."""
  import tracemalloc  # pylint: disable=import-outside-toplevel
  images = np.random.default_rng(2).integers(0, 256, (2000, 32, 32, 3), dtype=np.uint8)
  tracemalloc.start()
  try:
    pipeline.channel_statistics(images, chunk_bytes=images.nbytes)  # 250 rows a chunk
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert peak < images.nbytes / 2, (peak, images.nbytes)


def test_unknown_normalization_is_refused():
  with pytest.raises(ValueError, match="data.normalization"):
    pipeline.make_preprocess(np.zeros((2, 2, 2, 1), np.uint8), "image", "bogus")
