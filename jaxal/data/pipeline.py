"""From raw stored inputs to model inputs, inside jit.

Inputs stay on device in their stored dtype (uint8 images, int32 token ids); the train and
score steps gather rows by index and apply a hashable `preprocess` callable.
"""

import dataclasses

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
  x = np.asarray(train_inputs, np.float64) / 255.0
  channels = x.shape[-1]
  if normalization == "none":
    return Normalize((0.0,) * channels, (1.0,) * channels)
  if normalization == "scalar":
    mean, std = float(x.mean()), float(x.std()) or 1.0
    return Normalize((mean,) * channels, (std,) * channels)
  if normalization == "per_channel":
    axes = tuple(range(x.ndim - 1))
    mean, std = x.mean(axis=axes), x.std(axis=axes)
    std = np.where(std > 0, std, 1.0)
    return Normalize(tuple(float(m) for m in mean), tuple(float(s) for s in std))
  raise ValueError(f"data.normalization: unknown value {normalization!r}")
