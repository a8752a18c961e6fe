"""BatchBALD (Kirsch, van Amersfoort & Gal, "BatchBALD: Efficient and Diverse Batch Acquisition
for Deep Bayesian Active Learning", NeurIPS 2019; reference code `BlackHC/BatchBALD`).

Definition. For T parameter samples w_t (MC-dropout passes) with `p_t(y|x) = p(y|x, w_t)`,
BatchBALD picks the batch maximizing the joint mutual information
  I(y_1..y_b; w) = H(y_1..y_b) - sum_i E_w H(y_i|w),
  H(y_1..y_b) = -sum_{y_1..y_b} p(y_1..y_b) log p(y_1..y_b),  p(y_1..y_b) = mean_t prod_i p_t(y_i),
greedily: step k adds the selectable point x maximizing H(y_1..y_{k-1}, y_x) - E_w H(y_x|w)
(the chosen points' conditional entropies are common to all candidates). Step 1 is BALD.

Joint entropies, as the reference code computes them:
* exact while the chosen points' class configurations number C^k <= `num_samples`: the (T, C^k)
  matrix `P[t, m] = prod_i p_t(y_i^m)` over every configuration m is kept and extended by one
  factor per pick, and H = -sum_{m,c} a log a with a_{mc} = mean_t P[t, m] p_t(c|x) (a matmul);
* beyond that, estimated from M sampled configurations with the importance-weighted estimator
  H ~ -(1/M) sum_m sum_c (a_{mc} / q_m) log a_{mc}, q_m = mean_t P[t, m], the configurations
  drawn from the joint: M/T of them under each w_t (stratified, as `sample_M_K` does).

Choices where the paper leaves room (all documented for reproducibility):
* `num_samples` (default 40000, the reference code's `40000 // T * T`) is both the exact-path
  limit on C^k and the number of sampled configurations, rounded down to a multiple of T
  (at least T).
* Samples are drawn once, when the exact path ends, and then extended by one class per pick,
  drawn from p_{t_m}(y|x_pick) of the sample's own w_{t_m} (given w the classes are
  independent). These are exact draws from the joint of the chosen points, like the reference
  code's fresh draws at every step, but O(T M) per pick instead of O(k T M). Each column of P
  is rescaled to max 1 after every pick (the scale's log is kept), so 100 picks do not underflow
  in float32; the estimator is invariant to a column's scale except for the logged term.
* Float32 on the device (the reference uses float64): objective values agree with a float64
  computation to about 1e-5 relative; near-ties may break differently.
* Lazy greedy (Minoux 1978; the objective is submodular, paper Sec. 3.1): a candidate's gain
  computed at an earlier step bounds its gain now, so each step recomputes only the `lazy`
  (default 256) candidates of highest bound, and all of them when the best fresh gain falls
  below the next bound. Exact joint entropies: the same picks as plain greedy (up to float32
  rounding). Sampled ones: the estimated gains are bounds only up to the estimator's noise, so
  picks may differ from plain greedy on near-ties (`lazy=0` is plain greedy).
* Ties go to the lower index. A fixed `key` gives the same picks.
* The joint needs the same w_t for every point ("consistent MC dropout", paper Sec. 4):
  `mc_probabilities` uses the dropout key `fold_in(key, t)` for pass t of every row, unlike
  `Predictor.mc_statistics` (one key per row, fine for per-point BALD only).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from jaxal.acquisition import base
from jaxal.acquisition.base import top_k_selectable
from jaxal import inference

Array = jax.Array

DEFAULTS = {"mc_samples": 100, "mc_head_only": None, "batchbald_candidates": 1000, "batchbald_samples": 40000}
_ELEMENTS_PER_CHUNK = 1 << 23  # floats of a = (M, chunk, C) held at once (32 MiB)


def _entropy(p, axis=-1):
  return -jnp.sum(xlogy(p, p), axis=axis)


def _candidate_chunks(mc_probs, width: int):
  """`(T, n, C)` -> `(chunks, T, B*C)` with n padded to a multiple of B (zero rows)."""
  t, n, c = mc_probs.shape
  b = max(1, min(n, _ELEMENTS_PER_CHUNK // (width * c)))
  padded = inference.pad_to_multiple(n, b)
  p = jnp.pad(mc_probs, ((0, 0), (0, padded - n), (0, 0)))
  return p.reshape(t, padded // b, b * c).transpose(1, 0, 2), b


def _joint_entropies(configs, weights, chunks, n: int, c: int):
  """`-sum_m weights_m sum_c xlogy(a, a)` per candidate, a = configs^T p_x / T: (n,)."""
  t = configs.shape[0]

  def one(p_chunk):  # (T, B*C)
    a = (configs.T @ p_chunk) / t  # (M, B*C)
    # A weighted sum, not `weights @`: XLA:CPU's dot accumulates M terms less accurately.
    return -jnp.sum(weights[:, None] * xlogy(a, a).reshape(a.shape[0], -1, c).sum(-1), axis=0)

  return jax.lax.map(one, chunks).reshape(-1)[:n]


def exact_steps(num_classes: int, budget: int, num_samples: int) -> int:
  """How many greedy steps use exact joint entropies: steps k = 0.. with C^k <= num_samples."""
  k = 0
  while k < budget and num_classes ** k <= num_samples:
    k += 1
  return k


def _greedy_step(entropies_of, width: int, full_chunks, mc_probs, cond_entropy, state, lazy: int):
  """One greedy pick. `entropies_of(chunks, count)` gives H(y_S, y_x) of the chunked candidates
  (`width` configurations).

  state = (open_mask, bounds, h_chosen): `bounds` are the gains f(S + x) - f(S) last computed,
  upper bounds now (submodularity). With `lazy` > 0 only the `lazy` highest bounds are
  recomputed; if the best of them is at least the next bound, it is the greedy pick; else
  every candidate is recomputed. Returns (pick, its joint entropy, new bounds)."""
  open_mask, bounds, h_chosen = state
  t, n, c = mc_probs.shape

  def full():
    gains = entropies_of(full_chunks, n) - cond_entropy - h_chosen
    pick = jnp.argmax(jnp.where(open_mask, gains, -jnp.inf)).astype(jnp.int32)
    return pick, gains[pick] + cond_entropy[pick] + h_chosen, gains

  if not 0 < lazy < n:
    return full()
  top_bounds, top = jax.lax.top_k(jnp.where(open_mask, bounds, -jnp.inf), lazy + 1)
  rows = top[:lazy]
  joint = entropies_of(_candidate_chunks(mc_probs[:, rows], width)[0], lazy)
  fresh = jnp.where(open_mask[rows], joint - cond_entropy[rows] - h_chosen, -jnp.inf)
  best = jnp.min(jnp.where(fresh == jnp.max(fresh), rows, n))  # ties to the lower index
  best_gain = jnp.max(fresh)
  slack = 1e-6 * (1.0 + jnp.abs(top_bounds[lazy]))  # float32 rounding of the bounds

  def accept():
    return best.astype(jnp.int32), best_gain + cond_entropy[best] + h_chosen, bounds.at[rows].set(fresh)

  return jax.lax.cond(best_gain >= top_bounds[lazy] + slack, accept, full)


@functools.partial(jax.jit, static_argnames=("budget", "num_samples", "lazy"))
def _batchbald(mc_probs, selectable_mask, key, *, budget: int, num_samples: int, lazy: int):
  mc_probs = mc_probs.astype(jnp.float32)
  t, n, c = mc_probs.shape
  cond_entropy = jnp.mean(_entropy(mc_probs), axis=0)  # E_w H(y|x, w)
  picks = jnp.zeros((budget,), jnp.int32)
  state = (selectable_mask, jnp.full((n,), jnp.inf), jnp.float32(0.0))
  configs = jnp.ones((t, 1), jnp.float32)
  n_exact = exact_steps(c, budget, num_samples)
  for k in range(n_exact):  # exact joint entropies, configs (T, C^k)
    width = configs.shape[1]
    entropies_of = functools.partial(_joint_entropies, configs, jnp.ones(width), c=c)
    pick, h, bounds = _greedy_step(entropies_of, width, _candidate_chunks(mc_probs, width)[0], mc_probs,
                                   cond_entropy, state, lazy if k else 0)
    picks, state = picks.at[k].set(pick), (state[0].at[pick].set(False), bounds, h)
    if k + 1 < n_exact:
      configs = (configs[:, :, None] * mc_probs[:, pick, None, :]).reshape(t, -1)
  if n_exact == budget:
    return picks

  # Sampled joint entropies: M configurations, M/T drawn under each w_t. Given w the picks'
  # classes are independent, so a configuration is drawn one class per pick.
  per_w = max(1, num_samples // t)
  m = per_w * t
  owner = jnp.arange(m) // per_w  # t_m

  def extend(samples, log_scale, pick, step_key):
    p_new = mc_probs[:, pick, :]  # (T, C)
    y = jax.random.categorical(step_key, jnp.log(p_new[owner]), axis=-1)  # (M,)
    samples = samples * p_new[:, y]
    scale = jnp.max(samples, axis=0)
    return samples / scale, log_scale + jnp.log(scale)

  samples, log_scale = jnp.ones((t, m), jnp.float32), jnp.zeros((m,), jnp.float32)
  for k in range(n_exact):
    samples, log_scale = extend(samples, log_scale, picks[k], jax.random.fold_in(key, k))
  chunks, _ = _candidate_chunks(mc_probs, m)

  def step(k, carry):
    samples, log_scale, picks, state = carry
    weights = 1.0 / (m * jnp.mean(samples, axis=0))
    offset = jnp.mean(log_scale)

    def entropies_of(chunks, count):
      return _joint_entropies(samples, weights, chunks, count, c) - offset

    pick, h, bounds = _greedy_step(entropies_of, m, chunks, mc_probs, cond_entropy, state, lazy)
    samples, log_scale = extend(samples, log_scale, pick, jax.random.fold_in(key, k))
    return samples, log_scale, picks.at[k].set(pick), (state[0].at[pick].set(False), bounds, h)

  return jax.lax.fori_loop(n_exact, budget, step, (samples, log_scale, picks, state))[2]


def batchbald(mc_probs, budget: int, *, num_samples: int = 40000, key=None, selectable_mask=None,
              lazy: int = 256) -> Array:
  """BatchBALD picks, in the order chosen (see the module docstring).

  Args:
    mc_probs: `(T, n, C)` probabilities from T consistent MC-dropout passes.
    budget: batch size b.
    num_samples: exact path while C^k <= num_samples; beyond, that many sampled configurations
      (rounded down to a multiple of T, at least T).
    key: PRNG key for the sampled path (default `jax.random.key(0)`).
    selectable_mask: `(n,)` bool, the candidates (default: all).
    lazy: lazy greedy (Minoux): recompute only the `lazy` candidates of highest stale gain, all
      of them when that cannot settle the pick; 0 recomputes every candidate at every step.

  Returns:
    `(budget,)` int32 device array of indices into the n points.
  """
  mc_probs = jnp.asarray(mc_probs)
  n = mc_probs.shape[1]
  mask = np.ones(n, bool) if selectable_mask is None else np.asarray(jax.device_get(selectable_mask), bool)
  if budget > int(mask.sum()):
    raise ValueError(f"budget {budget} exceeds the {int(mask.sum())} selectable points")
  key = jax.random.key(0) if key is None else key
  return _batchbald(mc_probs, inference.put_beside(mask, mc_probs), key, budget=int(budget),
                    num_samples=int(num_samples), lazy=int(lazy))


# ----------------------------------------------------------------------------- MC probabilities


@functools.partial(jax.jit, static_argnames=("model", "preprocess", "num_samples", "head_only"))
def _consistent_chunk(model, preprocess, variables, rows, key, *, num_samples: int, head_only: bool):
  """`(T, B, C)` softmax of T passes; pass t uses the dropout key `fold_in(key, t)` for every row."""
  x = preprocess(rows)
  h = model.apply(variables, x, train=False)[1] if head_only else None

  def one_pass(t):
    k = jax.random.fold_in(key, t)  # not batched: every row gets the same dropout mask
    if head_only:
      logits = jax.vmap(lambda hh: model.apply(variables, hh[None], mc_dropout=True, method="head",
                                               rngs={"dropout": k})[0])(h)
    else:
      logits = jax.vmap(lambda xx: model.apply(variables, xx[None], mc_dropout=True,
                                               rngs={"dropout": k})[0][0])(x)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

  return jax.lax.map(one_pass, jnp.arange(num_samples), batch_size=num_samples if head_only else 4)


@functools.partial(jax.jit, static_argnames=("n",))
def _join_passes(parts, n: int):
  return jnp.concatenate(parts, axis=1)[:, :n]


def default_head_only(predictor) -> bool:
  """As `Predictor.mc_statistics`: head-only when the backbone has no dropout of its own."""
  backbone = getattr(predictor.model, "backbone", None)
  return backbone is not None and not getattr(backbone, "dropout_in_backbone", False)


def pass_chunks(predictor, num_samples: int, key, rows=None, *, head_only: bool | None = None):
  """Yields `(T, chunk_size, C)` consistent MC-dropout probabilities of pool points `rows`
  (default: all), chunk by chunk; the last chunk is padded with copies of row `rows[0]`.

  Pass t of every row uses the dropout key `fold_in(key, t)`, so the passes are T joint
  samples of the weights, as BatchBALD and EPIG need; results do not depend on the chunking.
  """
  if head_only is None:
    head_only = default_head_only(predictor)
  rows = np.arange(predictor.num_points, dtype=np.int32) if rows is None else np.asarray(rows, np.int32)
  if predictor.rows is not None:
    rows = np.asarray(predictor.rows, np.int32)[rows]
  for idx, _ in inference.chunk_indices(len(rows), predictor.chunk_size):
    chunk = inference._gather_rows(predictor.inputs, jax.device_put(rows[idx]), predictor.sharding)
    yield _consistent_chunk(predictor.model, predictor.preprocess, predictor.variables, chunk, key,
                            num_samples=int(num_samples), head_only=bool(head_only))


def mc_probabilities(predictor, num_samples: int, key, rows=None, *, head_only: bool | None = None) -> Array:
  """`(T, len(rows), C)` consistent MC-dropout probabilities (see `pass_chunks`), on the device."""
  n = predictor.num_points if rows is None else len(rows)
  return _join_passes(list(pass_chunks(predictor, num_samples, key, rows, head_only=head_only)), n)


@functools.partial(jax.jit, static_argnames=("data",))
def fold_in(key, data: int):
  """`jax.random.fold_in` with the integer compiled in (no host-to-device transfer)."""
  return jax.random.fold_in(key, data)


@jax.jit
def _bald(mc_probs):
  return _entropy(jnp.mean(mc_probs, 0)) - jnp.mean(_entropy(mc_probs), 0)


@functools.partial(jax.jit, static_argnames=("n",))
def _join_rows(parts, n: int):
  return jnp.concatenate(parts)[:n]


def batchbald_acquire(view, budget: int, key) -> np.ndarray:
  """BatchBALD among the `batchbald_candidates` highest-BALD selectable points, BALD and
  BatchBALD from the same consistent passes (the pool's passes are streamed, never stored)."""
  options, predictor = view.options, view.predictor
  t, head_only = int(options["mc_samples"]), options["mc_head_only"]
  bald = _join_rows([_bald(p) for p in pass_chunks(predictor, t, key, head_only=head_only)], predictor.num_points)
  num_candidates = min(max(int(options["batchbald_candidates"]), budget), int(np.sum(view.selectable_mask)))
  candidates = top_k_selectable(bald, view.selectable_mask, num_candidates)
  probs = mc_probabilities(predictor, t, key, candidates, head_only=head_only)
  picks = batchbald(probs, budget, num_samples=int(options["batchbald_samples"]), key=fold_in(key, 1))
  return candidates[np.asarray(jax.device_get(picks))]


def validate(options: dict) -> None:
  """Raises `ConfigError` naming the option for a value BatchBALD cannot use."""
  base.check_counts(options, ("mc_samples", "batchbald_candidates", "batchbald_samples"))
  base.check_head_only(options)


__all__ = ["DEFAULTS", "batchbald", "batchbald_acquire", "exact_steps", "mc_probabilities", "pass_chunks",
           "validate"]
