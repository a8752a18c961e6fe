"""Running a model over a set of inputs in fixed-size padded chunks (one compilation).

`Predictor` holds a trained model and the inputs it scores (the pool, the test set, ...);
acquisitions ask it for what they need (logits, embeddings, MC-dropout statistics) and it
computes each thing once. It is plain inference: training (`train.trainer`), pretraining,
acquisition and `jaxal.query` all use it, so it sits below all of them.
Inputs are processed in chunks of `chunk_size`, the last one padded, so every call
has the same shape whatever the number of inputs.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import cpu_runtime
from jaxal import parallel
from jaxal import progress

Array = Any


def pad_to_multiple(n: int, chunk_size: int) -> int:
  return -(-n // chunk_size) * chunk_size


@functools.partial(jax.jit, static_argnames=("sharding",))
def _gather_rows(inputs, indices, sharding=None):
  """Rows `indices` of `inputs`, split over devices. A separate (cheap) compile per inputs
  shape, so that the model's compiled chunk functions serve the pool, the test set and the
  validation set alike instead of compiling once per array."""
  indices = parallel.constrain_batch(indices, sharding)
  return parallel.constrain_batch(jnp.take(inputs, indices, axis=0), sharding)


def _model_jit(static_argnames):
  """`jax.jit` with `cpu_runtime.train_compiler_options()`: on the CPU, XLA's own convolutions
  (evaluation 1.0-1.2x faster, NOTES §6h), as in the training steps. The options are read
  at call time (they depend on the backend, which must not start at import)."""
  def wrap(fn):
    jitted = {}

    def current():
      """The jitted function for the current options (one per set of options)."""
      options = cpu_runtime.train_compiler_options()
      key = tuple(sorted((options or {}).items()))
      if key not in jitted:
        jitted[key] = jax.jit(fn, static_argnames=static_argnames, compiler_options=options)
      return jitted[key]

    @functools.wraps(fn)
    def call(*args, **kwargs):
      return current()(*args, **kwargs)
    call.current = current
    return call
  return wrap


@_model_jit(static_argnames=("model", "preprocess", "sharding"))
def _forward_chunk(model, preprocess, variables, rows, sharding=None):
  x = preprocess(parallel.constrain_batch(rows, sharding))
  logits, embedding = model.apply(variables, x, train=False)
  out = logits.astype(jnp.float32), embedding.astype(jnp.float32)
  if sharding is not None:  # gather to every device, so every host can read the result
    out = parallel.constrain_batch(out, parallel.replicated(sharding.mesh))
  return out


@functools.partial(jax.jit, static_argnames=("model", "preprocess", "num_samples", "group", "head_only",
                                             "sharding"))
def _mc_chunk(model, preprocess, variables, rows, indices, key, *, num_samples, group, head_only, sharding=None):
  """Per-point MC-dropout statistics of one chunk, accumulated over passes (never (T, B, C))."""
  indices = parallel.constrain_batch(indices, sharding)
  x = preprocess(parallel.constrain_batch(rows, sharding))
  det_logits, h = model.apply(variables, x, train=False)
  c_hat = jnp.argmax(det_logits, axis=-1)
  # The variance accumulates shifted by the deterministic probability, against cancellation.
  shift = jnp.take_along_axis(jax.nn.softmax(det_logits.astype(jnp.float32), axis=-1), c_hat[:, None], axis=-1)[:, 0]
  row_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)  # one key per pool row

  def one_pass(t):
    keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(row_keys)
    if head_only:
      logits = jax.vmap(lambda hh, k: model.apply(variables, hh[None], mc_dropout=True, method="head",
                                                  rngs={"dropout": k})[0])(h, keys)
    else:
      logits = jax.vmap(lambda xx, k: model.apply(variables, xx[None], mc_dropout=True,
                                                  rngs={"dropout": k})[0][0])(x, keys)
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)

  def accumulate(carry, ts):
    logp = jax.vmap(one_pass)(ts)  # (group, B, C)
    p = jnp.exp(logp)
    p_hat = jnp.take_along_axis(p, c_hat[None, :, None], axis=-1)[..., 0] - shift
    votes = jax.nn.one_hot(jnp.argmax(logp, -1), p.shape[-1]).sum(0)
    ent = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)
    sums = (p.sum(0), ent.sum(0), votes, p_hat.sum(0), (p_hat ** 2).sum(0))
    return jax.tree_util.tree_map(jnp.add, carry, sums), None

  b, c = det_logits.shape
  zeros = (jnp.zeros((b, c)), jnp.zeros((b,)), jnp.zeros((b, c)), jnp.zeros((b,)), jnp.zeros((b,)))
  ts = jnp.arange(num_samples).reshape(num_samples // group, group)
  # A Python loop, not lax.scan: convolutions inside XLA:CPU while loops are very slow
  # (see train/step.py).
  carry = zeros
  for g in range(ts.shape[0]):
    carry, _ = accumulate(carry, ts[g])
  sp, sh, votes, s1, s2 = carry
  mean_p1 = s1 / num_samples
  out = (sp / num_samples, sh / num_samples, votes, jnp.maximum(s2 / num_samples - mean_p1 ** 2, 0.0), c_hat)
  if sharding is not None:
    out = parallel.constrain_batch(out, parallel.replicated(sharding.mesh))
  return out


def _group_size(num_samples: int, cap: int) -> int:
  """The largest divisor of `num_samples` that is at most `cap` (passes vmapped at once)."""
  return max(g for g in range(1, min(cap, num_samples) + 1) if num_samples % g == 0)


def chunk_indices(n: int, chunk_size: int):
  """Yields `(index_array, valid)` pairs of length `chunk_size`, the last one padded with 0s."""
  for start in range(0, n, chunk_size):
    idx = np.arange(start, start + chunk_size, dtype=np.int32)
    valid = idx < n
    yield np.where(valid, idx, 0).astype(np.int32), valid


@dataclasses.dataclass
class Predictor:
  """A trained model plus the pool inputs it scores.

  Attributes:
    model: the Linen `Classifier`, or anything hashable with the same
      `apply(variables, x, *, train, mc_dropout, rngs, method)` (`querying.ApplyFnModel`
      wraps a user's apply function so).
    variables: its `{"params", "batch_stats"}`.
    inputs: pool inputs on device, uint8 images or int token ids, shape `(n, ...)`.
    preprocess: a jittable function mapping raw inputs to model inputs (hashable).
    chunk_size: rows per forward call.
    verbose: print progress.
    rows: optional indices into `inputs` to score instead of every row (any count: the
      chunks gather by index, so their shapes never change).
    sharding: how to split each chunk over devices (`parallel.batch_sharded(mesh)`), or None.
  """

  model: Any
  variables: Any
  inputs: Array
  preprocess: Callable
  chunk_size: int = 512
  verbose: bool = False
  rows: np.ndarray | None = None
  sharding: Any = None
  _cache: dict = dataclasses.field(default_factory=dict, repr=False)

  @property
  def num_points(self) -> int:
    return int(self.inputs.shape[0] if self.rows is None else len(self.rows))

  def outputs(self) -> tuple[np.ndarray, np.ndarray]:
    """`(logits (n, C), embeddings (n, d))` in float32 for every pool point (cached)."""
    if "outputs" not in self._cache:
      n = self.num_points
      logits, embeds = [], []
      chunks = list(chunk_indices(n, self.chunk_size))
      for idx, valid in progress.track(chunks, "scoring pool", enabled=self.verbose and parallel.is_primary()):
        if self.rows is not None:
          idx = np.asarray(self.rows, np.int32)[idx]
        rows = _gather_rows(self.inputs, idx, self.sharding)
        lg, em = _forward_chunk(self.model, self.preprocess, self.variables, rows, self.sharding)
        logits.append(np.asarray(lg)[valid])
        embeds.append(np.asarray(em)[valid])
      self._cache["outputs"] = (np.concatenate(logits), np.concatenate(embeds))
    return self._cache["outputs"]

  def probs(self) -> np.ndarray:
    logits, _ = self.outputs()
    return np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))

  def mc_statistics(self, num_samples: int, key: jax.Array, *, head_only: bool | None = None,
                    group: int = 0) -> dict[str, np.ndarray]:
    """MC-dropout statistics over `num_samples` stochastic passes (dropout on, BN frozen).

    Pass `t` of pool row `i` uses the key `fold_in(fold_in(key, i), t)`, so results do not
    depend on the chunk size or on which rows share a chunk. With `head_only` (default:
    when the backbone has no dropout of its own), the embedding is computed once and only
    the head is re-run; it gives exactly the full model's passes for the same keys.
    `group` passes are vmapped at once (default: all T for the head, 4 for the full model).

    Returns:
      `mean_probs (n, C)`, `mean_entropy (n,)`, `votes (n, C)` (argmax counts),
      `pred_class_variance (n,)` (variance over passes of the deterministic class's
      probability) and `pred_class (n,)`.
    """
    if head_only is None:  # a model without a separate backbone (a user's apply_fn) runs whole
      backbone = getattr(self.model, "backbone", None)
      head_only = backbone is not None and not getattr(backbone, "dropout_in_backbone", False)
    group = _group_size(num_samples, group or (num_samples if head_only else 4))
    cache_key = ("mc", num_samples, head_only, group, tuple(np.asarray(jax.random.key_data(key)).ravel().tolist()))
    if cache_key not in self._cache:
      parts = []
      chunks = list(chunk_indices(self.num_points, self.chunk_size))
      for idx, valid in progress.track(chunks, f"MC-dropout x{num_samples}", enabled=self.verbose and parallel.is_primary()):
        if self.rows is not None:
          idx = np.asarray(self.rows, np.int32)[idx]
        rows = _gather_rows(self.inputs, idx, self.sharding)
        out = _mc_chunk(self.model, self.preprocess, self.variables, rows, idx, key,
                        num_samples=num_samples, group=group, head_only=head_only, sharding=self.sharding)
        parts.append([np.asarray(o)[valid] for o in out])
      names = ("mean_probs", "mean_entropy", "votes", "pred_class_variance", "pred_class")
      self._cache[cache_key] = {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(names)}
    return self._cache[cache_key]
