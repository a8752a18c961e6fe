"""`Trainer.fit`: epochs of fixed-shape blocks of steps, oversampling, early stopping.

A `Trainer` is built once per architecture and reused every round, so its jitted
functions compile once. An epoch is `epoch_size` samples (0 = one pass over the labeled
set), drawn by cycling through reshuffled passes of the labeled set (oversampling, as in
active-iNAS); the step count is padded to a multiple of `steps_per_call` with no-op steps.
"""

import dataclasses
import functools
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import models as models_lib
from jaxal import parallel
from jaxal import runtime as runtime_lib
from jaxal.data import augment as augment_lib
from jaxal.data import stream
from jaxal.inference import Predictor
from jaxal.train import optim
from jaxal.train import step as step_lib


class TrainingDiverged(FloatingPointError):
  """The training loss became NaN or inf."""


@dataclasses.dataclass
class FitResult:
  state: step_lib.TrainState
  epochs: int
  train_loss: float
  train_accuracy: float
  val_accuracy: float | None
  stopped_early: bool


def epoch_indices(labeled: np.ndarray, epoch_size: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
  """`(steps, batch_size)` indices for one epoch: reshuffled passes over `labeled`.

  The sample count is `epoch_size` (or `len(labeled)` when 0), rounded up to whole batches.
  """
  total = epoch_size or labeled.size
  steps = max(1, math.ceil(total / batch_size))
  need = steps * batch_size
  passes = [rng.permutation(labeled) for _ in range(math.ceil(need / labeled.size))]
  return np.concatenate(passes)[:need].reshape(steps, batch_size).astype(np.int32)


def overlay(base, top, where: str = ""):
  """`base` with the subtrees of `top` put in place; keys and shapes must exist in `base`."""
  if not isinstance(top, dict) and not hasattr(top, "items"):
    if tuple(top.shape) != tuple(base.shape):
      raise ValueError(f"start variables: {where} has shape {tuple(top.shape)}, the model wants {tuple(base.shape)}")
    return jnp.asarray(top, base.dtype)
  out = dict(base)
  for name, sub in top.items():
    if name not in base:
      raise ValueError(f"start variables: {where}/{name} is not in the model")
    out[name] = overlay(base[name], sub, f"{where}/{name}")
  return out


class _StreamFeed:
  """A streamed pool's training batches: each block's `steps_per_call * batch_size` rows, read
  (from the labeled set cached in memory when it is small) ahead of use through grain, with their
  labels and their positions `(steps, batch)`; one compiled block serves every epoch length."""

  def __init__(self, inputs, labels, labeled, cfg, mesh):
    self.source, self.position = stream.labeled_rows(inputs, labeled)
    self.inputs, self.labels, self.mesh, self.spc = inputs, np.asarray(labels, np.int32), mesh, cfg.steps_per_call
    self.local = np.arange(self.spc * cfg.batch_size, dtype=np.int32).reshape(self.spc, cfg.batch_size)

  def blocks(self, idx: np.ndarray):
    batches = [idx[b:b + self.spc].reshape(-1) for b in range(0, idx.shape[0], self.spc)]
    read = lambda rows: (self.source.read(self.position(rows)), self.labels[rows])
    put = jnp.asarray if self.mesh is None else lambda x: parallel.replicate(x, self.mesh)
    for rows, labels in stream.prefetched(self.inputs, batches, read):
      yield put(rows), put(labels), self.local


class Trainer:
  """Holds the compiled init and training functions of one architecture."""

  def __init__(self, model, train_cfg, preprocess: Callable, augment: augment_lib.AugmentConfig,
               input_shape: tuple[int, ...], input_dtype, mesh=None, runtime: runtime_lib.Runtime | None = None):
    """`runtime` is the run's policy (default: `models.runtime_for(model)`); the model is
    cloned to run under it, and it picks the step block's loop form."""
    self.runtime = models_lib.runtime_for(model, runtime)
    self.model = model = models_lib.with_runtime(model, self.runtime)
    self.mesh = mesh
    self.batch_sharding = parallel.batch_sharded(mesh)
    if train_cfg.batch_size % parallel.num_devices(mesh):
      raise ValueError(f"train.batch_size {train_cfg.batch_size} is not divisible by the "
                       f"{parallel.num_devices(mesh)} devices of the data-parallel mesh")
    self.cfg = train_cfg
    self.preprocess = preprocess
    self.input_shape = tuple(input_shape)
    self.tx = optim.make_optimizer(train_cfg)
    self.lr_schedule = optim.parse_lr_schedule(train_cfg.lr_schedule)
    sample = jnp.zeros((1,) + self.input_shape, input_dtype)
    self._init = jax.jit(functools.partial(self._init_impl, sample=sample), out_shardings=parallel.replicated(mesh))
    self._block = jax.jit(
        functools.partial(step_lib.train_block, model=model, tx=self.tx, preprocess=preprocess, augment=augment,
                          batch_sharding=self.batch_sharding,
                          compute_dtype={"float32": jnp.float32, "bfloat16": jnp.bfloat16}[train_cfg.compute_dtype],
                          unroll=self.runtime.unroll_steps),
        donate_argnums=(0,), compiler_options=self.runtime.jit_compiler_options())

  def _init_impl(self, key, start=None, *, sample):
    variables = models_lib.init_variables(self.model, key, sample.shape, sample.dtype)
    if start is not None:
      variables = {col: overlay(tree, start.get(col, {}), col) for col, tree in variables.items()}
    return step_lib.TrainState(variables["params"], variables["batch_stats"], self.tx.init(variables["params"]))

  def init(self, key: jax.Array, start=None) -> step_lib.TrainState:
    """A fresh state; `start` (partial variables, e.g. a pretrained backbone) replaces its subtrees."""
    with jax.threefry_partitionable(self.runtime.partitionable_init):  # read while tracing the init
      return self._init(key, parallel.on_auto_mesh(start))

  def fit(self, key: jax.Array, inputs, labels: np.ndarray, labeled: np.ndarray, *,
          validation: tuple | None = None, epochs: int | None = None,
          track_best: bool = False, verbose: bool = False, start=None) -> FitResult:
    """Trains a fresh model on pool rows `labeled`.

    With `train.patience > 0` and a validation set, training stops after `patience` epochs
    without improvement and returns the best validation model. With `track_best`, the
    validation accuracy is measured every epoch and its maximum is reported (iNAS ranks
    candidates this way), without stopping early.

    Args:
      key: PRNG key; init, shuffling, augmentation and dropout all derive from it.
      inputs: device array of all pool inputs, or a streamed pool (`stream.StreamedInputs`).
      labels: `(n,)` int32 revealed labels (only `labeled` rows are read).
      labeled: indices of labeled pool rows.
      validation: optional `(device inputs, labels)` or `(device inputs, labels, rows)`.
      epochs: overrides `train.epochs` (same compiled steps, same lr schedule).
      track_best: report the best per-epoch validation accuracy.
      start: optional partial variables (e.g. `{"params": {"backbone": ...}, "batch_stats":
        {"backbone": ...}}`) that replace the fresh init's subtrees; the rest (the head)
        stays freshly initialized from `key`.
    """
    cfg = self.cfg
    inputs = parallel.on_auto_mesh(inputs)  # a user's Explicit-axis mesh, as parallel.py explains
    if labeled.size == 0:
      raise ValueError("cannot train on an empty labeled set")
    init_key, loop_key = jax.random.split(key)
    state = self.init(init_key, start)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(loop_key)).ravel().tolist())
    feed = _StreamFeed(inputs, labels, labeled, cfg, self.mesh) if stream.is_streamed(inputs) else None
    labels_dev = None if feed else parallel.replicate(jnp.asarray(labels, jnp.int32), self.mesh)
    spc = cfg.steps_per_call
    num_epochs = cfg.epochs if epochs is None else epochs
    use_val = validation is not None and (cfg.patience > 0 or track_best)
    best_acc, best_state, since_best = -1.0, None, 0
    loss = acc = float("nan")
    val_acc = None
    stopped = False
    start = time.perf_counter()
    epoch, lr = 0, optim.lr_at_epoch(0, self.lr_schedule)
    for epoch in range(num_epochs):
      idx = epoch_indices(labeled, cfg.epoch_size, cfg.batch_size, rng)
      steps = idx.shape[0]
      padded = math.ceil(steps / spc) * spc
      idx = np.concatenate([idx, np.zeros((padded - steps, cfg.batch_size), np.int32)])
      valid = np.arange(padded) < steps
      lr = optim.lr_at_epoch(epoch, self.lr_schedule)
      block_sums = []  # device scalars, summed on the host: adding them in jax would compile
      data_scale = np.float32(1.0 / labeled.size)  # scales a model's sown losses (KL / N)
      blocks = feed.blocks(idx) if feed else None
      for b in range(0, padded, spc):
        # The block's key is fold_in(loop_key, tag), folded inside the compiled block.
        tag = np.int32(epoch * 100_003 + b)
        # A streamed pool: the block's rows and labels, read ahead, indexed by their position.
        block_inputs, block_labels, block_idx = next(blocks) if feed else (inputs, labels_dev, idx[b:b + spc])
        state, (l, c) = self._block(state, block_inputs, block_labels, block_idx, valid[b:b + spc], loop_key, lr,
                                   data_scale, tag)
        block_sums.append((l, c))
      sums = np.asarray(jax.device_get(block_sums), np.float64).sum(0)
      loss = float(sums[0]) / steps
      acc = float(sums[1]) / (steps * cfg.batch_size)
      if not math.isfinite(loss):
        raise TrainingDiverged(f"training diverged: the loss became {loss} at epoch {epoch + 1} (lr {lr:g}); "
                               "lower train.lr_schedule or check the data")
      if use_val:
        val_acc = self.accuracy(state, *validation)
        if val_acc > best_acc:
          best_acc, since_best = val_acc, 0
          if cfg.patience > 0:  # copy: `state` is donated to the next block
            best_state = jax.tree_util.tree_map(jnp.copy, state)
        else:
          since_best += 1
      if verbose and parallel.is_primary() and (epoch + 1 == num_epochs or (epoch + 1) % max(1, num_epochs // 5) == 0):
        extra = f" val_acc {val_acc:.4f}" if val_acc is not None else ""
        print(f"  epoch {epoch + 1}/{num_epochs}: loss {loss:.4f} acc {acc:.4f}{extra} "
              f"({time.perf_counter() - start:.1f}s)", flush=True)
      if cfg.stop_at_train_accuracy and acc >= cfg.stop_at_train_accuracy:
        stopped = True
        break
      if use_val and cfg.patience > 0 and since_best >= cfg.patience:
        stopped = True
        break
    if best_state is not None:
      state = best_state
    # Each loss above precedes its step's update, so the last update (with one step, the only
    # one) shows in no loss: the trained model must still give finite outputs.
    logits, _ = Predictor(self.model, state.variables, inputs, self.preprocess, chunk_size=cfg.eval_chunk_size,
                          rows=labeled[:cfg.eval_chunk_size], sharding=self.batch_sharding,
                          runtime=self.runtime).outputs()
    if not np.isfinite(logits).all():
      raise TrainingDiverged(f"training diverged: the model's outputs became NaN or inf by epoch {epoch + 1} "
                             f"(lr {lr:g}); lower train.lr_schedule or check the data")
    if use_val:
      val_acc = best_acc
    return FitResult(state, epoch + 1, loss, acc, val_acc, stopped)

  def predictor(self, state: step_lib.TrainState, inputs, *, chunk_size: int, verbose: bool = False) -> Predictor:
    return Predictor(self.model, state.variables, inputs, self.preprocess, chunk_size=chunk_size, verbose=verbose,
                     sharding=self.batch_sharding, runtime=self.runtime)

  def accuracy(self, state, inputs, labels: np.ndarray, rows: np.ndarray | None = None,
               chunk_size: int = 512) -> float:
    """Accuracy on `inputs` (or on its `rows`) against `labels`."""
    predictor = Predictor(self.model, state.variables, inputs, self.preprocess, chunk_size=chunk_size, rows=rows,
                          sharding=self.batch_sharding, runtime=self.runtime)
    logits, _ = predictor.outputs()
    return float(np.mean(np.argmax(logits, -1) == labels))
