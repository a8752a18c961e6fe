"""The uniform acquisition interface.

An acquisition is a function `(view: PoolView, budget: int, key) -> indices`: it returns
`budget` distinct pool indices, all selectable. Score-based acquisitions compute a score
per point (higher = query first) and hand selection to `top_k_selectable`; set-based ones
(core-set, BADGE) select directly. The loop only ever calls `acquire(name, ...)`.

`Acquisition` is a registry entry: the function plus what jaxal must know about it (what
it reads from the predictor, its options and their defaults, its per-point score).

The predictor's outputs are device arrays; the built-in acquisitions score and select on the
device and read back only their picks (one `jax.device_get` per round), so a round's
selection runs under `jax.transfer_guard("disallow")`.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import global_arrays, parallel
from jaxal.acquisition.scoring import Predictor
from jaxal.inference import put_beside

Array = Any


@dataclasses.dataclass
class PoolView:
  """What an acquisition may look at in one round.

  Attributes:
    labeled_mask: `(n,)` bool, points whose labels are known.
    selectable_mask: `(n,)` bool, points that may be queried (unlabeled, not held out).
    predictor: the round's trained model over the same `n` points.
    options: acquisition options from the config (e.g. `mc_samples`).
    state: the run's acquisition state, `{acquisition name: dict of host arrays}`, which an
      acquisition may read and fill in (e.g. Cluster-Margin's clustering, computed once); the
      loop saves it with each round's checkpoint and hands the same values back after a resume.
  """

  labeled_mask: np.ndarray
  selectable_mask: np.ndarray
  predictor: Predictor | None
  options: dict = dataclasses.field(default_factory=dict)
  state: dict = dataclasses.field(default_factory=dict)


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


@functools.partial(jax.jit, static_argnames=("k",))
def _top_k_masked(scores, selectable_mask, k: int):
  """The `k` highest selectable scores' indices, ties to the lower index, and whether a
  selectable score is NaN. -0.0 counts as 0.0 (as in a sort), which `top_k` alone does not."""
  scores = jnp.where(scores == 0, 0.0, scores)
  has_nan = jnp.any(jnp.isnan(scores) & selectable_mask)
  return jax.lax.top_k(jnp.where(selectable_mask, scores, -jnp.inf), k)[1].astype(jnp.int32), has_nan


@functools.partial(jax.jit, static_argnames=("k", "mesh"))
def _top_k_sharded(scores, selectable_mask, k: int, mesh):
  """`_top_k_masked` for scores split over `mesh`'s `data` axis (e.g. over processes): each
  shard's own top k, then the top k of those (`parallel.top_k_split`): k values per shard
  cross devices, not all n, and ties still go to the lower global index."""
  scores = jnp.where(scores == 0, 0.0, scores)
  has_nan = jnp.any(jnp.isnan(scores) & selectable_mask)
  picked = parallel.top_k_split(jnp.where(selectable_mask, scores, -jnp.inf), k, mesh)[1]
  return picked.astype(jnp.int32), has_nan


def top_k_selectable(scores: Array, selectable_mask: np.ndarray, budget: int) -> np.ndarray:
  """Indices of the `budget` highest scores among selectable points (host int32).

  Ties go to the lower index (stable sort on `-score`). NaN scores are rejected. Scores
  that are a floating-point jax Array are ranked on their device, and only the picks come
  back; others (numpy, lists, integers) are ranked by numpy in float64. Scores whose rows
  are split over a mesh's `data` axis (`global_arrays.global_rows`, one share per process)
  are ranked shard by shard (`_top_k_sharded`) with the same picks, on every process; their
  rows past `selectable_mask`'s length are padding and never picked.
  """
  selectable_mask = np.asarray(selectable_mask, bool)
  if isinstance(scores, jax.Array) and jnp.issubdtype(scores.dtype, jnp.floating):
    mesh = global_arrays.row_mesh(scores)
    if mesh is not None:  # padding rows are unselectable
      selectable_mask = np.pad(selectable_mask, (0, scores.shape[0] - selectable_mask.size))
    # k rounded up to a power of two: a new budget seldom compiles anew (the tail is dropped here).
    k = min(selectable_mask.size, 1 << max(0, int(budget) - 1).bit_length())
    if mesh is None:
      picked, has_nan = jax.device_get(_top_k_masked(scores, put_beside(selectable_mask, scores), k))
    else:
      picked, has_nan = jax.device_get(_top_k_sharded(parallel.on_auto_mesh(scores), global_arrays.rows_beside(
          selectable_mask, scores.shape[0], mesh), k, mesh))
    picked = picked[:budget]
  else:
    scores = np.asarray(scores, dtype=np.float64)
    has_nan = np.isnan(scores[selectable_mask]).any()
    picked = np.argsort(-np.where(selectable_mask, scores, -np.inf), kind="stable")[:budget]
  if has_nan:
    raise FloatingPointError("acquisition produced NaN scores")
  if not selectable_mask[picked].all():
    raise ValueError(f"budget {budget} exceeds the {int(selectable_mask.sum())} selectable points")
  return picked.astype(np.int32)


def check_counts(options: dict, names) -> None:
  """Raises `ConfigError` naming `acquisition.options.<name>` unless each is an integer >= 1."""
  from jaxal.config import ConfigError  # pylint: disable=g-import-not-at-top  (config imports acquisition)
  for name in names:
    value = options[name]
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
      raise ConfigError(f"acquisition.options.{name}: must be an integer >= 1, got {value!r}")


def check_head_only(options: dict) -> None:
  """Raises `ConfigError` unless `mc_head_only` is True, False or None (automatic)."""
  from jaxal.config import ConfigError  # pylint: disable=g-import-not-at-top
  if options["mc_head_only"] not in (None, True, False):
    raise ConfigError(f"acquisition.options.mc_head_only: must be True, False or None (automatic), "
                      f"got {options['mc_head_only']!r}")


def score_based(score_fn: Callable[[np.ndarray], Array]):
  """Wraps `score_fn(probs) -> (n,) scores` as an acquisition."""

  def acquire(view: PoolView, budget: int, key: jax.Array) -> np.ndarray:
    from jaxal.acquisition import stochastic  # pylint: disable=g-import-not-at-top  (it imports this module)
    return stochastic.select_with_options(score_fn(view.predictor.probs()), view, budget, key)

  acquire.__doc__ = f"Top-`budget` points by `{score_fn.__name__}`."
  return acquire
