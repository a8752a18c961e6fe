"""Running a model over the pool in fixed-size padded chunks (one compilation).

`Predictor` holds a trained model and the pool inputs; acquisitions ask it for what
they need (logits, embeddings, ...) and it computes each thing once per round.
Inputs are processed in chunks of `chunk_size`, the last one padded, so every call
has the same shape whatever the pool size.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import parallel
from jaxal import progress

Array = Any


def pad_to_multiple(n: int, chunk_size: int) -> int:
  return -(-n // chunk_size) * chunk_size


@functools.partial(jax.jit, static_argnames=("model", "preprocess", "sharding"))
def _forward_chunk(model, preprocess, variables, inputs, indices, sharding=None):
  indices = parallel.constrain_batch(indices, sharding)
  x = preprocess(jnp.take(inputs, indices, axis=0))
  logits, embedding = model.apply(variables, x, train=False)
  out = logits.astype(jnp.float32), embedding.astype(jnp.float32)
  if sharding is not None:  # gather to every device, so every host can read the result
    out = parallel.constrain_batch(out, parallel.replicated(sharding.mesh))
  return out


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
    model: the Linen `Classifier`.
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
        lg, em = _forward_chunk(self.model, self.preprocess, self.variables, self.inputs, idx, self.sharding)
        logits.append(np.asarray(lg)[valid])
        embeds.append(np.asarray(em)[valid])
      self._cache["outputs"] = (np.concatenate(logits), np.concatenate(embeds))
    return self._cache["outputs"]

  def probs(self) -> np.ndarray:
    logits, _ = self.outputs()
    return np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))
