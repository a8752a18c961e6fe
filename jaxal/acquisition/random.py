"""Uniform random selection among the selectable points."""

import jax
import numpy as np

from jaxal.acquisition.base import PoolView


def random_acquire(view: PoolView, budget: int, key: jax.Array) -> np.ndarray:
  """`budget` selectable indices drawn without replacement from `key`."""
  candidates = np.flatnonzero(view.selectable_mask)
  if budget > candidates.size:
    raise ValueError(f"budget {budget} exceeds the {candidates.size} selectable points")
  perm = np.asarray(jax.random.permutation(key, candidates.size))
  return candidates[perm[:budget]].astype(np.int32)
