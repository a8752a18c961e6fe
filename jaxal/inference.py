"""Running a model over a set of inputs in fixed-size padded chunks (one compilation).

`Predictor` holds a trained model and the inputs it scores (the pool, the test set, ...);
acquisitions ask it for what they need (logits, embeddings, MC-dropout statistics) and it
computes each thing once. It is plain inference: training (`train.trainer`), pretraining,
acquisition and `jaxal.query` all use it, so it sits below all of them.
Inputs are processed in chunks of `chunk_size`, the last one padded, so every call
has the same shape whatever the number of inputs. Results stay on the device (jax Arrays):
the chunks' outputs are joined there, and the caller decides when to read them, so a round
transfers what it selects once instead of syncing with the host after every chunk (it runs
under `jax.transfer_guard("disallow")`).
A streamed pool scored by several processes (`Predictor.spread`) keeps them where they were
computed: each device scores a contiguous block of the pool, and the outputs are global arrays
whose rows are split over the processes (`jaxal.global_arrays`; the selection kernels take them).
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from jaxal import compiles
from jaxal import parallel
from jaxal import progress
from jaxal import runtime as runtime_lib
from jaxal.data import stream

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


def _forward_chunk(model, preprocess, variables, rows, sharding=None, gather=True):
  x = preprocess(parallel.constrain_batch(rows, sharding))
  logits, embedding = model.apply(variables, x, train=False)
  out = logits.astype(jnp.float32), embedding.astype(jnp.float32)
  if sharding is not None:  # gather to every device, so every host can read the result; else left where computed
    out = parallel.constrain_batch(out, parallel.replicated(sharding.mesh) if gather else sharding)
  return out


@functools.lru_cache(maxsize=None)
def _forward_jit(options: tuple):
  """`_forward_chunk` jitted with the policy's compiler options (`Runtime.jit_compiler_options`:
  on the CPU, XLA's own convolutions, evaluation 1.0-1.2x faster, NOTES §6h), one per set."""
  return jax.jit(_forward_chunk, static_argnames=("model", "preprocess", "sharding", "gather"),
                 compiler_options=dict(options) or None)


def forward_jit(policy: runtime_lib.Runtime):
  """The jitted forward pass over one chunk that a Predictor under `policy` runs."""
  return _forward_jit(tuple(sorted((policy.jit_compiler_options() or {}).items())))


@functools.partial(jax.jit, static_argnames=("model", "preprocess", "num_samples", "group", "head_only",
                                             "sharding", "unroll", "gather"))
def _mc_chunk(model, preprocess, variables, rows, indices, key, *, num_samples, group, head_only, sharding=None,
              unroll=True, gather=True):
  """Per-point MC-dropout statistics of one chunk, accumulated over passes (never (T, B, C)).

  The groups of passes run as straight-line code with `unroll` (XLA:CPU runs convolutions
  inside while loops very slowly, see train/step.py), else as one `lax.scan` (compiled
  once, whatever the number of groups); both add the groups in the same order."""
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
  if unroll:
    carry = zeros
    for g in range(ts.shape[0]):
      carry, _ = accumulate(carry, ts[g])
  else:
    carry, _ = jax.lax.scan(accumulate, zeros, ts)
  if not gather:  # where the gathered program gathers the sums: XLA then folds the tail alike (same bits)
    carry = jax.lax.optimization_barrier(carry)
  sp, sh, votes, s1, s2 = carry
  mean_p1 = s1 / num_samples
  out = (sp / num_samples, sh / num_samples, votes, jnp.maximum(s2 / num_samples - mean_p1 ** 2, 0.0), c_hat)
  if sharding is not None:
    out = parallel.constrain_batch(out, parallel.replicated(sharding.mesh) if gather else sharding)
  return out


@functools.partial(jax.jit, static_argnames=("n",))
def _rows_buffer(chunk, n: int):
  """Per output of the first chunk, an `(n, ...)` array (laid out as the chunk's) whose first
  rows are the chunk's; `_write_rows` fills in the others."""
  first = lambda c: c[:n] if n <= c.shape[0] else jnp.zeros((n,) + c.shape[1:], c.dtype).at[:c.shape[0]].set(c)
  return jax.tree_util.tree_map(first, chunk)


@functools.partial(jax.jit, static_argnames=("count",), donate_argnums=0)
def _write_rows(out, chunk, start, count: int):
  """`out` with rows `[start, start + count)` set to the chunk's first `count` rows, in place
  (`out` is donated): the pool's outputs are joined chunk by chunk, never held twice."""
  return jax.tree_util.tree_map(lambda o, c: jax.lax.dynamic_update_slice_in_dim(o, c[:count], start, 0), out, chunk)


@functools.partial(jax.jit, static_argnames=("sharding",))
def _spread_rows(chunks, sharding):
  """The chunks' outputs joined into arrays whose row `r` is pool row `r`, split over the
  `data` axis as they were computed (`spread_chunks` gives device `d` of chunk `j` the rows
  `d * padded / D + j * chunk / D + [0, chunk / D)`): each device keeps its own results, and
  the rows past the pool's are padding."""
  devices = sharding.mesh.shape[parallel.DATA_AXIS]

  def join(*parts):
    x = jnp.stack(parts)  # (chunks, chunk, ...), the chunk's rows split over the devices
    x = x.reshape((x.shape[0], devices, x.shape[1] // devices) + x.shape[2:])
    x = jnp.swapaxes(x, 0, 1)  # device-major: each device's rows in pool order
    return parallel.constrain_batch(x.reshape((-1,) + x.shape[3:]), sharding)

  return jax.tree_util.tree_map(join, *chunks)


@jax.jit
def _softmax(logits):
  return jax.nn.softmax(logits, axis=-1)


@jax.jit
def class_and_confidence(probs):
  """Each row's most probable class and its probability, `(n,)` each, on the device (one
  compile per pool size, whatever the number of rows the caller then reads)."""
  return jnp.argmax(probs, axis=-1).astype(jnp.int32), jnp.max(probs, axis=-1)


def put_beside(host_array, array: jax.Array) -> jax.Array:
  """`host_array` put explicitly on every device that holds part of `array` (one transfer;
  passing numpy to a jitted function would be an implicit one)."""
  sharding = array.sharding
  if not sharding.is_fully_replicated:
    sharding = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
  return jax.device_put(np.asarray(host_array), sharding)


def _group_size(num_samples: int, cap: int) -> int:
  """The largest divisor of `num_samples` that is at most `cap` (passes vmapped at once)."""
  return max(g for g in range(1, min(cap, num_samples) + 1) if num_samples % g == 0)


def chunk_indices(n: int, chunk_size: int):
  """Yields `(index_array, valid)` pairs of length `chunk_size`, the last one padded with 0s."""
  for start in range(0, n, chunk_size):
    idx = np.arange(start, start + chunk_size, dtype=np.int32)
    valid = idx < n
    yield np.where(valid, idx, 0).astype(np.int32), valid


def spread_chunks(n: int, chunk_size: int, devices: int) -> list[np.ndarray]:
  """Pool indices of each chunk when the outputs stay spread over `devices` (`_spread_rows`):
  device `d` scores a contiguous block of the pool, `chunk_size / devices` rows per chunk.
  Rows past `n` (padding) read row 0."""
  share = chunk_size // devices
  num_chunks = -(-n // chunk_size)
  rows = np.arange(num_chunks * chunk_size).reshape(devices, num_chunks, share)
  return [np.where(c < n, c, 0).astype(np.int32) for c in rows.transpose(1, 0, 2).reshape(num_chunks, chunk_size)]


@dataclasses.dataclass
class Predictor:
  """A trained model plus the pool inputs it scores.

  Attributes:
    model: the Linen `Classifier`, or anything hashable with the same
      `apply(variables, x, *, train, mc_dropout, rngs, method)` (`querying.ApplyFnModel`
      wraps a user's apply function so).
    variables: its `{"params", "batch_stats"}`.
    inputs: pool inputs on device, uint8 images or int token ids, shape `(n, ...)`, or a
      streamed pool (`jaxal.data.stream.StreamedInputs`) whose chunks are read from disk.
    preprocess: a jittable function mapping raw inputs to model inputs (hashable).
    chunk_size: rows per forward call.
    verbose: print progress.
    rows: optional indices into `inputs` to score instead of every row (any count: the
      chunks gather by index, so their shapes never change).
    sharding: how to split each chunk over devices (`parallel.batch_sharded(mesh)`), or None.
    runtime: the runtime policy (`jaxal.runtime`); None: the model's own, else the "auto" policy
      of JAX's default backend (`models.runtime_for`). The model runs under it.
      Its `unroll_steps` picks straight-line MC-dropout passes or a `lax.scan` over them.
  """

  model: Any
  variables: Any
  inputs: Array
  preprocess: Callable
  chunk_size: int = 512
  verbose: bool = False
  rows: np.ndarray | None = None
  sharding: Any = None
  runtime: runtime_lib.Runtime | None = None
  _cache: dict = dataclasses.field(default_factory=dict, repr=False)

  def __post_init__(self):
    self.inputs, self.variables = parallel.on_auto_mesh((self.inputs, self.variables))  # see parallel.py
    from jaxal import models  # pylint: disable=g-import-not-at-top  (models import this module's users)
    self.runtime = models.runtime_for(self.model, self.runtime)
    self.model = models.with_runtime(self.model, self.runtime)

  @property
  def num_points(self) -> int:
    return int(self.inputs.shape[0] if self.rows is None else len(self.rows))

  @property
  def spread(self) -> bool:
    """Whether the outputs stay spread over processes: a streamed pool scored by several
    processes, each keeping the results of the rows it read (`global_arrays`)."""
    return (self.rows is None and self.sharding is not None and not self.sharding.is_fully_addressable
            and stream.is_streamed(self.inputs))

  def _kept(self) -> dict:
    """The chunk programs' `gather=False` when the outputs stay spread (no argument otherwise:
    the same compiled programs as before)."""
    return {"gather": False} if self.spread else {}

  def _chunks(self, label: str):
    """Each chunk's pool indices and input rows, on the device (put there explicitly: no implicit
    transfer). A streamed pool's rows are read on the host ahead of use (`stream.prefetched`)
    and put beside the rows the in-memory pool gathers, so the same compiled programs run."""
    if self.spread:  # each device scores a contiguous block of the pool, its rows stay there
      chunks = spread_chunks(self.num_points, self.chunk_size, self.sharding.mesh.shape[parallel.DATA_AXIS])
    else:
      chunks = [idx if self.rows is None else np.asarray(self.rows, np.int32)[idx]
                for idx, _ in chunk_indices(self.num_points, self.chunk_size)]
    sharding = None if self.sharding is None else parallel.replicated(self.sharding.mesh)
    streamed = None
    if stream.is_streamed(self.inputs):  # with several processes, each reads its own share of a chunk
      mine = stream.local_positions(self.sharding, self.chunk_size)
      streamed = stream.prefetched(self.inputs, [idx[mine] for idx in chunks])
    for idx in progress.track(chunks, label, enabled=self.verbose and parallel.is_primary()):
      idx = jax.device_put(idx, sharding)
      if streamed is None:
        yield idx, _gather_rows(self.inputs, idx, self.sharding)
      else:
        yield idx, stream.put_rows(next(streamed), mine, self.chunk_size, self.sharding)

  def _join(self, parts):
    """The chunks' outputs (an iterable, consumed as they come) as whole arrays: on the device
    for the pool (whose size is fixed, so the join's programs compile once), each chunk written
    into one array per output as it comes (`_write_rows`: the chunks and the whole are never
    held at once); on the host, with one explicit transfer, for `rows` subsets, whose size
    changes from round to round (a device join would compile once per size). Spread outputs
    (`spread`) are joined where they were computed (`_spread_rows`)."""
    if self.spread:
      return _spread_rows(list(parts), self.sharding)
    if self.rows is None:
      out, sharding = None, None if self.sharding is None else parallel.replicated(self.sharding.mesh)
      for j, part in enumerate(parts):
        start = j * self.chunk_size
        if out is None:
          out = _rows_buffer(part, self.num_points)
          compiles.release_host_memory()  # what compiling the chunk's program left (compiles.py)
        else:  # the offset put explicitly (a round runs under jax.transfer_guard("disallow"))
          out = _write_rows(out, part, jax.device_put(np.int32(start), sharding),
                            min(self.chunk_size, self.num_points - start))
      return out
    host = jax.device_get(list(parts))
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:self.num_points], *host)

  def outputs(self) -> tuple[jax.Array, jax.Array]:
    """`(logits (n, C), embeddings (n, d))` in float32 for every pool point, as device
    arrays (cached; `jax.device_get` reads them); numpy arrays for a `rows` subset. When
    `spread`, global arrays of `padded >= n` rows split over the processes (rows >= n are
    padding; `global_arrays.fetch` reads them)."""
    if "outputs" not in self._cache:
      forward = forward_jit(self.runtime)
      self._cache["outputs"] = self._join(forward(self.model, self.preprocess, self.variables, rows, self.sharding,
                                                  **self._kept()) for _, rows in self._chunks("scoring pool"))
    return self._cache["outputs"]

  def probs(self) -> jax.Array:
    """Softmax of the logits, `(n, C)` on the device (cached; numpy for a `rows` subset)."""
    if "probs" not in self._cache:
      logits = self.outputs()[0]
      self._cache["probs"] = scipy.special.softmax(logits, axis=-1) if isinstance(logits, np.ndarray) else _softmax(logits)
    return self._cache["probs"]

  def mc_statistics(self, num_samples: int, key: jax.Array, *, head_only: bool | None = None,
                    group: int = 0) -> dict[str, jax.Array]:
    """MC-dropout statistics over `num_samples` stochastic passes (dropout on, BN frozen).

    Pass `t` of pool row `i` uses the key `fold_in(fold_in(key, i), t)`, so results do not
    depend on the chunk size or on which rows share a chunk. With `head_only` (default:
    when the backbone has no dropout of its own), the embedding is computed once and only
    the head is re-run; it gives exactly the full model's passes for the same keys.
    `group` passes are vmapped at once (default: all T for the head, 4 for the full model).

    Returns:
      device arrays `mean_probs (n, C)`, `mean_entropy (n,)`, `votes (n, C)` (argmax
      counts), `pred_class_variance (n,)` (variance over passes of the deterministic
      class's probability) and `pred_class (n,)` (cached per arguments); padded global
      arrays when `spread` (as `outputs`).
    """
    if head_only is None:  # a model without a separate backbone (a user's apply_fn) runs whole
      backbone = getattr(self.model, "backbone", None)
      head_only = backbone is not None and not getattr(backbone, "dropout_in_backbone", False)
    group = _group_size(num_samples, group or (num_samples if head_only else 4))
    key_bits = tuple(np.asarray(jax.device_get(jax.random.key_data(key))).ravel().tolist())
    cache_key = ("mc", num_samples, head_only, group, key_bits)
    if cache_key not in self._cache:
      parts = (_mc_chunk(self.model, self.preprocess, self.variables, rows, idx, key, num_samples=num_samples,
                         group=group, head_only=head_only, sharding=self.sharding, unroll=self.runtime.unroll_steps,
                         **self._kept())
               for idx, rows in self._chunks(f"MC-dropout x{num_samples}"))
      names = ("mean_probs", "mean_entropy", "votes", "pred_class_variance", "pred_class")
      self._cache[cache_key] = dict(zip(names, self._join(parts)))
    return self._cache[cache_key]
