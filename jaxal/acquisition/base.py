"""The uniform acquisition interface.

An acquisition is a function `(view: PoolView, budget: int, key) -> indices`: it returns
`budget` distinct pool indices, all selectable. Score-based acquisitions compute a score
per point (higher = query first) and hand selection to `top_k_selectable`; set-based ones
(core-set, BADGE) select directly. The loop only ever calls `acquire(name, ...)`.

`Acquisition` is a registry entry: the function plus what jaxal must know about it (what
it reads from the predictor, its options and their defaults, its per-point score).
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


# What an acquisition may read from `PoolView.predictor`.
NEEDS = ("probs", "logits", "mc_probs", "embeddings")


@dataclasses.dataclass(frozen=True)
class Acquisition:
  """A registered acquisition; calling it calls `fn(view, budget, key)`.

  Attributes:
    fn: `(view, budget, key) -> indices`.
    needs: what it reads from the predictor, a subset of `NEEDS` (empty: nothing, e.g. random).
    score: `probs (n, C) -> (n,)` scores whose top-`budget` it selects, when it is score-based
      on softmax probabilities; SVP then reports proxy-target rank correlations.
    defaults: its options (`acquisition.options.<key>`) and their default values; `acquire`
      fills in the defaults, and config validation refuses keys no acquisition declares.
    validate: `options dict (defaults filled in) -> None`, raising `config.ConfigError`.
  """

  fn: Callable
  needs: tuple[str, ...] = ("probs",)
  score: Callable | None = None
  defaults: dict = dataclasses.field(default_factory=dict)
  validate: Callable[[dict], None] | None = None

  def __call__(self, view: PoolView, budget: int, key) -> np.ndarray:
    return self.fn(view, budget, key)


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
