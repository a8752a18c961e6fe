"""The stages of one active-learning round, over explicit values.

`RoundState` is what a checkpoint holds between rounds; `Run` is what stays fixed across
rounds; `Round` carries what each stage of one round produces. Every stage is
`stage(run, rnd) -> rnd`, and `jaxal.loop` calls them in order: search, train, evaluate,
score_and_select, record, target, checkpoint, label.
"""

import dataclasses
import pathlib
import time

import jax
import numpy as np

from jaxal import acquisition
from jaxal import compiles
from jaxal import inference
from jaxal import models
from jaxal import parallel
from jaxal import proxy
from jaxal import runtime as runtime_lib
from jaxal import search as search_lib
from jaxal import stopping
from jaxal.checkpoint import outputs as outputs_lib
from jaxal.checkpoint import run_files
from jaxal.checkpoint import steps
from jaxal.data import pool as pool_lib
from jaxal.train import trainer as trainer_lib


@dataclasses.dataclass(frozen=True)
class RoundState:
  """What a checkpoint holds: the pool, the round history, queries awaiting labels, and the
  acquisition state (`PoolView.state`) that later rounds and a resumed run reuse."""

  pool: pool_lib.PoolState
  history: list
  pending: np.ndarray  # pool indices queried but not yet labeled
  pending_predictions: dict | None = None
  stop_predictions: list | None = None  # the last model's classes on the stop set (`al.stop`)
  acquisition_state: dict = dataclasses.field(default_factory=dict)  # `PoolView.state`, saved as arrays

  def meta(self, num_rounds: int) -> dict:
    return {"history": self.history, "pending": self.pending.tolist(),
            "pending_predictions": self.pending_predictions, "stop_predictions": self.stop_predictions,
            "finished": self.pool.round >= num_rounds or stopping.stopped(self.history)}


@dataclasses.dataclass(frozen=True)
class Run:
  """What stays fixed across the rounds of a run."""

  config: object
  workdir: pathlib.Path
  data: object  # loop.RunData
  oracle: object
  checkpoints: steps.RunCheckpoints
  outputs: outputs_lib.RoundOutputs
  mesh: object
  trainer_for: "TrainerCache"
  pretrained: object  # backbone variables every round starts from, or None
  validation: tuple | None  # (inputs on device, labels)
  schedule: object
  base_key: jax.Array
  counter: compiles.CompileCounter


@dataclasses.dataclass(frozen=True)
class Round:
  """One round as its stages fill it in, from the state it starts at to the state it leaves."""

  index: int
  state: RoundState
  search_key: jax.Array
  train_key: jax.Array
  select_key: jax.Array
  target_key: jax.Array
  model_name: str | None = None
  model_options: dict | None = None
  search_info: dict | None = None
  trainer: trainer_lib.Trainer | None = None
  fit: object = None
  test_accuracy: float | None = None
  test_loss: float | None = None
  picked: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
  predictions: dict | None = None  # of the picked points, for an oracle that wants them
  predictor: object = None
  seconds: dict = dataclasses.field(default_factory=dict)  # search, train, selection
  record: dict | None = None
  next_state: RoundState | None = None
  stop: dict | None = None  # this round's stopping-rule record (`al.stop`)
  stop_predictions: list | None = None
  acquisition_state: dict | None = None  # the run's `PoolView.state` after this round's selection


@dataclasses.dataclass
class SearchContext:
  """What an architecture search sees in a round."""

  config: object
  round: int
  pool_state: pool_lib.PoolState
  history: list
  data: object  # loop.RunData
  key: jax.Array
  trainer_for: object  # (name, options) -> Trainer, cached per architecture


class TrainerCache:
  """One trainer (one set of compiled functions) per architecture and training config."""

  def __init__(self, config, data, augment, mesh):
    self.config, self.data, self.augment, self.mesh = config, data, augment, mesh
    self.runtime = runtime_lib.from_config(config)  # resolved at start-up (`loop.with_resolved_runtime`)
    self.trainers = {}

  def __call__(self, name: str, options: dict, train_cfg=None) -> trainer_lib.Trainer:
    train_cfg = train_cfg or self.config.train
    data = self.data
    if models.takes_vocab(name) and "vocab_size" not in options:
      options = {**options, "vocab_size": data.dataset.vocab_size}
    key = (name, tuple(sorted(options.items())), run_files.config_to_json(train_cfg))
    if key not in self.trainers:
      module = models.create(name, data.dataset.num_classes, **options)
      self.trainers[key] = trainer_lib.Trainer(module, train_cfg, data.preprocess, self.augment,
                                               data.dataset.input_shape, data.pool.inputs.dtype, self.mesh,
                                               runtime=self.runtime)
    return self.trainers[key]


def log(config, msg: str):
  if config.output.verbose and parallel.is_primary():
    print(msg, flush=True)


def begin(run: Run, state: RoundState) -> Round:
  """The round's keys: `split(fold_in(key(seed), round), 4)`, so a resumed run repeats them."""
  r = state.pool.round
  keys = jax.random.split(jax.random.fold_in(run.base_key, r), 4)
  log(run.config, f"round {r}: {state.pool.num_labeled} labels")
  return Round(r, state, *keys)


def search(run: Run, rnd: Round) -> Round:
  t0 = time.perf_counter()
  context = SearchContext(run.config, rnd.index, rnd.state.pool, rnd.state.history, run.data, rnd.search_key,
                          run.trainer_for)
  name, options, info = search_lib.SEARCHES[run.config.search.name](context)
  trainer = run.trainer_for(name, options)
  return dataclasses.replace(rnd, model_name=name, model_options=options, search_info=info, trainer=trainer,
                             seconds={**rnd.seconds, "search": time.perf_counter() - t0})


def train(run: Run, rnd: Round) -> Round:
  t0 = time.perf_counter()
  pool = rnd.state.pool
  fit = rnd.trainer.fit(rnd.train_key, run.data.pool_inputs, pool.labels, pool.labeled_indices,
                        validation=run.validation, verbose=run.config.output.verbose, start=run.pretrained)
  return dataclasses.replace(rnd, fit=fit, seconds={**rnd.seconds, "train": time.perf_counter() - t0})


def evaluate(run: Run, rnd: Round) -> Round:
  """Test accuracy and loss of the round's model."""
  predictor = rnd.trainer.predictor(rnd.fit.state, run.data.test_inputs, chunk_size=run.config.train.eval_chunk_size)
  logits = np.asarray(jax.device_get(predictor.outputs()[0]))  # one transfer
  labels = run.data.dataset.test.labels
  log_z = np.asarray(jax.nn.logsumexp(logits, -1))
  loss = float(np.mean(log_z - logits[np.arange(len(labels)), labels]))
  return dataclasses.replace(rnd, test_accuracy=float(np.mean(np.argmax(logits, -1) == labels)), test_loss=loss)


def _budget(config, pool: pool_lib.PoolState, schedule) -> int:
  if pool.round + 1 >= config.al.num_rounds:
    return 0
  budget = pool_lib.query_size_at(pool.num_labeled, schedule)
  if config.al.max_labeled:
    budget = min(budget, config.al.max_labeled - pool.num_labeled)
  return max(0, min(budget, int((~pool.labeled_mask).sum())))


def stop(run: Run, rnd: Round) -> Round:
  """Evaluates the stopping rule (`al.stop`) on the round's model; when it fires, the round
  queries nothing and the run ends (see `jaxal.stopping`)."""
  config, pool = run.config, rnd.state.pool
  if not config.al.stop or not _budget(config, pool, run.schedule):
    return rnd
  predictor = rnd.trainer.predictor(rnd.fit.state, run.data.pool_inputs, chunk_size=config.acquisition.chunk_size,
                                    verbose=config.output.verbose)
  rows = stopping.stop_set(pool.labeled_mask.size, config.al.stop_set_size, config.seed)
  previous = None if rnd.state.stop_predictions is None else np.asarray(rnd.state.stop_predictions, np.int32)
  record, predictions = stopping.evaluate(config.al, predictor.probs(), ~pool.labeled_mask, rows,
                                          rnd.state.history, previous)
  if record["fired"]:
    log(config, f"round {rnd.index}: stopping rule {record['rule']} fired ({record['value']:.4g}); the run ends here")
  return dataclasses.replace(rnd, predictor=predictor, stop=record,
                             stop_predictions=None if predictions is None else predictions.tolist())


def score_and_select(run: Run, rnd: Round) -> Round:
  """Scores the unlabeled pool and picks this round's queries (none in the last round)."""
  t0 = time.perf_counter()
  config, pool = run.config, rnd.state.pool
  budget = 0 if rnd.stop is not None and rnd.stop["fired"] else _budget(config, pool, run.schedule)
  picked, predictions, predictor = np.zeros(0, np.int32), None, rnd.predictor  # `stop` may have made it
  acquisition_state = dict(rnd.state.acquisition_state)  # the acquisition may add to it
  if budget:
    predictor = predictor or rnd.trainer.predictor(rnd.fit.state, run.data.pool_inputs,
                                                   chunk_size=config.acquisition.chunk_size,
                                                   verbose=config.output.verbose)
    view = acquisition.PoolView(labeled_mask=pool.labeled_mask, selectable_mask=~pool.labeled_mask,
                                predictor=predictor, options=dict(config.acquisition.options),
                                state=acquisition_state)
    picked = acquisition.acquire(config.acquisition.name, view, budget, rnd.select_key)
    if getattr(run.oracle, "wants_predictions", False):
      predicted, confidence = jax.device_get(inference.class_and_confidence(predictor.probs()))  # one transfer
      predictions = {"predicted_class": predicted[picked].tolist(), "confidence": confidence[picked].tolist()}
  return dataclasses.replace(rnd, picked=picked, predictions=predictions, predictor=predictor,
                             seconds={**rnd.seconds, "selection": time.perf_counter() - t0},
                             acquisition_state=acquisition_state)


def record(run: Run, rnd: Round) -> Round:
  """The round's line of `rounds.jsonl`; `compiles` counts those since the last round."""
  config, data, fit = run.config, run.data, rnd.fit
  described = models.describe(rnd.trainer.model, (1,) + data.dataset.input_shape, data.pool.inputs.dtype)
  row = {
      "round": rnd.index,
      "num_labeled": rnd.state.pool.num_labeled,
      "test_accuracy": rnd.test_accuracy,
      "test_loss": rnd.test_loss,
      "architecture": described["architecture"],
      "num_params": described["num_params"],
      "depth": described["depth"],
      "train_seconds": round(rnd.seconds["train"], 3),
      "selection_seconds": round(rnd.seconds["selection"], 3),
      "search_seconds": round(rnd.seconds["search"], 3),
      "compiles": run.counter.take(),
      "epochs": fit.epochs,
      "train_accuracy": fit.train_accuracy,
      "train_loss": fit.train_loss,
      "val_accuracy": fit.val_accuracy,
      "queried": int(rnd.picked.size),
      "acquisition": config.acquisition.name,
  }
  if rnd.search_info:
    row["search"] = rnd.search_info
  if rnd.stop is not None:
    row["stop"] = rnd.stop
  if run.pretrained is not None:
    row["pretrain"] = config.pretrain.name
  return dataclasses.replace(rnd, record=row)


def target(run: Run, rnd: Round) -> Round:
  """SVP: trains the target model on the round's labels (nothing without `proxy.target`)."""
  row = dict(rnd.record)
  row.update(proxy.target_round(config=run.config, data=run.data, pool=rnd.state.pool, trainer_for=run.trainer_for,
                                key=rnd.target_key, proxy_predictor=rnd.predictor, picked=rnd.picked))
  row["compiles"] += run.counter.take()  # the target's compiles belong to this round
  return dataclasses.replace(rnd, record=row)


def save(checkpoints: steps.RunCheckpoints, state: RoundState, config, base_key, variables) -> None:
  checkpoints.save(state.pool.round, state.pool, np.asarray(jax.random.key_data(base_key)),
                   variables, state.meta(config.al.num_rounds), state.acquisition_state)


def checkpoint(run: Run, rnd: Round) -> Round:
  """Saves the round (model, pool, history, queries awaiting labels), then its outputs."""
  state = rnd.state
  stop_predictions = state.stop_predictions if rnd.stop_predictions is None else rnd.stop_predictions
  acquisition_state = state.acquisition_state if rnd.acquisition_state is None else rnd.acquisition_state
  next_state = RoundState(state.pool.next_round(), state.history + [rnd.record], rnd.picked, rnd.predictions,
                          stop_predictions, acquisition_state)
  save(run.checkpoints, next_state, run.config, run.base_key, rnd.fit.state.variables)
  run.outputs.add_round(next_state.history)
  row, seconds = rnd.record, rnd.seconds
  log(run.config, f"round {rnd.index}: test_accuracy {rnd.test_accuracy:.4f} test_loss {rnd.test_loss:.4f} "
                  f"[{row['architecture']}, {row['num_params']:,} params] train {seconds['train']:.1f}s "
                  f"select {seconds['selection']:.1f}s compiles {row['compiles']}"
                  + (f" -> queried {rnd.picked.size}" if rnd.picked.size else ""))
  return dataclasses.replace(rnd, next_state=next_state)


def resolve_pending(run: Run, state: RoundState) -> RoundState:
  """Asks the oracle for the pending labels (may raise `oracle.LabelsPending`)."""
  if state.pending.size == 0:
    return state
  predictions = state.pending_predictions
  if predictions is not None:
    predictions = {k: np.asarray(v) for k, v in predictions.items()}
  answered, labels = run.oracle.reveal(state.pending, round=state.pool.round, predictions=predictions)
  answered = np.asarray(answered, np.int32)
  if not np.isin(answered, state.pending).all():
    raise ValueError("the oracle answered indices that were not queried")
  if answered.size < state.pending.size and not run.config.oracle.allow_partial:
    raise ValueError(f"the oracle answered {answered.size} of {state.pending.size} queries; "
                     "set oracle.allow_partial=True to accept partial answers")
  return RoundState(state.pool.label(answered, labels), state.history, np.zeros(0, np.int32), None,
                    state.stop_predictions, state.acquisition_state)


def label(run: Run, rnd: Round) -> Round:
  """The oracle labels the round's queries; the labeled state is where the next round starts."""
  return dataclasses.replace(rnd, next_state=resolve_pending(run, rnd.next_state))
