"""The uniform acquisition interface.

An acquisition is a function `(view: PoolView, budget: int, key) -> indices`: it returns
`budget` distinct pool indices, all selectable. Score-based acquisitions compute a score
per point (higher = query first) and hand selection to `top_k_selectable`; set-based ones
(core-set, BADGE) select directly. The loop only ever calls `acquire(name, ...)`.
"""

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from jaxal.acquisition.scoring import Predictor

Array = Any


@dataclasses.dataclass
class PoolView:
  """What an acquisition may look at in one round.

  Attributes:
    labeled_mask: `(n,)` bool, points whose labels are known.
    selectable_mask: `(n,)` bool, points that may be queried (unlabeled, not held out).
    predictor: the round's trained model over the same `n` points.
    options: acquisition options from the config (e.g. `mc_samples`).
  """

  labeled_mask: np.ndarray
  selectable_mask: np.ndarray
  predictor: Predictor | None
  options: dict = dataclasses.field(default_factory=dict)


def top_k_selectable(scores: Array, selectable_mask: np.ndarray, budget: int) -> np.ndarray:
  """Indices of the `budget` highest scores among selectable points.

  Ties go to the lower index (stable sort on `-score`). NaN scores are rejected.
  """
  scores = np.asarray(scores, dtype=np.float64)
  if np.isnan(scores[selectable_mask]).any():
    raise FloatingPointError("acquisition produced NaN scores")
  masked = np.where(selectable_mask, scores, -np.inf)
  order = np.argsort(-masked, kind="stable")
  picked = order[:budget]
  if not selectable_mask[picked].all():
    raise ValueError(f"budget {budget} exceeds the {int(selectable_mask.sum())} selectable points")
  return picked.astype(np.int32)


def score_based(score_fn: Callable[[np.ndarray], Array]):
  """Wraps `score_fn(probs) -> (n,) scores` as an acquisition."""

  def acquire(view: PoolView, budget: int, key: jax.Array) -> np.ndarray:
    del key
    return top_k_selectable(score_fn(view.predictor.probs()), view.selectable_mask, budget)

  acquire.__doc__ = f"Top-`budget` points by `{score_fn.__name__}`."
  return acquire
