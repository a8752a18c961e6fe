"""EPIG, expected predictive information gain (Bickford Smith, Kirsch, Farquhar, Gal & Foster,
"Prediction-Oriented Bayesian Active Learning", AISTATS 2023; reference code `fbickfordsmith/epig`).

Definition. For a pool input x and target inputs x* ~ p*(x*),
  EPIG(x) = E_{x*}[ I(y; y* | x, x*) ],
  I(y; y* | x, x*) = sum_{y,y*} p(y,y*) log( p(y,y*) / (p(y) p(y*)) ),
estimated from T joint parameter samples w_t (consistent MC-dropout passes):
  p(y,y*) = mean_t p_t(y|x) p_t(y*|x*),  p(y) = mean_t p_t(y|x),  p(y*) = mean_t p_t(y*|x*),
and the expectation over x* by the mean over the m target inputs, as the paper's `epig_from_probs`.
Since the marginals of p(y,y*) are p(y) and p(y*), I = H(y) + H(y*) - H(y,y*); only the joint
entropy needs the (C x C) tables, computed for a chunk of pool points against all targets as
one matmul contracting over t, `(B C, T) @ (T, m C)`.

Choices where the paper leaves room:
* Target inputs (`epig_targets`, default 100): drawn uniformly without replacement, with the
  acquisition key, from the selectable (unlabelled) pool points -- the paper's setting where the
  pool stands in for p*(x*); all of them when fewer are selectable.
* The pool's passes are streamed in chunks and never stored; targets and pool points see the
  same T weight samples (dropout key `fold_in(key, t)` for every row, `batchbald.pass_chunks`).
* Scores are clipped at 0 (float32 cancellation), as BALD's are; ties go to the lower index.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from jaxal.acquisition import base
from jaxal.acquisition.base import top_k_selectable
from jaxal.acquisition import batchbald as batchbald_lib

Array = jax.Array

DEFAULTS = {"mc_samples": 100, "mc_head_only": None, "epig_targets": 100}
# Joint-table floats (B C x m C) per chunk. On the CPU a table of 1 MiB stays in cache between
# the matmul that writes it and the entropy that reads it: with the reduction below, about 2x
# faster than 32 MiB tables at T=100, n=10k, C=10, m=100 on 2 shared cores (0.55 s against
# 1.1 s; benchmarks/selection.py --section epig).
_ELEMENTS_PER_CHUNK = 1 << 23
_CPU_ELEMENTS_PER_CHUNK = 1 << 18


def _entropy(p, axis=-1):
  return -jnp.sum(xlogy(p, p), axis=axis)


@jax.jit
def _epig_chunk(pool, target):
  """EPIG of `pool (T, B, C)` against `target (T, m, C)`: (B,)."""
  pool, target = pool.astype(jnp.float32), target.astype(jnp.float32)
  t, b, c = pool.shape
  m, c_star = target.shape[1:]
  joint = pool.reshape(t, b * c).T @ target.reshape(t, m * c_star) / t  # p(y, y*): (B C, m C*)
  # Sum over y first (stride m C*, whole rows at once), then over y* (contiguous).
  joint_entropy = -xlogy(joint, joint).reshape(b, c, m * c_star).sum(axis=1).reshape(b, m, c_star).sum(axis=2)
  h_pool = _entropy(jnp.mean(pool, axis=0))  # (B,)
  h_target = _entropy(jnp.mean(target, axis=0))  # (m,)
  return jnp.maximum(h_pool + jnp.mean(h_target) - jnp.mean(joint_entropy, axis=1), 0.0)


@functools.partial(jax.jit, static_argnames=("chunk",))
def _epig_chunks(mc_probs_pool, mc_probs_target, chunk: int):
  t, n, c = mc_probs_pool.shape
  padded = -(-n // chunk) * chunk
  pool = jnp.pad(mc_probs_pool, ((0, 0), (0, padded - n), (0, 0)))
  pool = pool.reshape(t, padded // chunk, chunk, c).transpose(1, 0, 2, 3)
  return jax.lax.map(lambda p: _epig_chunk(p, mc_probs_target), pool).reshape(-1)[:n]


def epig_scores(mc_probs_pool, mc_probs_target, *, elements_per_chunk: int | None = None) -> Array:
  """EPIG of each pool point, `(n,)` on the device (see the module docstring).

  Args:
    mc_probs_pool: `(T, n, C)` probabilities of the pool points.
    mc_probs_target: `(T, m, C)` probabilities of the target inputs, from the same T passes.
    elements_per_chunk: joint-table floats per chunk of pool points; default by the pool's
      device: 2^18 on the CPU (cache-sized), 2^23 elsewhere.
  """
  mc_probs_pool, mc_probs_target = jnp.asarray(mc_probs_pool), jnp.asarray(mc_probs_target)
  t, n, c = mc_probs_pool.shape
  m, c_star = mc_probs_target.shape[1:]
  if mc_probs_target.shape[0] != t:
    raise ValueError(f"pool and target need the same passes: T = {t} and {mc_probs_target.shape[0]}")
  if elements_per_chunk is None:
    on_cpu = not isinstance(mc_probs_pool, jax.core.Tracer) and all(
        d.platform == "cpu" for d in mc_probs_pool.devices())
    elements_per_chunk = _CPU_ELEMENTS_PER_CHUNK if on_cpu else _ELEMENTS_PER_CHUNK
  chunk = max(1, min(n, elements_per_chunk // (c * m * c_star)))
  return _epig_chunks(mc_probs_pool, mc_probs_target, chunk)


@functools.partial(jax.jit, static_argnames=("m",))
def _sample_targets(selectable_mask, key, m: int):
  """`m` distinct selectable indices, uniformly at random (Gumbel top-k of a constant score)."""
  noise = jax.random.uniform(key, selectable_mask.shape)
  return jax.lax.top_k(jnp.where(selectable_mask, noise, -1.0), m)[1].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("n",))
def _join_rows(parts, n: int):
  return jnp.concatenate(parts)[:n]


def epig_acquire(view, budget: int, key) -> np.ndarray:
  """Top-`budget` selectable points by EPIG against `epig_targets` target pool inputs."""
  options, predictor = view.options, view.predictor
  t, head_only = int(options["mc_samples"]), options["mc_head_only"]
  selectable = np.asarray(view.selectable_mask, bool)
  m = min(int(options["epig_targets"]), int(selectable.sum()))
  targets = np.asarray(jax.device_get(_sample_targets(jax.device_put(selectable), batchbald_lib.fold_in(key, 2), m)))
  target_probs = batchbald_lib.mc_probabilities(predictor, t, key, targets, head_only=head_only)
  scores = [epig_scores(p, target_probs) for p in batchbald_lib.pass_chunks(predictor, t, key, head_only=head_only)]
  return top_k_selectable(_join_rows(scores, predictor.num_points), selectable, budget)


def validate(options: dict) -> None:
  """Raises `ConfigError` naming the option for a value EPIG cannot use."""
  base.check_counts(options, ("mc_samples", "epig_targets"))
  base.check_head_only(options)


__all__ = ["DEFAULTS", "epig_acquire", "epig_scores", "validate"]
