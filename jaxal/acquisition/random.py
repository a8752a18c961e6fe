"""Uniform random selection among the selectable points."""

import jax
import numpy as np

from jaxal.acquisition.base import PoolView


def random_acquire(view: PoolView, budget: int, key: jax.Array) -> np.ndarray:
  """`budget` selectable indices drawn without replacement from `key`."""
  candidates = np.flatnonzero(view.selectable_mask)
  if budget > candidates.size:
    raise ValueError(f"budget {budget} exceeds the {candidates.size} selectable points")
  # A numpy generator seeded from the key: a jax permutation would compile per pool size.
  rng = np.random.default_rng(np.asarray(jax.device_get(jax.random.key_data(key))).ravel().tolist())
  return np.sort(rng.choice(candidates, budget, replace=False)).astype(np.int32)
