"""Class-balanced selection: spread a score-based batch over the model's predicted classes,
so an imbalanced pool's rare classes are queried (cf. small-text's class balancing;
Aggarwal et al., "Active Learning for Imbalanced Datasets", WACV 2020, also balances the
batch over predicted classes).

The exact rule (round-robin, `round_robin.py`):
* each selectable point belongs to its predicted class and is ranked inside it by score
  (highest first, ties to the lower pool index);
* round `r` takes the `r`-th best point of every class that still has one; inside a round
  the points come highest score first (ties to the lower pool index);
* rounds repeat until `budget` points are taken. A class with too few candidates drops out
  once it is empty and the other classes fill its share, so every class gets
  `min(its candidates, q)` or `q + 1` points for one common `q`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import global_arrays, parallel
from jaxal.acquisition import round_robin
from jaxal.acquisition.stochastic import as_device_scores
from jaxal.inference import put_beside


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _class_balanced(scores, predicted_class, selectable_mask, *, k: int, num_classes: int):
  scores = jnp.asarray(scores, jnp.float32)
  has_nan = jnp.any(jnp.isnan(scores) & selectable_mask)
  bad_class = jnp.any(((predicted_class < 0) | (predicted_class >= num_classes)) & selectable_mask)
  neg = -jnp.where(scores == 0, 0.0, scores)  # -0.0 sorts below 0.0 in lax.sort
  order = round_robin.round_robin_order(predicted_class, neg, (neg,), selectable_mask)
  return order[:k], has_nan, bad_class


def class_balanced_top_k(scores, predicted_class, selectable_mask, budget: int, num_classes: int) -> np.ndarray:
  """`budget` selectable indices spread over the predicted classes (rule in the module doc).

  Args:
    scores: `(n,)` scores, higher = query first (device or host).
    predicted_class: `(n,)` int class per point in `[0, num_classes)`.
    selectable_mask: `(n,)` bool.
    budget: how many to pick.
    num_classes: the number of classes.
  Returns:
    host int32 indices in pick order (round by round).
  """
  selectable_mask = np.asarray(selectable_mask, bool)
  if budget > int(selectable_mask.sum()):
    raise ValueError(f"budget {budget} exceeds the {int(selectable_mask.sum())} selectable points")
  scores = as_device_scores(scores)
  if isinstance(predicted_class, jax.Array):
    predicted_class = parallel.on_auto_mesh(predicted_class)
  else:
    predicted_class = put_beside(np.asarray(predicted_class, np.int32), scores)
  k = min(scores.shape[0], 1 << max(0, int(budget) - 1).bit_length())
  picked, has_nan, bad_class = jax.device_get(_class_balanced(  # rows past the mask: padding
      scores, predicted_class, global_arrays.mask_beside(selectable_mask, scores), k=k, num_classes=int(num_classes)))
  if has_nan:
    raise FloatingPointError("acquisition produced NaN scores")
  if bad_class:
    raise ValueError(f"predicted classes must lie in [0, {num_classes})")
  return np.asarray(picked[:budget], np.int32)
