"""Pure, jitted training steps.

`train_block` runs a fixed number of SGD steps (unrolled or scanned); each step gathers its
batch from the device-resident pool by index, preprocesses and augments it, and applies
one update. Steps whose `valid` flag is False leave the state untouched, so an epoch of
any length runs through the same compiled block: the labeled set can grow every round
without a recompile.

Two hooks serve Bayesian architecture models (ALGORITHMS.md §9, §10); models that use
neither trace exactly the code they did before:
* a model may `sow` scalars into the `"losses"` collection (e.g. a KL divergence over
  global variational parameters); the step adds their sum times `data_scale`, which the
  trainer sets to 1 / (labeled-set size), giving the per-example negative ELBO;
* in training a model may return logits with a leading sample axis, `(S, batch, classes)`;
  the cross-entropy is then averaged over samples and examples, and accuracy counts the
  prediction of the sample-averaged probabilities.
"""

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from jaxal import parallel
from jaxal.data import augment as augment_lib

Array = Any


@flax.struct.dataclass
class TrainState:
  params: Any
  batch_stats: Any
  opt_state: Any

  @property
  def variables(self):
    return {"params": self.params, "batch_stats": self.batch_stats}


def cross_entropy(*, logits: Array, labels: Array) -> Array:
  """Per-example softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def train_block(state: TrainState, inputs: Array, labels: Array, batch_indices: Array, valid: Array,
                key: Array, learning_rate: Array, data_scale: Array = 0.0, key_tag: Array | None = None, *,
                model, tx: optax.GradientTransformation,
                preprocess: Callable, augment: augment_lib.AugmentConfig, batch_sharding=None,
                compute_dtype=jnp.float32, unroll: bool = True):
  """Runs `len(valid)` steps; returns the new state and per-step (loss, correct) sums.

  Args:
    state: the `TrainState` (donated).
    inputs: all pool inputs on device, `(n, ...)`.
    labels: revealed labels `(n,)`; only labeled indices are ever gathered.
    batch_indices: `(steps, batch)` int32 pool indices.
    valid: `(steps,)` bool; False steps are no-ops.
    key: PRNG key for augmentation and dropout.
    learning_rate: scalar fed into the injected optimizer hyperparameter.
    data_scale: multiplier of the model's sown `"losses"` (1 / labeled-set size).
    key_tag: optional int32; the block uses `fold_in(key, key_tag)`, computed here rather
      than eagerly per block on the host (an eager `fold_in` costs a dispatch, ~3 ms on CPU).
    batch_sharding: where to place each batch (split over the mesh's data axis), or None.
    compute_dtype: bfloat16 runs the forward and backward pass in bf16 (mixed precision);
      parameters, optimizer state, BatchNorm statistics and the loss stay float32.
    unroll: the steps as straight-line code (the CPU policy: on XLA:CPU a convolution inside
      a while loop ran ~35x slower, benchmarks/NOTES.md) or as one `lax.scan` (accelerators:
      the step compiles once, whatever the block length). Same steps, same keys.
  Returns:
    `(state, (loss_sum, correct_sum))`, sums over valid steps of batch means/counts.
  """
  if key_tag is not None:
    key = jax.random.fold_in(key, key_tag)
  keys = jax.random.split(key, valid.shape[0])

  def one_step(state, xs):
    idx, ok, k = xs
    k_aug, k_drop = jax.random.split(k)
    idx = parallel.constrain_batch(idx, batch_sharding)
    x = preprocess(jnp.take(inputs, idx, axis=0))
    if augment.enabled:
      x = augment_lib.augment_batch(k_aug, x, augment)
    y = jnp.take(labels, idx, axis=0)

    def loss_fn(params):
      cast = lambda t: jax.tree_util.tree_map(
          lambda a: a.astype(compute_dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, t)
      (logits, _), updates = model.apply({"params": cast(params), "batch_stats": state.batch_stats}, cast(x),
                                         train=True, mutable=["batch_stats", "losses"], rngs={"dropout": k_drop})
      stats = jax.tree_util.tree_map(lambda new, old: new.astype(old.dtype), updates.get("batch_stats", {}),
                                     state.batch_stats)
      loss = cross_entropy(logits=logits, labels=jnp.broadcast_to(y, logits.shape[:-1])).mean()
      extra = jax.tree_util.tree_leaves(updates.get("losses", {}))
      if extra:  # a Python branch: models that sow nothing compile the plain cross-entropy
        loss = loss + data_scale * sum(jnp.sum(v).astype(jnp.float32) for v in extra)
      return loss, (logits, stats)

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    opt_state = state.opt_state
    opt_state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
    updates, opt_state = tx.update(grads, opt_state, state.params)
    new = TrainState(optax.apply_updates(state.params, updates), batch_stats, opt_state)
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, state)
    if logits.ndim == 3:  # (S, batch, classes): predict with the sample-averaged probabilities
      logits = jax.nn.logsumexp(jax.nn.log_softmax(logits.astype(jnp.float32), -1), axis=0)
    correct = jnp.sum(jnp.argmax(logits, -1) == y)
    return new, (jnp.where(ok, loss, 0.0), jnp.where(ok, correct, 0))

  if unroll:
    losses, correct = [], []
    for i in range(valid.shape[0]):
      state, (loss, hits) = one_step(state, (batch_indices[i], valid[i], keys[i]))
      losses.append(loss)
      correct.append(hits)
    losses, correct = jnp.stack(losses), jnp.stack(correct)
  else:
    state, (losses, correct) = jax.lax.scan(one_step, state, (batch_indices, valid, keys))
  return state, (losses.sum(), correct.sum())
