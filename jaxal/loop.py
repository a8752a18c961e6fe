"""The active-learning loop: train -> evaluate -> score -> select -> label -> checkpoint.

`run(config, workdir)` validates the config, loads the data, resumes from the workdir's
latest checkpoint if there is one, and runs the remaining rounds. Every part that varies
between methods is looked up by name (`search.name`, `model.name`, `acquisition.name`);
the loop never branches on a method.

Randomness: every round derives its keys from `fold_in(key(seed), round)`, so a resumed
run makes exactly the choices an uninterrupted one makes.
"""

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import acquisition
from jaxal import checkpoint as checkpoint_lib
from jaxal import compiles
from jaxal import config as config_lib
from jaxal import models
from jaxal import oracle as oracle_lib
from jaxal import parallel
from jaxal import proxy
from jaxal import report
from jaxal import run_lock
from jaxal import search
from jaxal import tensorboard
from jaxal import workdir as workdir_lib
from jaxal.data import augment as augment_lib
from jaxal.data import datasets
from jaxal.data import fingerprint
from jaxal.data import pipeline
from jaxal.data import pool as pool_lib
from jaxal.pretrain import backbone_cache
from jaxal.train import trainer as trainer_lib

@dataclasses.dataclass
class RunData:
  """The loaded data of a run, with the pool and evaluation inputs on device."""

  dataset: datasets.Dataset
  pool: datasets.Split
  validation: datasets.Split | None
  pool_inputs: jax.Array
  test_inputs: jax.Array
  validation_inputs: jax.Array | None
  preprocess: object


@dataclasses.dataclass
class SearchContext:
  """What an architecture search sees in a round."""

  config: object
  round: int
  pool_state: pool_lib.PoolState
  history: list
  data: RunData
  key: jax.Array
  trainer_for: object  # (name, options) -> Trainer, cached per architecture


def load_data(config, mesh=None) -> RunData:
  """Loads the dataset, carves the validation split, and puts inputs on the devices."""
  dataset = datasets.load(config.data)
  pool, validation = dataset.train, None
  if config.data.validation_size:
    pool, validation = datasets.carve(pool, config.data.validation_size, config.data.seed + 1,
                                       field="data.validation_size")
  preprocess = pipeline.make_preprocess(pool.inputs, dataset.modality, config.data.normalization)
  put = lambda x: jnp.asarray(x) if mesh is None else parallel.replicate(np.asarray(x), mesh)
  return RunData(dataset, pool, validation, put(pool.inputs), put(dataset.test.inputs),
                 None if validation is None else put(validation.inputs), preprocess)


def _log(config, msg: str):
  if config.output.verbose and parallel.is_primary():
    print(msg, flush=True)


@dataclasses.dataclass
class Progress:
  """What a checkpoint holds: the pool, the round history, and queries awaiting labels."""

  pool: pool_lib.PoolState
  history: list
  pending: np.ndarray  # pool indices queried but not yet labeled
  pending_predictions: dict | None = None

  def meta(self, num_rounds: int) -> dict:
    return {"history": self.history, "pending": self.pending.tolist(),
            "pending_predictions": self.pending_predictions, "finished": self.pool.round >= num_rounds}


def _restore(ckpts, step=None) -> Progress | None:
  """Checkpoint `step`, or the latest readable one (healing the directory; see `checkpoint`)."""
  restored = ckpts.restore(step) if step is not None else ckpts.resume(primary=parallel.is_primary())
  if restored is None:
    return None
  pool, _, meta = restored
  return Progress(pool, list(meta["history"]), np.asarray(meta.get("pending", []), np.int32),
                  meta.get("pending_predictions"))


def _start_or_resume(config, workdir, ckpts, data, base_key) -> Progress:
  """The latest checkpoint, or a fresh pool whose initial set awaits labels (step 0)."""
  progress = _restore(ckpts)
  pool_size = len(data.pool)
  if progress is None:
    initial = pool_lib.initial_indices(data.pool.labels, config.al.initial_size, config.seed,
                                       balanced=config.al.balanced_initial)
    progress = Progress(pool_lib.PoolState.empty(pool_size), [], initial)
    _save(ckpts, progress, config, base_key, None)
    return progress
  if progress.pool.labeled_mask.size != pool_size:
    raise workdir_lib.WorkdirConflict(f"{workdir}: checkpoint pool has {progress.pool.labeled_mask.size} points, "
                                      f"the data has {pool_size}")
  last = progress.history[-1] if progress.history else None
  if (progress.pool.round < config.al.num_rounds and last is not None and last["queried"] == 0
      and progress.pending.size == 0):
    # An extended run: its last round queried nothing, so redo that round from the
    # checkpoint before it (same keys, same model) and let it query this time.
    progress = _restore(ckpts, progress.pool.round - 1)
  _log(config, f"resuming {workdir} at round {progress.pool.round} ({progress.pool.num_labeled} labels"
               + (f", {progress.pending.size} queries awaiting labels)" if progress.pending.size else ")"))
  return progress


def _save(ckpts, progress: Progress, config, base_key, variables) -> None:
  ckpts.save(progress.pool.round, progress.pool, np.asarray(jax.random.key_data(base_key)),
             variables, progress.meta(config.al.num_rounds))


def _resolve_pending(progress: Progress, oracle, config) -> Progress:
  """Asks the oracle for the pending labels (may raise `oracle.LabelsPending`)."""
  if progress.pending.size == 0:
    return progress
  predictions = progress.pending_predictions
  if predictions is not None:
    predictions = {k: np.asarray(v) for k, v in predictions.items()}
  answered, labels = oracle.reveal(progress.pending, round=progress.pool.round, predictions=predictions)
  answered = np.asarray(answered, np.int32)
  if not np.isin(answered, progress.pending).all():
    raise ValueError("the oracle answered indices that were not queried")
  if answered.size < progress.pending.size and not config.oracle.allow_partial:
    raise ValueError(f"the oracle answered {answered.size} of {progress.pending.size} queries; "
                     "set oracle.allow_partial=True to accept partial answers")
  pool = progress.pool.label(answered, labels)
  return Progress(pool, progress.history, np.zeros(0, np.int32), None)


def _test_metrics(trainer, state, data, chunk_size):
  logits, _ = trainer.predictor(state, data.test_inputs, chunk_size=chunk_size).outputs()
  labels = data.dataset.test.labels
  log_z = np.asarray(jax.nn.logsumexp(logits, -1))
  loss = float(np.mean(log_z - logits[np.arange(len(labels)), labels]))
  return float(np.mean(np.argmax(logits, -1) == labels)), loss


def _budget(config, pool: pool_lib.PoolState, schedule) -> int:
  if pool.round + 1 >= config.al.num_rounds:
    return 0
  budget = pool_lib.query_size_at(pool.num_labeled, schedule)
  if config.al.max_labeled:
    budget = min(budget, config.al.max_labeled - pool.num_labeled)
  return max(0, min(budget, int((~pool.labeled_mask).sum())))


def run(config, workdir: str | pathlib.Path, *, force: bool = False, accept_data_change: bool = False) -> list[dict]:
  """Runs (or resumes) the active-learning loop; returns the round records.

  Raises:
    oracle.LabelsPending: when a person must label exported queries; state is saved and
      rerunning the same call continues.
    workdir.WorkdirConflict: another run holds the workdir (`run_lock`), or its config or
      data (`data.fingerprint`; `accept_data_change` goes on with new data) differ.
  """
  config_lib.validate(config)
  if config.output.tensorboard:
    tensorboard.check_available()  # before any compute, not after round 0
  mesh = parallel.make_mesh(config.parallel.num_devices)
  config_lib.validate_against_devices(config, parallel.num_devices(mesh))
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  with run_lock.hold(workdir):  # one run per workdir; taken before anything is written or loaded
    return _run_locked(config, workdir, mesh, force=force, accept_data_change=accept_data_change)


def _run_locked(config, workdir, mesh, *, force, accept_data_change) -> list[dict]:
  """`run` once the workdir is ours: checks the config and the data against the workdir's."""
  config_path = workdir / "config.json"
  saved_config = config_path.read_text() if config_path.exists() else None
  if parallel.is_primary():
    workdir_lib.check_or_write_config(workdir, config, force=force)

  data = load_data(config, mesh)
  config_lib.validate_against_data(config, len(data.pool))
  try:
    fingerprint.check_or_write(workdir, fingerprint.of_splits(pool=data.pool, validation=data.validation,
                                                              test=data.dataset.test),
                               accept=accept_data_change, write=parallel.is_primary())
  except fingerprint.DataChanged:
    if parallel.is_primary() and saved_config is not None:  # a refused run leaves the workdir as it was
      workdir_lib.atomic_write_text(config_path, saved_config)
    elif parallel.is_primary():
      config_path.unlink(missing_ok=True)
    raise
  oracle = oracle_lib.make_oracle(config, workdir, data)
  ckpts = checkpoint_lib.RunCheckpoints(workdir)
  try:
    return _run_rounds(config, workdir, data, oracle, ckpts, mesh)
  finally:
    ckpts.close()


def _run_rounds(config, workdir, data, oracle, ckpts, mesh) -> list[dict]:
  base_key = jax.random.key(config.seed)
  progress = _start_or_resume(config, workdir, ckpts, data, base_key)
  primary = parallel.is_primary()
  if primary:
    workdir_lib.write_rounds(workdir, progress.history)  # drops any line written after the checkpoint
  if progress.pool.round >= config.al.num_rounds and progress.pending.size == 0:
    _log(config, f"run in {workdir} is already finished ({progress.pool.round} rounds); nothing to do")
    return progress.history

  schedule = pool_lib.parse_schedule(config.al.query_schedule, "al.query_schedule")
  augment = augment_lib.AugmentConfig(bool(config.augment.flip), int(config.augment.max_shift),
                                      float(config.augment.max_degrees))
  trainers = {}

  def trainer_for(name: str, options: dict, train_cfg=None) -> trainer_lib.Trainer:
    """One trainer (one set of compiled functions) per architecture and training config."""
    train_cfg = train_cfg or config.train
    if models.takes_vocab(name) and "vocab_size" not in options:
      options = {**options, "vocab_size": data.dataset.vocab_size}
    key = (name, tuple(sorted(options.items())), workdir_lib.config_to_json(train_cfg))
    if key not in trainers:
      module = models.create(name, data.dataset.num_classes, **options)
      trainers[key] = trainer_lib.Trainer(module, train_cfg, data.preprocess, augment,
                                          data.dataset.input_shape, data.pool.inputs.dtype, mesh)
    return trainers[key]

  validation = None
  if data.validation is not None:
    validation = (data.validation_inputs, data.validation.labels)
  pretrained = backbone_cache.pretrained_backbone(config, workdir, data, trainer_for, base_key, mesh, log=_log)
  if pretrained is not None:
    pretrained = parallel.replicate(jax.tree_util.tree_map(jnp.asarray, pretrained), mesh)

  with compiles.CompileCounter() as counter:
    progress = _resolve_pending(progress, oracle, config)
    while progress.pool.round < config.al.num_rounds:
      pool, history = progress.pool, progress.history
      r = pool.round
      search_key, train_key, select_key, target_key = jax.random.split(jax.random.fold_in(base_key, r), 4)
      _log(config, f"round {r}: {pool.num_labeled} labels")

      t0 = time.perf_counter()
      context = SearchContext(config, r, pool, history, data, search_key, trainer_for)
      model_name, model_options, search_info = search.SEARCHES[config.search.name](context)
      trainer = trainer_for(model_name, model_options)
      search_seconds = time.perf_counter() - t0

      t0 = time.perf_counter()
      fit = trainer.fit(train_key, data.pool_inputs, pool.labels, pool.labeled_indices,
                        validation=validation, verbose=config.output.verbose, start=pretrained)
      train_seconds = time.perf_counter() - t0
      test_accuracy, test_loss = _test_metrics(trainer, fit.state, data, config.train.eval_chunk_size)

      t0 = time.perf_counter()
      budget = _budget(config, pool, schedule)
      picked, predictions, predictor = np.zeros(0, np.int32), None, None
      if budget:
        predictor = trainer.predictor(fit.state, data.pool_inputs, chunk_size=config.acquisition.chunk_size,
                                      verbose=config.output.verbose)
        view = acquisition.PoolView(labeled_mask=pool.labeled_mask, selectable_mask=~pool.labeled_mask,
                                    predictor=predictor, options=dict(config.acquisition.options))
        picked = acquisition.acquire(config.acquisition.name, view, budget, select_key)
        if getattr(oracle, "wants_predictions", False):
          probs = predictor.probs()[picked]
          predictions = {"predicted_class": probs.argmax(-1).tolist(), "confidence": probs.max(-1).tolist()}
      selection_seconds = time.perf_counter() - t0

      described = models.describe(trainer.model, (1,) + data.dataset.input_shape, data.pool.inputs.dtype)
      record = {
          "round": r,
          "num_labeled": pool.num_labeled,
          "test_accuracy": test_accuracy,
          "test_loss": test_loss,
          "architecture": described["architecture"],
          "num_params": described["num_params"],
          "depth": described["depth"],
          "train_seconds": round(train_seconds, 3),
          "selection_seconds": round(selection_seconds, 3),
          "search_seconds": round(search_seconds, 3),
          "compiles": counter.take(),
          "epochs": fit.epochs,
          "train_accuracy": fit.train_accuracy,
          "train_loss": fit.train_loss,
          "val_accuracy": fit.val_accuracy,
          "queried": int(picked.size),
          "acquisition": config.acquisition.name,
      }
      if search_info:
        record["search"] = search_info
      if pretrained is not None:
        record["pretrain"] = config.pretrain.name
      record.update(proxy.target_round(config=config, data=data, pool=pool, trainer_for=trainer_for,
                                       key=target_key, proxy_predictor=predictor, picked=picked))
      record["compiles"] += counter.take()  # the target's compiles belong to this round
      progress = Progress(pool.next_round(), history + [record], picked, predictions)
      _save(ckpts, progress, config, base_key, fit.state.variables)
      if primary:
        workdir_lib.write_rounds(workdir, progress.history)
      if primary and config.output.tensorboard:
        tensorboard.log_round(workdir, record)
      if primary and config.output.plot:
        report.plot_learning_curve(progress.history, workdir / "curves.png",
                                   title=f"{data.dataset.name}: {config.acquisition.name}")
      _log(config, f"round {r}: test_accuracy {test_accuracy:.4f} test_loss {test_loss:.4f} "
                   f"[{record['architecture']}, {record['num_params']:,} params] train {train_seconds:.1f}s "
                   f"select {selection_seconds:.1f}s compiles {record['compiles']}"
                   + (f" -> queried {picked.size}" if picked.size else ""))
      progress = _resolve_pending(progress, oracle, config)
  history = progress.history
  _log(config, f"run finished: {len(history)} rounds, {history[-1]['num_labeled']} labels, "
               f"final test accuracy {history[-1]['test_accuracy']:.4f}; results in {workdir}")
  return history
