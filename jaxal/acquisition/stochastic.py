"""Stochastic batch acquisition (Kirsch, Farquhar, Atighehchian, Jesson, Branchaud-Charron &
Gal, "Stochastic Batch Acquisition: A Simple Baseline for Deep Active Learning", TMLR 2023).

Instead of the top-`b` scores, draw `b` points without replacement from a distribution over
the selectable points built from the scores `s_i` with coldness `beta = 1 / temperature`:

* `"power"`:    `p_i ~ s_i ** beta`              (log-weight `beta * log s_i`);
* `"softmax"`:  `p_i ~ exp(beta * s_i)`          (log-weight `beta * s_i`);
* `"softrank"`: `p_i ~ rank_i ** -beta`          (log-weight `-beta * log rank_i`), rank 1 =
  the highest score.

This is the parametrization of the paper and of BaaL's `PowerSampling`, `GibbsSampling` and
`RankBasedSampling` (`s ** (1/T)`, `softmax(s / T)`, `rank ** (-1/T)`). The sample is drawn by
Gumbel top-k (Kool et al. 2019): `b` largest of `log-weight_i + g_i`, `g_i ~ Gumbel(0, 1)`,
which is exactly sequential sampling without replacement; the picks come back in draw order.

Choices the paper leaves open, as made here:
* power needs non-negative scores: a score below `POWER_FLOOR` (0, negatives) counts as
  `POWER_FLOOR`, so such points are drawn only after (almost) every positive one. jaxal's
  `margin` score is `-(p1 - p2) <= 0`: use softmax or softrank with it, or shift it (`1 + s`);
* softrank ranks only the selectable points; tied scores share their average rank (as
  `scipy.stats.rankdata`, which BaaL uses), so the distribution does not depend on the order
  of the pool;
* the noise of pool row `i` is `g_i = -log(-log(u_i))` with
  `u_i = jax.random.uniform(fold_in(key, i), minval=tiny, maxval=1)`: it depends only on the key
  and the row, never on the pool size, padding or how the scores are sharded, so 1 and 8
  devices (or a padded pool) give the same picks;
* a selectable point whose perturbed log-weight is `-inf` (score `-inf` under softmax) still
  ranks above every unselectable one (ties to the lower index); NaN scores are refused.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import config as config_lib, global_arrays, parallel
from jaxal.inference import put_beside

MODES = ("power", "softmax", "softrank")
POWER_FLOOR = 1e-30
DEFAULTS = {"stochastic": "", "temperature": 1.0, "class_balanced": False}
# Salt folded into the round's key before drawing the noise, so it is independent of the
# MC-dropout passes drawn from the same key.
NOISE_STREAM = 0x5EED
# `fold_in` with a constant, compiled: eager, the int would be an implicit host-to-device transfer.
fold_in = jax.jit(jax.random.fold_in, static_argnums=1)


def validate(options: dict) -> None:
  """Raises `config.ConfigError` naming the bad `acquisition.options.<key>`."""
  mode = options.get("stochastic", "")
  if mode not in ("",) + MODES:
    raise config_lib.ConfigError(f"acquisition.options.stochastic: {mode!r} is not one of '', {', '.join(MODES)}")
  temperature = options.get("temperature", 1.0)
  if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < np.inf:
    raise config_lib.ConfigError(f"acquisition.options.temperature: must be a positive finite number, "
                                 f"got {temperature!r}")
  if not isinstance(options.get("class_balanced", False), bool):
    raise config_lib.ConfigError(f"acquisition.options.class_balanced: must be True or False, "
                                 f"got {options.get('class_balanced')!r}")


def gumbel_noise(key, n: int):
  """`(n,)` float32 Gumbel(0, 1) noise, row `i` drawn from `fold_in(key, i)` alone."""
  tiny = jnp.finfo(jnp.float32).tiny
  u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i), (), jnp.float32, tiny, 1.0))(
      jnp.arange(n, dtype=jnp.uint32))
  return -jnp.log(-jnp.log(u))


def average_rank(scores, selectable_mask):
  """Rank among selectable points, 1 = highest score, ties sharing their average rank."""
  s = jnp.where(selectable_mask, scores, -jnp.inf)
  ascending = jnp.sort(s)
  n = s.shape[0]
  above = n - jnp.searchsorted(ascending, s, side="right")
  ties = jnp.searchsorted(ascending, s, side="right") - jnp.searchsorted(ascending, s, side="left")
  return above.astype(jnp.float32) + (ties.astype(jnp.float32) + 1.0) / 2.0


def log_weights(scores, selectable_mask, *, mode: str, temperature: float):
  """Unnormalized log-probabilities `beta * f(s)` of the sampling distribution (see module)."""
  scores = jnp.asarray(scores, jnp.float32)
  beta = 1.0 / temperature
  if mode == "power":
    return beta * jnp.log(jnp.maximum(scores, POWER_FLOOR))
  if mode == "softmax":
    return beta * scores
  if mode == "softrank":
    return -beta * jnp.log(average_rank(scores, selectable_mask))
  raise ValueError(f"stochastic mode {mode!r} is not one of {MODES}")


@functools.partial(jax.jit, static_argnames=("mode",))
def perturbed_scores(scores, selectable_mask, key, *, mode: str, temperature: float = 1.0):
  """Gumbel-perturbed log-weights: the `b` largest are the draw. Unselectable points get
  `-inf`, selectable ones at least `-max float` (so they still come first).

  Returns:
    `(values (n,) float32, has_nan ())`.
  """
  scores = jnp.asarray(scores, jnp.float32)
  has_nan = jnp.any(jnp.isnan(scores) & selectable_mask)
  noisy = log_weights(scores, selectable_mask, mode=mode, temperature=temperature) + gumbel_noise(key, scores.shape[0])
  noisy = jnp.where(noisy == 0, 0.0, noisy)  # -0.0 sorts below 0.0 in lax.sort
  lowest = jnp.finfo(jnp.float32).min
  return jnp.where(selectable_mask, jnp.maximum(jnp.nan_to_num(noisy, nan=lowest), lowest), -jnp.inf), has_nan


@functools.partial(jax.jit, static_argnames=("k", "mode"))
def _stochastic_top_k(scores, selectable_mask, key, temperature, *, k: int, mode: str):
  noisy, has_nan = perturbed_scores(scores, selectable_mask, key, mode=mode, temperature=temperature)
  return jax.lax.top_k(noisy, k)[1].astype(jnp.int32), has_nan


def as_device_scores(scores):
  """Device scores as jaxal computes on them: a host array put on the default device, an
  array on an Explicit mesh relabeled onto its Auto twin (`parallel.on_auto_mesh`)."""
  if isinstance(scores, jax.Array):
    return parallel.on_auto_mesh(scores)
  return jnp.asarray(np.asarray(scores, np.float32))


def _scalar(value, scores):
  """A float32 scalar put explicitly beside `scores` (a Python float would be an implicit transfer)."""
  return put_beside(np.float32(value), scores)


def _device_mask(selectable_mask, scores):
  if isinstance(scores, jax.Array):  # padded with False past the mask (`global_arrays.global_rows`)
    return global_arrays.mask_beside(selectable_mask, scores)
  return jnp.asarray(selectable_mask)


def stochastic_top_k(scores, selectable_mask, budget: int, key, *, mode: str, temperature: float = 1.0) -> np.ndarray:
  """`budget` selectable indices drawn without replacement by stochastic acquisition.

  Args:
    scores: `(n,)` scores, higher = more informative (device or host array).
    selectable_mask: `(n,)` bool.
    budget: how many to draw.
    key: a `jax.random` key; the draw depends only on it and the scores.
    mode: `"power"`, `"softmax"` or `"softrank"`.
    temperature: `T > 0`; the paper's coldness is `beta = 1 / T`.
  Returns:
    host int32 indices in draw order.
  """
  selectable_mask = np.asarray(selectable_mask, bool)
  if budget > int(selectable_mask.sum()):
    raise ValueError(f"budget {budget} exceeds the {int(selectable_mask.sum())} selectable points")
  scores = as_device_scores(scores)
  # k rounded up to a power of two, so a new budget seldom compiles anew (as top_k_selectable).
  k = min(scores.shape[0], 1 << max(0, int(budget) - 1).bit_length())
  picked, has_nan = jax.device_get(_stochastic_top_k(scores, _device_mask(selectable_mask, scores), key,
                                                     _scalar(temperature, scores), k=k, mode=mode))
  if has_nan:
    raise FloatingPointError("acquisition produced NaN scores")
  return np.asarray(picked[:budget], np.int32)


def select_with_options(scores, view, budget: int, key) -> np.ndarray:
  """The hook for every score-based acquisition: plain top-`budget`, or a stochastic draw
  (`options.stochastic`, `options.temperature`), optionally spread over the predicted classes
  (`options.class_balanced`, classes = argmax of `view.predictor.probs()`; with a draw, the
  classes take their points in order of the perturbed scores)."""
  from jaxal.acquisition import base, class_balance  # pylint: disable=import-outside-toplevel
  options = {**DEFAULTS, **view.options}
  mode, balanced = options["stochastic"], bool(options["class_balanced"])
  if not mode and not balanced:
    return base.top_k_selectable(scores, view.selectable_mask, budget)
  if mode and not balanced:
    return stochastic_top_k(scores, view.selectable_mask, budget, fold_in(key, NOISE_STREAM),
                            mode=mode, temperature=float(options["temperature"]))
  probs = view.predictor.probs()
  scores = as_device_scores(scores)
  mask = _device_mask(np.asarray(view.selectable_mask, bool), scores)
  if mode:
    scores, has_nan = perturbed_scores(scores, mask, fold_in(key, NOISE_STREAM), mode=mode,
                                       temperature=_scalar(options["temperature"], scores))
    if jax.device_get(has_nan):
      raise FloatingPointError("acquisition produced NaN scores")
  predicted = jnp.argmax(probs, axis=-1).astype(jnp.int32)
  return class_balance.class_balanced_top_k(scores, predicted, view.selectable_mask, budget, int(probs.shape[-1]))
