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
from jaxal import report
from jaxal import search
from jaxal import workdir as workdir_lib
from jaxal.data import augment as augment_lib
from jaxal.data import datasets
from jaxal.data import pipeline
from jaxal.data import pool as pool_lib
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


def load_data(config) -> RunData:
  dataset = datasets.load(config.data)
  pool, validation = dataset.train, None
  if config.data.validation_size:
    pool, validation = datasets.carve(pool, config.data.validation_size, config.data.seed + 1)
  preprocess = pipeline.make_preprocess(pool.inputs, dataset.modality, config.data.normalization)
  return RunData(dataset, pool, validation, jnp.asarray(pool.inputs), jnp.asarray(dataset.test.inputs),
                 None if validation is None else jnp.asarray(validation.inputs), preprocess)


def _log(config, msg: str):
  if config.output.verbose:
    print(msg, flush=True)


def _restart(config, workdir, ckpts, force):
  """Starts the run over (used when extending a one-round run)."""
  ckpts.manager.delete(ckpts.latest_step())
  ckpts.close()
  return run(config, workdir, force=force)


def run(config, workdir: str | pathlib.Path, *, force: bool = False) -> list[dict]:
  """Runs (or resumes) the active-learning loop; returns the round records."""
  config_lib.validate(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  workdir_lib.check_or_write_config(workdir, config, force=force)

  data = load_data(config)
  pool_size = len(data.pool)
  config_lib.validate_against_data(config, pool_size)
  ckpts = checkpoint_lib.RunCheckpoints(workdir)
  base_key = jax.random.key(config.seed)
  restored = ckpts.restore()
  if restored is None:
    initial = pool_lib.initial_indices(data.pool.labels, config.al.initial_size, config.seed,
                                       balanced=config.al.balanced_initial)
    oracle = pool_lib.SimulatedOracle(data.pool.labels)
    state = pool_lib.PoolState.empty(pool_size).label(initial, oracle.reveal(initial))
    history = []
  else:
    state, _, meta = restored
    history = list(meta["history"])
    if state.round < config.al.num_rounds and history and history[-1]["queried"] == 0:
      # An extended run: its last round queried nothing, so redo that round from the
      # checkpoint before it (same keys, same model) and let it query this time.
      previous = ckpts.restore(state.round - 1) if state.round > 1 else None
      if previous is None:
        return _restart(config, workdir, ckpts, force)
      state, _, meta = previous
      history = list(meta["history"])
    if state.labeled_mask.size != pool_size:
      raise workdir_lib.WorkdirConflict(f"{workdir}: checkpoint pool has {state.labeled_mask.size} points, "
                                        f"the data has {pool_size}")
    _log(config, f"resuming {workdir} after round {state.round - 1} ({state.num_labeled} labels)")
  workdir_lib.write_rounds(workdir, history)  # drops any line written after the checkpoint

  if state.round >= config.al.num_rounds:
    _log(config, f"run in {workdir} is already finished ({state.round} rounds); nothing to do")
    ckpts.close()
    return history

  oracle = pool_lib.SimulatedOracle(data.pool.labels)
  schedule = pool_lib.parse_schedule(config.al.query_schedule, "al.query_schedule")
  augment = augment_lib.AugmentConfig(bool(config.augment.flip), int(config.augment.max_shift),
                                      float(config.augment.max_degrees))
  trainers = {}

  def trainer_for(name: str, options: dict) -> trainer_lib.Trainer:
    key = (name, tuple(sorted(options.items())))
    if key not in trainers:
      module = models.create(name, data.dataset.num_classes, **options)
      trainers[key] = trainer_lib.Trainer(module, config.train, data.preprocess, augment,
                                          data.dataset.input_shape, data.pool.inputs.dtype)
    return trainers[key]

  validation = None
  if data.validation is not None:
    validation = (data.validation_inputs, data.validation.labels)

  with compiles.CompileCounter() as counter:
    while state.round < config.al.num_rounds:
      r = state.round
      round_key = jax.random.fold_in(base_key, r)
      search_key, train_key, select_key = jax.random.split(round_key, 3)
      _log(config, f"round {r}: {state.num_labeled} labels")

      t0 = time.perf_counter()
      context = SearchContext(config, r, state, history, data, search_key, trainer_for)
      model_name, model_options = search.SEARCHES[config.search.name](context)
      trainer = trainer_for(model_name, model_options)
      search_seconds = time.perf_counter() - t0

      t0 = time.perf_counter()
      fit = trainer.fit(train_key, data.pool_inputs, state.labels, state.labeled_indices,
                        validation=validation, verbose=config.output.verbose)
      train_seconds = time.perf_counter() - t0

      test_logits, _ = trainer.predictor(fit.state, data.test_inputs,
                                         chunk_size=config.train.eval_chunk_size).outputs()
      test_labels = data.dataset.test.labels
      test_loss = float(np.mean(np.asarray(jax.nn.logsumexp(test_logits, -1)) - test_logits[np.arange(len(test_labels)), test_labels]))
      test_accuracy = float(np.mean(np.argmax(test_logits, -1) == test_labels))

      queried = 0
      t0 = time.perf_counter()
      next_state = state
      if r + 1 < config.al.num_rounds:
        budget = pool_lib.query_size_at(state.num_labeled, schedule)
        if config.al.max_labeled:
          budget = min(budget, config.al.max_labeled - state.num_labeled)
        budget = max(0, min(budget, int((~state.labeled_mask).sum())))
        if budget:
          view = acquisition.PoolView(
              labeled_mask=state.labeled_mask, selectable_mask=~state.labeled_mask,
              predictor=trainer.predictor(fit.state, data.pool_inputs, chunk_size=config.acquisition.chunk_size,
                                          verbose=config.output.verbose),
              options=dict(config.acquisition.options))
          picked = acquisition.acquire(config.acquisition.name, view, budget, select_key)
          next_state = state.label(picked, oracle.reveal(picked))
          queried = budget
      selection_seconds = time.perf_counter() - t0
      next_state = next_state.next_round()

      described = models.describe(trainer.model, (1,) + data.dataset.input_shape, data.pool.inputs.dtype)
      record = {
          "round": r,
          "num_labeled": state.num_labeled,
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
          "queried": queried,
          "acquisition": config.acquisition.name,
      }
      history.append(record)
      finished = next_state.round >= config.al.num_rounds
      ckpts.save(next_state.round, next_state, np.asarray(jax.random.key_data(base_key)), fit.state.variables,
                 {"history": history, "finished": finished})
      state = next_state
      workdir_lib.write_rounds(workdir, history)
      if config.output.plot:
        report.plot_learning_curve(history, workdir / "curves.png", title=f"{data.dataset.name}: {config.acquisition.name}")
      _log(config, f"round {r}: test_accuracy {test_accuracy:.4f} test_loss {test_loss:.4f} "
                   f"[{record['architecture']}, {record['num_params']:,} params] train {train_seconds:.1f}s "
                   f"select {selection_seconds:.1f}s compiles {record['compiles']}"
                   + (f" -> queried {queried}" if queried else ""))
  ckpts.close()
  _log(config, f"run finished: {len(history)} rounds, {state.num_labeled} labels, "
               f"final test accuracy {history[-1]['test_accuracy']:.4f}; results in {workdir}")
  return history
