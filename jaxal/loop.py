"""The active-learning loop: search -> train -> evaluate -> score and select -> checkpoint -> label.

`run(config, workdir)` validates the config, loads the data, resumes from the workdir's
latest checkpoint if there is one, and runs the remaining rounds, each as the sequence of
stages in `jaxal.stages`. Every part that varies between methods is looked up by name
(`search.name`, `model.name`, `acquisition.name`); the loop never branches on a method.

Randomness: every round derives its keys from `fold_in(key(seed), round)`, so a resumed
run makes exactly the choices an uninterrupted one makes.
"""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import compiles
from jaxal import config as config_lib
from jaxal import global_arrays
from jaxal import oracle as oracle_lib
from jaxal import parallel
from jaxal import paths
from jaxal import runtime as runtime_lib
from jaxal import stages
from jaxal import stopping
from jaxal import tensorboard
from jaxal.checkpoint import data_file
from jaxal.checkpoint import lock
from jaxal.checkpoint import outputs as outputs_lib
from jaxal.checkpoint import run_files
from jaxal.checkpoint import steps
from jaxal.data import augment as augment_lib
from jaxal.data import datasets
from jaxal.data import fingerprint
from jaxal.data import pipeline
from jaxal.data import pool as pool_lib
from jaxal.data import stream
from jaxal.pretrain import backbone_cache

SearchContext = stages.SearchContext  # what a search sees; `jaxal.search` documents it here
_log = stages.log


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
  fingerprint: dict | None = None  # the data's digests when computed while loading (streamed pool)


def load_data(config, mesh=None, workdir=None) -> RunData:
  """Loads the dataset, carves the validation split, and puts inputs on the devices.

  With `data.pool_storage = "stream"` the pool's inputs stay in ArrayRecord shards
  (`pool_inputs` is a `stream.StreamedInputs`; a source of another kind is converted into
  `workdir` first) and `fingerprint` holds the data's digests, hashed in the same streamed pass."""
  streamed = config.data.get("pool_storage", "memory") == "stream"
  if streamed:
    dataset = stream.open_dataset(config.data, stream.prepare(config.data, workdir))
  else:
    dataset = datasets.load(config.data)
  pool, validation = dataset.train, None
  if config.data.validation_size:
    pool, validation = datasets.carve(pool, config.data.validation_size, config.data.seed + 1,
                                       field="data.validation_size")
  digests = None
  if streamed:
    if validation is not None:  # small: read into memory
      validation = datasets.Split(np.asarray(validation.inputs), validation.labels, validation.ids)
    preprocess, inputs_digest = stream.preprocess_and_digest(pool, dataset.modality, config.data.normalization)
    digests = stream.fingerprints(pool, inputs_digest, validation=validation, test=dataset.test)
  else:
    preprocess = pipeline.make_preprocess(pool.inputs, dataset.modality, config.data.normalization)
  # One device copy of each split (`jnp.asarray` made two on the CPU backend).
  put = lambda x: parallel.to_device(x) if mesh is None else parallel.replicate(np.asarray(x), mesh)
  return RunData(dataset, pool, validation, pool.inputs if streamed else put(pool.inputs), put(dataset.test.inputs),
                 None if validation is None else put(validation.inputs), preprocess, digests)


def with_resolved_runtime(config):
  """A copy of `config` whose `runtime` fields name the policy chosen for this backend (no
  "auto" left), so that `config.json` records it and every stage reads the same one."""
  config = config.copy_and_resolve_references()
  policy = runtime_lib.from_config(config)
  if "runtime" not in config:
    config.runtime = config_lib.base_config().runtime
  config.runtime.update(policy.as_config())
  return config


def run(config, workdir: str | pathlib.Path, *, force: bool = False, accept_data_change: bool = False) -> list[dict]:
  """Runs (or resumes) the active-learning loop; returns the round records.

  Raises:
    oracle.LabelsPending: when a person must label exported queries; state is saved and
      rerunning the same call continues.
    checkpoint.WorkdirConflict: another run holds the workdir (`checkpoint.lock`), or its config
      or data (`checkpoint.data_file`; `accept_data_change` goes on with new data) differ.
  """
  config_lib.validate(config)
  if config.output.tensorboard:
    tensorboard.check_available()  # before any compute, not after round 0
  mesh = parallel.make_mesh(config.parallel.num_devices)
  config_lib.validate_against_devices(config, parallel.num_devices(mesh))
  global_arrays.check_spread_run(config)  # process count known now; before any compute
  config = with_resolved_runtime(config)
  workdir = paths.make_dirs(workdir)  # epath: a gs:// workdir stays on the bucket, never a local `gs:` folder
  with lock.hold(workdir):  # one run per workdir; taken before anything is written or loaded
    return _run_locked(config, workdir, mesh, force=force, accept_data_change=accept_data_change)


def _run_locked(config, workdir, mesh, *, force, accept_data_change) -> list[dict]:
  """`run` once the workdir is ours: checks the config and the data against the workdir's."""
  saved_config = run_files.saved_config_text(workdir)
  if parallel.is_primary():
    run_files.check_or_write_config(workdir, config, force=force)

  data = load_data(config, mesh, workdir)
  config_lib.validate_against_data(config, len(data.pool))
  digests = data.fingerprint or fingerprint.of_splits(pool=data.pool, validation=data.validation,
                                                      test=data.dataset.test)
  try:
    data_file.check_or_write(workdir, digests,
                             accept=accept_data_change, write=parallel.is_primary())
  except data_file.DataChanged as e:
    if parallel.is_primary():  # a refused run leaves the workdir as it was
      run_files.put_back_config(workdir, saved_config)
    if stream.is_streamed(data.pool_inputs):  # name the files the pool is read from
      raise data_file.DataChanged(f"{e} (the pool is read from {data.pool_inputs.records.index_path})") from None
    raise
  try:
    oracle = oracle_lib.make_oracle(config, workdir, data)  # label_studio connects here
  except Exception:
    if parallel.is_primary():  # a server that is down or a wrong token changes nothing
      run_files.put_back_config(workdir, saved_config)
    raise
  ckpts = steps.RunCheckpoints(workdir)
  try:
    return _run_rounds(config, workdir, data, oracle, ckpts, mesh)
  finally:
    ckpts.close()


def _restore(ckpts, step=None) -> stages.RoundState | None:
  """Checkpoint `step`, or the latest readable one (healing the directory; see `checkpoint.steps`)."""
  restored = ckpts.restore(step) if step is not None else ckpts.resume(primary=parallel.is_primary())
  if restored is None:
    return None
  pool, _, meta = restored
  return stages.RoundState(pool, list(meta["history"]), np.asarray(meta.get("pending", []), np.int32),
                           meta.get("pending_predictions"), meta.get("stop_predictions"),
                           ckpts.restore_acquisition_state(pool.round))


def _start_or_resume(config, workdir, ckpts, data, base_key) -> stages.RoundState:
  """The latest checkpoint, or a fresh pool whose initial set awaits labels (step 0)."""
  state = _restore(ckpts)
  pool_size = len(data.pool)
  if state is None:
    initial = pool_lib.initial_indices(data.pool.labels, config.al.initial_size, config.seed,
                                       balanced=config.al.balanced_initial)
    state = stages.RoundState(pool_lib.PoolState.empty(pool_size), [], initial)
    stages.save(ckpts, state, config, base_key, None)
    return state
  if state.pool.labeled_mask.size != pool_size:
    raise run_files.WorkdirConflict(f"{workdir}: checkpoint pool has {state.pool.labeled_mask.size} points, "
                                    f"the data has {pool_size}")
  last = state.history[-1] if state.history else None
  if (state.pool.round < config.al.num_rounds and last is not None and last["queried"] == 0
      and state.pending.size == 0 and not _stopped(config, state)):
    # An extended run: its last round queried nothing, so redo that round from the
    # checkpoint before it (same keys, same model) and let it query this time.
    state = _restore(ckpts, state.pool.round - 1)
  _log(config, f"resuming {workdir} at round {state.pool.round} ({state.pool.num_labeled} labels"
               + (f", {state.pending.size} queries awaiting labels)" if state.pending.size else ")"))
  return state


def _stopped(config, state) -> bool:
  """Whether the run's stopping rule fired in its last round (a run without `al.stop` goes on)."""
  return bool(config.al.stop) and stopping.stopped(state.history)


def _run_rounds(config, workdir, data, oracle, ckpts, mesh) -> list[dict]:
  base_key = jax.random.key(config.seed)
  outputs = outputs_lib.RoundOutputs.for_run(config, workdir, data.dataset.name, parallel.is_primary())
  state = _start_or_resume(config, workdir, ckpts, data, base_key)
  outputs.rewrite(state.history)
  if (state.pool.round >= config.al.num_rounds or _stopped(config, state)) and state.pending.size == 0:
    _log(config, f"run in {workdir} is already finished ({state.pool.round} rounds); nothing to do")
    return state.history

  schedule = pool_lib.parse_schedule(config.al.query_schedule, "al.query_schedule")
  augment = augment_lib.AugmentConfig(bool(config.augment.flip), int(config.augment.max_shift),
                                      float(config.augment.max_degrees))
  trainer_for = stages.TrainerCache(config, data, augment, mesh)
  validation = None if data.validation is None else (data.validation_inputs, data.validation.labels)
  pretrained = backbone_cache.pretrained_backbone(config, workdir, data, trainer_for, base_key, mesh, log=_log)
  if pretrained is not None:
    pretrained = parallel.replicate(jax.tree_util.tree_map(jnp.asarray, pretrained), mesh)

  with compiles.CompileCounter() as counter:
    run_ = stages.Run(config, workdir, data, oracle, ckpts, outputs, mesh, trainer_for, pretrained, validation,
                      schedule, base_key, counter)
    state = stages.resolve_pending(run_, state)
    while state.pool.round < config.al.num_rounds and not _stopped(config, state):
      rnd = stages.begin(run_, state)
      rnd = stages.search(run_, rnd)
      rnd = stages.train(run_, rnd)
      rnd = stages.evaluate(run_, rnd)
      rnd = stages.stop(run_, rnd)
      rnd = stages.score_and_select(run_, rnd)
      rnd = stages.record(run_, rnd)
      rnd = stages.target(run_, rnd)
      rnd = stages.checkpoint(run_, rnd)
      rnd = stages.label(run_, rnd)
      state = rnd.next_state
  history = state.history
  _log(config, f"run finished: {len(history)} rounds, {history[-1]['num_labeled']} labels, "
               f"final test accuracy {history[-1]['test_accuracy']:.4f}; results in {workdir}")
  return history
