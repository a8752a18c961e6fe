"""P-DARTS (Chen et al. 2019; `chenxin061/pdarts`), following ALGORITHMS.md §8.

Each round (mode `joint`), or once on the initial labeled set (mode `spo`), the labeled set
is split `train_portion` / rest into D_train and D_val with a fixed seed, and three stages
run. Stage s builds a `SuperNet` with `layers[s]` cells and the ops still switched on,
fresh weights and fresh α (only the switches carry over), and trains it for `epochs`
epochs of D_train batches: the first `warmup_epochs` update only the weights; afterwards
each step first takes one Adam step on α with a D_val batch, then one SGD step on the
weights with a D_train batch (first order, no unrolled term). At the end of a stage the
`drop_ops[s]` ops with the lowest softmax(α) leave every edge (8 -> 5 -> 3 -> 1); the last
stage drops `none` first. The discrete cell keeps, per intermediate node, the two incoming
edges whose strongest non-`none` op weighs most, each with its surviving op; then, while
the normal cell has more than `max_skips` skip-connects, the weakest kept skip-connect's
weight is zeroed and the cell is derived again. The loop then trains `darts_net` with
that genotype from scratch.

Resolved ambiguities:
* Ties follow the reference: pruning drops the first minimum (repeated argmin) and edge
  ranking is a stable ascending sort keeping the last two, so later indices win ties.
* Learning rates are set per epoch: `lr · (1 + cos(π e / E)) / 2` for 0-based epoch e
  (PyTorch's scheduler offset differs between versions); the floor is 0.
* Skip dropout p: `p0 (E - e - 1) / E` during warm-up, `p0 exp(-0.2 (e - warmup))` after.
* Weight decay on the weights is PyTorch's L2-in-the-gradient on every weight (after
  clipping, before momentum); α's Adam also adds L2 to the gradient. α and the weights
  live in separate collections, each with its own optax chain (equivalent to
  `optax.multi_transform` over one tree).
* BatchNorm statistics are updated by both the α and the weight forward pass (both run
  in train mode in the reference).
* Epochs are passes over D_train; D_val batches cycle through reshuffled passes. Batches
  keep `batch_size` rows even when a split is smaller (rows repeat), so shapes, and the
  compiled steps, stay the same every round.
* Augmentation (the loop's `augment` config) applies to both batches, as the reference
  uses its training transform for both queues.
* `spo` and `upo` reuse the genotype of the first round that searched.

UPO (unsupervised pre-optimization, Focus 2 of the paper), the search on DeepCluster
pseudo-labels of the pool, is in `pdarts_upo.py`.
"""

import dataclasses
import functools
import math
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxal import compiles
from jaxal import runtime as runtime_lib
from jaxal.data import augment as augment_lib
from jaxal.models import darts
from jaxal.models import darts_net
from jaxal.search import inas
from jaxal.search import pdarts_derive
from jaxal.train import step as step_lib
from jaxal.train import trainer as trainer_lib

PRIMITIVES = darts.PRIMITIVES
NONE, SKIP = darts.NONE, darts.SKIP


@dataclasses.dataclass(frozen=True)
class Settings:
  """The search hyperparameters (defaults: ALGORITHMS.md §8)."""

  layers: tuple[int, ...] = (5, 11, 17)
  drop_ops: tuple[int, ...] = (3, 2, 2)
  skip_dropout: tuple[float, ...] = (0.1, 0.4, 0.7)
  channels: int = 16
  epochs: int = 25
  warmup_epochs: int = 10
  batch_size: int = 96
  lr: float = 0.025
  momentum: float = 0.9
  weight_decay: float = 3e-4
  grad_clip: float = 5.0
  arch_lr: float = 6e-4
  arch_betas: tuple[float, float] = (0.5, 0.999)
  arch_weight_decay: float = 1e-3
  max_skips: int = 2
  nodes: int = 4
  runtime: runtime_lib.Runtime | None = None  # the supernet's kernels (None: the backend's "auto")

  @classmethod
  def from_config(cls, p, runtime: runtime_lib.Runtime | None = None) -> "Settings":
    return cls(runtime=runtime, layers=tuple(int(v) for v in p.layers), drop_ops=tuple(int(v) for v in p.drop_ops),
               skip_dropout=tuple(float(v) for v in p.skip_dropout), channels=int(p.channels),
               epochs=int(p.epochs), warmup_epochs=int(p.warmup_epochs), batch_size=int(p.batch_size),
               lr=float(p.lr), momentum=float(p.momentum), weight_decay=float(p.weight_decay),
               grad_clip=float(p.grad_clip), arch_lr=float(p.arch_lr),
               arch_weight_decay=float(p.arch_weight_decay), max_skips=int(p.max_skips), nodes=int(p.nodes))


# --------------------------------------------------------------------------------------------
# Schedules.


def cosine_lr(epoch: int, epochs: int, lr: float) -> float:
  return 0.5 * lr * (1.0 + math.cos(math.pi * epoch / epochs))


def skip_rate(epoch: int, epochs: int, warmup: int, p0: float) -> float:
  """The skip-connect dropout rate of (0-based) `epoch` in a stage starting at `p0`."""
  if epoch < warmup:
    return p0 * (epochs - epoch - 1) / epochs
  return p0 * math.exp(-0.2 * (epoch - warmup))


def ops_schedule(drop_ops, total: int = len(PRIMITIVES)) -> list[int]:
  """Ops on per edge during each stage, then after the last: `[8, 5, 3, 1]` by default."""
  out = [total]
  for d in drop_ops:
    out.append(out[-1] - d)
  return out


# --------------------------------------------------------------------------------------------
# Pruning and deriving (NumPy; `probs` rows are softmax(α) over an edge's switched-on ops).

# The discrete steps between and after the stages live in `pdarts_derive`.
Switches = pdarts_derive.Switches
lowest, lowest_no_none, prune = pdarts_derive.lowest, pdarts_derive.lowest_no_none, pdarts_derive.prune
top_two_edges, derive_cell = pdarts_derive.top_two_edges, pdarts_derive.derive_cell


# --------------------------------------------------------------------------------------------
# The compiled search steps.


@flax.struct.dataclass
class SearchState:
  params: object
  arch: object
  batch_stats: object
  opt_state: object
  arch_opt_state: object


def weight_optimizer(s: Settings) -> optax.GradientTransformation:
  def build(learning_rate):
    return optax.chain(optax.clip_by_global_norm(s.grad_clip), optax.add_decayed_weights(s.weight_decay),
                       optax.sgd(learning_rate, momentum=s.momentum or None))
  return optax.inject_hyperparams(build)(learning_rate=s.lr)


def arch_optimizer(s: Settings) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(s.grad_clip), optax.add_decayed_weights(s.arch_weight_decay),
                     optax.scale_by_adam(b1=s.arch_betas[0], b2=s.arch_betas[1], eps=1e-8),
                     optax.scale(-s.arch_lr))


def search_step(state: SearchState, inputs, labels, train_idx, val_idx, key, learning_rate, skip_p, *,
                model, w_tx, a_tx, preprocess, augment, update_arch: bool):
  """One P-DARTS step: (if `update_arch`) Adam on α with a D_val batch, then SGD on the weights.

  Returns the new state and `(train loss, train correct, val loss, val correct)`.
  """
  k_wa, k_wd, k_aa, k_ad = jax.random.split(key, 4)

  def batch(idx, k_aug):
    x = preprocess(jnp.take(inputs, idx, axis=0))
    if augment.enabled:
      x = augment_lib.augment_batch(k_aug, x, augment)
    return x, jnp.take(labels, idx, axis=0)

  def loss_fn(params, arch, stats, x, y, k):
    (logits, _), upd = model.apply({"params": params, "arch": arch, "batch_stats": stats}, x, train=True,
                                   skip_p=skip_p, mutable=["batch_stats"], rngs={"dropout": k})
    loss = step_lib.cross_entropy(logits=logits, labels=y).mean()
    return loss, (jnp.sum(jnp.argmax(logits, -1) == y), upd["batch_stats"])

  params, arch, stats = state.params, state.arch, state.batch_stats
  arch_opt_state = state.arch_opt_state
  val_loss, val_correct = jnp.float32(0), jnp.int32(0)
  if update_arch:
    x, y = batch(val_idx, k_aa)
    (val_loss, (val_correct, stats)), grads = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(
        params, arch, stats, x, y, k_ad)
    updates, arch_opt_state = a_tx.update(grads, arch_opt_state, arch)
    arch = optax.apply_updates(arch, updates)
  x, y = batch(train_idx, k_wa)
  (loss, (correct, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, arch, stats, x, y, k_wd)
  opt_state = state.opt_state
  opt_state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
  updates, opt_state = w_tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  return SearchState(params, arch, stats, opt_state, arch_opt_state), (loss, correct, val_loss, val_correct)


@dataclasses.dataclass(frozen=True)
class StageFunctions:
  model: darts.SuperNet
  init: object
  step: object       # weights and α
  warmup: object     # weights only


# Four entries: stage 1's switches are the same every round and stay cached; later stages
# differ per round. Each cached XLA:CPU program holds three memory mappings per kernel (a
# tiny one-cell stage: ~2,400), so a larger cache ran a joint search toward Linux's
# 65,530-mapping limit, where compiles fail (benchmarks/NOTES.md §6g).
@functools.lru_cache(maxsize=4)
def stage_functions(num_classes: int, layers: int, switches_normal: Switches, switches_reduce: Switches,
                    settings: Settings, preprocess, augment, sample_shape: tuple, sample_dtype) -> StageFunctions:
  """The jitted init and steps of one stage's supernet, cached so later rounds reuse them."""
  model = darts.SuperNet(num_classes, settings.channels, layers, switches_normal, switches_reduce, settings.nodes,
                         runtime=settings.runtime or runtime_lib.for_backend(jax.default_backend()))
  w_tx, a_tx = weight_optimizer(settings), arch_optimizer(settings)

  def init(key):
    x = preprocess(jnp.zeros(sample_shape, sample_dtype))
    # An "rbg" key: one RngBitGenerator op per draw instead of an inlined threefry, which made
    # this init compile for minutes on XLA:CPU (hundreds of parameters).
    seed = jax.random.randint(key, (), 0, np.iinfo(np.int32).max)
    key = jax.random.key(seed, impl="rbg")
    v = model.init({"params": key, "dropout": key}, x, train=False)
    return SearchState(v["params"], v["arch"], v.get("batch_stats", {}), w_tx.init(v["params"]),
                       a_tx.init(v["arch"]))

  step = functools.partial(search_step, model=model, w_tx=w_tx, a_tx=a_tx, preprocess=preprocess, augment=augment)
  return StageFunctions(model, jax.jit(init),
                        jax.jit(functools.partial(step, update_arch=True), donate_argnums=(0,)),
                        jax.jit(functools.partial(step, update_arch=False), donate_argnums=(0,)))


def _batches(rows: np.ndarray, steps: int, batch_size: int, rng) -> np.ndarray:
  """`(steps, batch_size)` rows from reshuffled passes over `rows`."""
  return trainer_lib.epoch_indices(rows, steps * batch_size, batch_size, rng)


@dataclasses.dataclass
class SearchResult:
  genotype: dict
  stages: list
  skips_removed: int


def run_search(key, inputs, labels, train_idx: np.ndarray, val_idx: np.ndarray, *, num_classes: int,
               settings: Settings, preprocess=lambda x: x,
               augment: augment_lib.AugmentConfig = augment_lib.AugmentConfig(False, 0, 0.0),
               verbose: bool = False) -> SearchResult:
  """The three-stage P-DARTS search on pool rows `train_idx` (weights) and `val_idx` (α).

  Args:
    key: PRNG key for initialisation, batches and dropout.
    inputs: device array of all pool inputs; `labels`: `(n,)` labels (only the split rows are read).
    train_idx, val_idx: the D_train and D_val rows.
    num_classes: classifier outputs.
    settings: the search hyperparameters.
    preprocess: maps raw input rows to model inputs (the loop's normalisation).
  Returns:
    A `SearchResult`: the genotype dict, per-stage records, and the skip-connects removed.
  """
  s = settings
  labels = jnp.asarray(labels, jnp.int32)
  sample_shape = (1,) + tuple(inputs.shape[1:])
  switches = {"normal": darts.full_switches(s.nodes), "reduce": darts.full_switches(s.nodes)}
  steps = max(1, math.ceil(train_idx.size / s.batch_size))
  stages = []
  probs = None
  for stage, (layers, drop, p0) in enumerate(zip(s.layers, s.drop_ops, s.skip_dropout)):
    t0 = time.perf_counter()
    stage_key = jax.random.fold_in(key, stage)
    init_key, loop_key = jax.random.split(stage_key)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(loop_key)).ravel().tolist())
    with compiles.CompileCounter() as counter:
      fns = stage_functions(num_classes, layers, switches["normal"], switches["reduce"], s, preprocess, augment,
                            sample_shape, inputs.dtype)
      state = fns.init(init_key)
      sums = []
      for epoch in range(s.epochs):
        lr = cosine_lr(epoch, s.epochs, s.lr)
        p = skip_rate(epoch, s.epochs, s.warmup_epochs, p0)
        arch_on = epoch >= s.warmup_epochs
        t_rows = _batches(train_idx, steps, s.batch_size, rng)
        v_rows = _batches(val_idx, steps, s.batch_size, rng) if arch_on else t_rows
        fn = fns.step if arch_on else fns.warmup
        epoch_sums = []
        for i in range(steps):
          k = jax.random.fold_in(loop_key, epoch * 100_003 + i)
          state, m = fn(state, inputs, labels, t_rows[i], v_rows[i], k, lr, p)
          epoch_sums.append(m)
        sums = np.asarray(jax.device_get(epoch_sums), np.float64).sum(0)
        if not math.isfinite(sums[0]):
          raise trainer_lib.TrainingDiverged(f"P-DARTS stage {stage + 1} loss became {sums[0]} at epoch {epoch + 1}")
      probs = {c: np.asarray(jax.nn.softmax(state.arch[c], axis=-1)) for c in ("normal", "reduce")}
    n = steps * s.batch_size
    record = {"layers": layers, "ops_per_edge": len(switches["normal"][0]), "skip_dropout": p0,
              "train_loss": sums[0] / steps, "train_accuracy": sums[1] / n,
              "val_loss": sums[2] / steps if s.epochs > s.warmup_epochs else None,
              "val_accuracy": sums[3] / n if s.epochs > s.warmup_epochs else None,
              "seconds": round(time.perf_counter() - t0, 3), "compiles": counter.count}
    stages.append(record)
    if verbose:
      print(f"  P-DARTS stage {stage + 1}: {layers} cells, {record['ops_per_edge']} ops/edge, "
            f"loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f} ({record['seconds']:.1f}s)",
            flush=True)
    last = stage == len(s.layers) - 1
    if last:
      final_switches, final_probs = dict(switches), probs
    switches = {c: prune(switches[c], probs[c], drop, drop_none=last) for c in switches}
  normal, removed = derive_cell(final_switches["normal"], final_probs["normal"], max_skips=s.max_skips,
                                nodes=s.nodes)
  reduce, _ = derive_cell(final_switches["reduce"], final_probs["reduce"], max_skips=None, nodes=s.nodes)
  concat = list(range(2, 2 + s.nodes))
  genotype = {"normal": normal, "normal_concat": concat, "reduce": reduce, "reduce_concat": concat}
  return SearchResult(genotype, stages, removed)


# --------------------------------------------------------------------------------------------
# The loop's search step.


def _searched_genotype(history):
  for record in history:
    g = (record.get("search") or {}).get("genotype")
    if g and (record.get("search") or {}).get("searched"):
      return record["round"], g
  return None, None


def search(context):
  """The P-DARTS search of one round (see the module docstring); returns `darts_net` options."""
  config = context.config
  s = config.search
  base = dict(config.model.options)
  if s.mode in ("spo", "upo"):
    searched_round, genotype = _searched_genotype(context.history)
    if genotype is not None:
      return "darts_net", {**base, "genotype": darts_net.genotype_json(genotype)}, {
          "mode": s.mode, "searched": False, "from_round": searched_round, "genotype": genotype}
  p = s.pdarts
  settings = Settings.from_config(p, runtime_lib.from_config(config))
  augment = augment_lib.AugmentConfig(bool(config.augment.flip), int(config.augment.max_shift),
                                      float(config.augment.max_degrees))
  num_classes = context.data.dataset.num_classes
  extra = {}
  if s.mode == "upo":
    # pdarts_upo imports this module, so it is imported here, on use.
    from jaxal.search import pdarts_upo  # pylint: disable=import-outside-toplevel
    pool_size = int(context.data.pool_inputs.shape[0])
    labels, extra["pseudo_labels"] = pdarts_upo.pseudo_labels(
        jax.random.fold_in(context.key, pdarts_upo.UPO_KEY), context.data.pool_inputs, num_classes=num_classes,
        settings=settings, clusters_per_class=int(config.pretrain.clusters_per_class),
        kmeans_iters=int(config.pretrain.kmeans_iters), preprocess=context.data.preprocess, augment=augment,
        chunk_size=int(config.acquisition.chunk_size))
    rows = pdarts_upo.upo_rows(pool_size, int(p.upo_size), int(p.split_seed))
    num_classes = extra["pseudo_labels"]["clusters"]
    if config.output.verbose:
      ps = extra["pseudo_labels"]
      print(f"  P-DARTS upo: {ps['nonempty_clusters']}/{ps['clusters']} clusters of the pool's supernet features "
            f"({ps['seconds']:.1f}s); searching on {rows.size} pool rows", flush=True)
  else:
    rows, labels = context.pool_state.labeled_indices, context.pool_state.labels
  if rows.size < 2:
    raise ValueError("P-DARTS needs at least 2 labeled points to split into D_train and D_val")
  train_idx, val_idx = inas.split_labeled(rows, p.train_portion, p.split_seed)
  result = run_search(context.key, context.data.pool_inputs, labels, train_idx, val_idx,
                      num_classes=num_classes, settings=settings, preprocess=context.data.preprocess,
                      augment=augment, verbose=bool(config.output.verbose))
  info = {"mode": s.mode, "searched": True, "genotype": result.genotype, "stages": result.stages,
          "skips_removed": result.skips_removed, "split": [int(train_idx.size), int(val_idx.size)], **extra}
  return "darts_net", {**base, "genotype": darts_net.genotype_json(result.genotype)}, info
