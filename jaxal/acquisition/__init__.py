"""Acquisition functions: score the pool, then select a batch.

Public scores (higher = query first):
* softmax: `least_confidence`, `margin`, `entropy` on `(n, C)` probabilities;
* MC-dropout: `bald`, `predictive_entropy`, `variation_ratio`, `variation_ratio_mode`,
  `mc_pred_class_variance` on `(T, n, C)` probabilities.
Set selectors: `kcenter_greedy(embeddings, labeled_mask, budget)` and
`badge(probs, embeddings, labeled_mask, budget, key)`.

Every acquisition the loop can use is registered by name in `ACQUISITIONS` as
`fn(view, budget, key) -> indices` and called through `acquire(name, view, budget, key)`.
Options (`config.acquisition.options`, passed as `view.options`):
* `mc_samples` (T, default 100) for `bald` and `mc_variance`;
* `mc_head_only` (default: automatic, i.e. head-only when the backbone has no dropout) to
  force the full-model (`False`) or head-only (`True`) MC path;
* `kcenter_dtype` (`"float32"`, default, or `"bfloat16"`: half the bytes read per pick,
  picks may differ slightly) for `coreset`;
* `kcenter_prune` (default `True`) for `coreset`: screen (row, new center) pairs by a
  projected lower bound and compute only those that may change; same picks as the plain
  kernel (ignored on a multi-device mesh).

`least_confidence` in the registry scores from logits (`least_confidence_from_logits`),
which keeps confident rows ordered in float32; the others score from probabilities.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxal.acquisition.badge_seeding import badge
from jaxal.acquisition.base import PoolView, score_based, top_k_selectable
from jaxal.acquisition.kcenter import kcenter_greedy
from jaxal.acquisition.mc_dropout import (bald, bald_from_stats, mc_pred_class_variance, predictive_entropy,
                                          variation_ratio, variation_ratio_mode)
from jaxal.acquisition.random import random_acquire
from jaxal.acquisition.scoring import Predictor
from jaxal.acquisition.uncertainty import entropy, least_confidence, least_confidence_from_logits, margin

__all__ = ["ACQUISITIONS", "PoolView", "Predictor", "acquire", "badge", "bald", "bald_from_stats", "entropy",
           "kcenter_greedy", "least_confidence", "least_confidence_from_logits", "margin", "mc_pred_class_variance",
           "predictive_entropy", "top_k_selectable", "variation_ratio", "variation_ratio_mode"]


def _mc_stats(view: PoolView, key):
  head_only = view.options.get("mc_head_only", None)
  return view.predictor.mc_statistics(int(view.options.get("mc_samples", 100)), key, head_only=head_only)


def least_confidence_acquire(view: PoolView, budget: int, key) -> np.ndarray:
  """Top-`budget` by `1 - max p`, computed from logits."""
  del key
  logits, _ = view.predictor.outputs()
  return top_k_selectable(least_confidence_from_logits(jnp.asarray(logits)), view.selectable_mask, budget)


def bald_acquire(view: PoolView, budget: int, key) -> np.ndarray:
  """Top-`budget` by BALD mutual information over `mc_samples` dropout passes."""
  stats = _mc_stats(view, key)
  return top_k_selectable(bald_from_stats(jnp.asarray(stats["mean_probs"]), jnp.asarray(stats["mean_entropy"])),
                          view.selectable_mask, budget)


def mc_variance_acquire(view: PoolView, budget: int, key) -> np.ndarray:
  """active-iNAS's MC-dropout query: highest variance of the predicted class's probability."""
  stats = _mc_stats(view, key)
  return top_k_selectable(stats["pred_class_variance"], view.selectable_mask, budget)


def coreset_acquire(view: PoolView, budget: int, key) -> np.ndarray:
  """Greedy k-center on penultimate embeddings, the labeled points as initial centers."""
  del key
  _, embeddings = view.predictor.outputs()
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[view.options.get("kcenter_dtype", "float32")]
  centers = view.labeled_mask | ~view.selectable_mask  # held-out points are never picked
  sharding = getattr(view.predictor, "sharding", None)
  return kcenter_greedy(embeddings, centers, budget, storage_dtype=dtype,
                        mesh=None if sharding is None else sharding.mesh,
                        prune=bool(view.options.get("kcenter_prune", True)))


def badge_acquire(view: PoolView, budget: int, key) -> np.ndarray:
  """BADGE: k-means++ seeding on factorized gradient embeddings of the selectable points."""
  _, embeddings = view.predictor.outputs()
  sharding = getattr(view.predictor, "sharding", None)
  return badge(view.predictor.probs(), embeddings, ~view.selectable_mask, budget, key,
               mesh=None if sharding is None else sharding.mesh)


ACQUISITIONS = {
    "random": random_acquire,
    "least_confidence": least_confidence_acquire,
    "margin": score_based(margin),
    "entropy": score_based(entropy),
    "bald": bald_acquire,
    "mc_variance": mc_variance_acquire,
    "coreset": coreset_acquire,
    "badge": badge_acquire,
}


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
