"""From raw stored inputs to model inputs, inside jit.

Inputs stay on device in their stored dtype (uint8 images, int32 token ids); the train and
score steps gather rows by index and apply a hashable `preprocess` callable.
"""

import dataclasses
import fractions
import math

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Normalize:
  """uint8 images -> float32 `(x / 255 - mean) / std`, per channel."""

  mean: tuple[float, ...]
  std: tuple[float, ...]

  def __call__(self, x):
    x = x.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)


@dataclasses.dataclass(frozen=True)
class TokenIds:
  """Token ids pass through as int32."""

  def __call__(self, x):
    return x.astype(jnp.int32)


def make_preprocess(train_inputs: np.ndarray, modality: str, normalization: str):
  """Builds the preprocess callable; statistics come from the training split.

  Args:
    normalization: `per_channel` (mean/std per channel), `scalar` (one mean/std over all
      pixels, as active-iNAS), or `none` (just scale to [0, 1]).
  """
  if modality == "text":
    return TokenIds()
  channels = train_inputs.shape[-1]
  if normalization == "none":
    return Normalize((0.0,) * channels, (1.0,) * channels)
  if normalization not in ("scalar", "per_channel"):
    raise ValueError(f"data.normalization: unknown value {normalization!r}")
  mean, std = channel_statistics(train_inputs, pooled=normalization == "scalar")
  std = np.where(std > 0, std, 1.0)
  if normalization == "scalar":
    return Normalize((float(mean[0]),) * channels, (float(std[0]),) * channels)
  return Normalize(tuple(float(m) for m in mean), tuple(float(s) for s in std))


# Rows per chunk are chosen so that a chunk widened to 8-byte numbers stays near this size.
CHUNK_BYTES = 64 << 20


def channel_statistics(images: np.ndarray, pooled: bool = False, chunk_bytes: int = CHUNK_BYTES):
  """Mean and std of `images / 255` per channel (over all channels when `pooled`), in chunks.

  The pool is never copied as a whole: a float64 copy of it (and a second one for the
  division) took 17 times the pool's bytes. uint8 images are counted per value with
  `np.bincount`, giving exact integer sums, so the statistics are the correctly rounded
  values; other dtypes take two float64 passes over chunks. Returns float64 arrays of
  length `channels` (length 1 when `pooled`).
  """
  images = np.asarray(images)
  channels = images.shape[-1]
  rows = _rows_per_chunk(images, chunk_bytes)
  if images.dtype == np.uint8:
    counts = np.zeros((channels, 256), np.int64)
    for start in range(0, len(images), rows):
      chunk = images[start:start + rows]
      for c in range(channels):
        counts[c] += np.bincount(chunk[..., c].reshape(-1), minlength=256)
    if pooled:
      counts = counts.sum(axis=0, keepdims=True)
    stats = [_exact_moments(row) for row in counts]
    return np.array([m for m, _ in stats]), np.array([s for _, s in stats])
  return _float_moments(images, rows, pooled)


def _rows_per_chunk(images: np.ndarray, chunk_bytes: int) -> int:
  per_row = max(1, int(np.prod(images.shape[1:], dtype=np.int64)) * 8)
  return max(1, chunk_bytes // per_row)


def _exact_moments(counts: np.ndarray) -> tuple[float, float]:
  """Mean and std of `value / 255` from a count per uint8 value, in exact integer arithmetic."""
  values = range(256)
  n = int(counts.sum())
  if n == 0:
    return 0.0, 0.0
  total = sum(int(c) * v for c, v in zip(counts, values))
  squares = sum(int(c) * v * v for c, v in zip(counts, values))
  mean = fractions.Fraction(total, n * 255)
  variance = fractions.Fraction(n * squares - total * total, n * n * 255 * 255)
  return float(mean), math.sqrt(variance)


def _float_moments(images: np.ndarray, rows: int, pooled: bool):
  """Two chunked float64 passes (sum, then squared deviations), as numpy's own `std`."""
  channels = 1 if pooled else images.shape[-1]
  chunks = [images[s:s + rows] for s in range(0, len(images), rows)]
  as_rows = lambda chunk: np.asarray(chunk, np.float64).reshape(-1, channels) / 255.0
  n = max(1, images.size // channels)
  mean = sum((as_rows(c).sum(axis=0) for c in chunks), np.zeros(channels)) / n
  squares = sum((((as_rows(c) - mean) ** 2).sum(axis=0) for c in chunks), np.zeros(channels))
  return mean, np.sqrt(squares / n)
