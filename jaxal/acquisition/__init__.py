"""Acquisition functions: score the pool, then select a batch.

Per-point scores (higher = query first): `least_confidence`, `margin`, `entropy`.
Every acquisition the loop can use is registered by name in `ACQUISITIONS` and called
through `acquire(name, view, budget, key)`.
"""

import jax
import numpy as np

from jaxal.acquisition.base import PoolView, score_based, top_k_selectable  # noqa: F401  (public API)
from jaxal.acquisition.random import random_acquire
from jaxal.acquisition.scoring import Predictor  # noqa: F401  (public API)
from jaxal.acquisition.uncertainty import entropy, least_confidence, margin

ACQUISITIONS = {
    "random": random_acquire,
    "least_confidence": score_based(least_confidence),
    "margin": score_based(margin),
    "entropy": score_based(entropy),
}

# Acquisitions that need no trained model.
MODEL_FREE = frozenset({"random"})


def acquire(name: str, view: PoolView, budget: int, key: jax.Array) -> np.ndarray:
  """Runs acquisition `name`; returns `budget` distinct selectable indices."""
  if name not in ACQUISITIONS:
    raise ValueError(f"unknown acquisition {name!r}; known: {', '.join(sorted(ACQUISITIONS))}")
  picked = np.asarray(ACQUISITIONS[name](view, budget, key), dtype=np.int32)
  if picked.shape != (budget,) or len(set(picked.tolist())) != budget:
    raise AssertionError(f"acquisition {name!r} returned {picked.shape} indices, not {budget} distinct")
  if not view.selectable_mask[picked].all():
    raise AssertionError(f"acquisition {name!r} picked a point that is not selectable")
  return picked
