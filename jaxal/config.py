"""The config schema: defaults for every field, and validation before any compute.

Config files in `configs/` call `base_config()` and change what they need. `validate`
checks names, types and ranges and raises `ConfigError` naming the offending field.
"""

import pathlib
import sys

import ml_collections

from jaxal import runtime as runtime_lib
from jaxal import stopping
from jaxal.data import pool as pool_lib
from jaxal.train import optim


class ConfigError(ValueError):
  """A config field is missing, ill-typed or out of range; the message names it."""


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict(dict(
      source="digits",        # digits | tfds | idx | npz | image_folder | csv | hdf5 | array_record
      name="",                # TFDS name, or a label for file sources
      data_dir="",            # TFDS data_dir (prepared; no download at run time)
      train_split="train", test_split="test",
      label_key="label", image_key="image", text_keys="",  # TFDS feature keys
      path="", labels_path="", test_path="", test_labels_path="",  # file sources
      x_key="", y_key="", test_x_key="", test_y_key="",  # npz / hdf5 array keys
      image_shape=(0,), image_size=(0,),  # reshape flat rows / resize folder images; (0,) = off
      modality="image",
      text_column="text",     # csv: a column, or several joined with text_separator: "title,body"
      text_separator=" ", label_column="label", csv_header=True,
      class_names_path="",    # csv: a JSON list (.json) or one class name per line (any other file)
      tokenizer="words", max_length=64,
      num_classes=0,          # 0 = infer
      test_size=0,            # carve a test split from train when the source has none
      validation_size=0,      # carve a labeled validation split from the pool
      max_train=0, max_examples=0,  # trim the pool / TFDS splits (0 = all)
      shuffle_train=False,    # shuffle training rows (data.seed) before max_train: files sorted by class
      normalization="per_channel",  # per_channel | scalar | none
      pool_storage="memory",  # memory | stream (pool inputs read by index from ArrayRecord shards)
      seed=0,
  ))

  c.model = ml_collections.ConfigDict(dict(
      name="resnet_grid",
      options=ml_collections.ConfigDict(dict(blocks=1, stacks=2, width=64, dropout=0.0)),
  ))

  c.train = ml_collections.ConfigDict(dict(
      optimizer="sgd", momentum=0.9, nesterov=True,
      lr_schedule="0:0.1,101:0.01,151:0.001",  # "start_epoch:lr,..."
      weight_decay=1e-3, weight_decay_on="conv",  # conv | kernels | all | none
      batch_size=128, epochs=200,
      epoch_size=0,           # samples per epoch (0 = one pass over the labeled set)
      steps_per_call=4,       # steps per compiled (unrolled) block
      stop_at_train_accuracy=0.0, patience=0,
      eval_chunk_size=512,
      compute_dtype="float32",  # float32 | bfloat16 (mixed precision: f32 params and BN statistics)
  ))

  c.augment = ml_collections.ConfigDict(dict(flip=False, max_shift=0, max_degrees=0.0))

  c.al = ml_collections.ConfigDict(dict(
      initial_size=2000, balanced_initial=False,
      query_schedule="0:2000,10000:5000",  # "num_labeled:query_size,..."
      num_rounds=10,          # trainings; the last round trains and queries nothing
      max_labeled=0,          # stop querying at this many labels (0 = no cap)
      stop="",                # "" | stabilizing_predictions | overall_uncertainty | max_confidence (jaxal/stopping.py)
      stop_threshold=0.0,     # 0 = the rule's default (kappa 0.99; entropy 0.05; max entropy 0.001)
      stop_set_size=2000,     # stabilizing_predictions: pool rows compared between successive models
  ))

  c.acquisition = ml_collections.ConfigDict(dict(
      name="least_confidence", chunk_size=512,
      options=ml_collections.ConfigDict(dict(mc_samples=100)),
  ))

  c.target = ml_collections.ConfigDict(dict(
      name="",                # SVP target model; "" = the selection model is the target
      options=ml_collections.ConfigDict(),
      epochs=0, lr_schedule="",  # overrides of train.* for the target (0 / "" = same)
      eval_rounds="last",     # also train the target at these rounds: "all" or "0,3,last"
      agreement=True,         # proxy-target rank correlation and top-b overlap in those rounds
  ))

  c.search = ml_collections.ConfigDict(dict(
      name="fixed",           # fixed | inas
      initial_blocks=1, initial_stacks=1,  # iNAS: A(1,1) start
      max_blocks=12, max_stacks=5,
      steps=1,                # iNAS expansion steps per round (T_iNAS)
      epochs=0,               # premature-evaluation epochs (0 = train.epochs // 4)
      train_fraction=0.8, split_seed=1,
      mode="joint",           # pdarts: joint (every round) | spo (once, on the initial labeled set) | upo
      pdarts=ml_collections.ConfigDict(dict(  # P-DARTS (ALGORITHMS §8); the loop trains model darts_net
          layers=(5, 11, 17), drop_ops=(3, 2, 2), skip_dropout=(0.1, 0.4, 0.7),  # per stage
          channels=16, nodes=4, epochs=25, warmup_epochs=10, batch_size=96, train_portion=0.5, split_seed=1,
          lr=0.025, momentum=0.9, weight_decay=3e-4, grad_clip=5.0, arch_lr=6e-4, arch_weight_decay=1e-3,
          max_skips=2,
          upo_size=0,         # upo: pool rows the search trains on (0 = the whole pool)
      )),
  ))
  c.pretrain = ml_collections.ConfigDict(dict(
      name="none",            # none | deepcluster (unsupervised, on every pool input; ALGORITHMS §5)
      epochs=400, kmeans_iters=10, clusters_per_class=5,  # Siméoni: 400 epochs, 10 iterations, k = 5C
      style="simeoni",        # simeoni (head kept) | deepcluster (head re-created, uniform cluster sampler)
      lr=0.02, batch_size=128, momentum=0.9, weight_decay=2e-4,  # Nesterov SGD, decay on all params
      cache_dir="",           # share backbones between runs with the same data, model, seed and settings
  ))
  c.oracle = ml_collections.ConfigDict(dict(
      name="simulated",       # simulated | files (people label exported queries) | label_studio
      allow_partial=False,    # accept label files that answer only some queries
      url="http://localhost:8080",  # label_studio: the server (jaxal/label_studio.py)
      project="jaxal",        # label_studio: a project id, or a title (created when missing)
      token_env="LABEL_STUDIO_API_KEY",  # label_studio: the variable holding the API token (never saved)
      token_file="",          # label_studio: or a file holding it
      annotations="latest",   # label_studio: a task with several annotations: latest | majority
  ))
  c.parallel = ml_collections.ConfigDict(dict(
      num_devices=0,          # data-parallel devices (0 = all local devices)
      distributed=False,      # call jax.distributed.initialize() (multi-host)
  ))
  c.runtime = ml_collections.ConfigDict(dict(  # how, not what: kernels and loop forms (jaxal/runtime.py)
      kernels="auto",         # auto | cpu | stock (auto: cpu on the CPU backend, stock on GPU/TPU)
      conv_impl="auto",       # auto | per_shape | xla | im2col
      unroll_steps="auto",    # auto | unroll | scan (training blocks and MC-dropout passes)
      init_prng="auto",       # auto | partitionable | non_partitionable (weight-init threefry)
      compiler_options="auto",  # auto | ynn_dots_only | none (XLA:CPU options of steps and scoring)
  ))
  c.output = ml_collections.ConfigDict(dict(
      verbose=True, plot=True,
      tensorboard=False,      # scalars to WORKDIR/tensorboard (needs tensorboardX)
      compilation_cache_dir="",  # a persistent XLA compilation cache: reruns start fast
  ))
  return c


def load_config_file(path) -> ml_collections.ConfigDict:
  """Runs `get_config()` of a config file; `FILE.py:ARG` passes ARG, as `--config=FILE.py:ARG` does."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path, arg = str(path), None
  if not pathlib.Path(path).exists() and ":" in path:
    path, arg = path.rsplit(":", 1)
  path = pathlib.Path(path)
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config() if arg is None else module.get_config(arg)


SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing for `jaxal.main` and `jaxal.study` (`app.run(..., flags_parser=)`).

  A bad flag, a config file that does not load, or a `--config.*` override naming no field
  exits with code 2 and one line naming the flag, instead of a traceback.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    args = flags.FLAGS(argv)
    if "config" in flags.FLAGS and flags.FLAGS["config"].present:
      flags.FLAGS.config.get("", None)  # ml_collections raises a failed load only when the config is read
    return args
  except flags.Error as e:
    message = _one_line(str(e))
  except (AttributeError, KeyError) as e:  # ml_collections: an override's path has no such field
    message = _unknown_field_message(e, argv)
  except Exception as e:  # pylint: disable=broad-except  (the config file itself: missing, SyntaxError, ...)
    flag = next((a for a in argv[1:] if a.startswith("--config=")), "--config")
    message = f"{flag}: the config file does not load: {_one_line(f'{type(e).__name__}: {e}')}"
  sys.stderr.write(f"error: {message}\nPass --helpshort or --helpfull to see the flags.\n")
  sys.exit(2)


def _one_line(message: str) -> str:
  """A multi-line message (ml_collections puts tracebacks in them) as its first and last lines."""
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  return " ... ".join([lines[0], lines[-1]]) if len(lines) > 1 else (lines[0] if lines else message)


def _unknown_field_message(error: Exception, argv: list[str]) -> str:
  """The override that names no field, the field, and ml_collections' "Did you mean" hint."""
  chain, e = [], error
  while e is not None:
    chain.append(e)
    e = e.__context__
  keys = [e.args[0] for e in chain if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str)]
  field = next((k for k in reversed(keys) if "\n" not in k), None)
  hint = next((line for e in chain for line in str(e).replace("\\n", "\n").split("\n") if "Did you mean" in line), "")
  overrides = [a for a in argv[1:] if a.startswith("--config.")]
  flag = next((a for a in overrides if field and field in a.split("=", 1)[0].split(".")[1:]), None)
  where = f"{flag}: " if flag else ""
  hint = " " + hint.strip().strip("'\"") if hint else ""
  return f"{where}the config has no field {field!r}.{hint}" if field else f"{where}{error}"


def use_mnist_test(c, test_size: int = 2000) -> None:
  """Points `c.data` at the MNIST test set in ../shared/data: a pool plus `test_size` held out."""
  mnist = SHARED_DATA / "mnist_test"
  c.data.source = "idx"
  c.data.name = "mnist_test"
  c.data.path = str(mnist / "t10k-images-idx3-ubyte.gz")
  c.data.labels_path = str(mnist / "t10k-labels-idx1-ubyte.gz")
  c.data.test_size = test_size


def _check(cond: bool, field: str, message: str):
  if not cond:
    raise ConfigError(f"{field}: {message}")


def validate(config) -> None:
  """Raises `ConfigError` for any bad field; runs before data loading and compute."""
  from jaxal import acquisition, pretrain, search  # pylint: disable=g-import-not-at-top
  from jaxal.data import datasets  # pylint: disable=g-import-not-at-top

  from jaxal import config_schema, label_studio, oracle  # pylint: disable=g-import-not-at-top
  for section in ("data", "model", "train", "augment", "al", "acquisition", "search", "pretrain", "oracle",
                  "parallel", "output"):
    _check(section in config, section, "missing section")
  config_schema.check(config, base_config())  # misspelt fields, and every number's range
  d, t, al = config.data, config.train, config.al
  _check(d.source in datasets.SOURCES, "data.source", f"unknown source {d.source!r}; known: {sorted(datasets.SOURCES)}")
  _check(d.source != "tfds" or bool(d.name), "data.name", "a TFDS dataset name is required")
  unused = [f"data.{k}: {why}, so it would be ignored" for k, why in datasets.unused_fields(d, base_config().data)]
  if unused:  # a field the source never reads is a mistake, not a setting
    raise ConfigError("; ".join(unused))
  _check(d.normalization in ("per_channel", "scalar", "none"), "data.normalization",
         f"must be per_channel, scalar or none, got {d.normalization!r}")
  _check(d.modality in ("image", "text"), "data.modality", f"must be image or text, got {d.modality!r}")
  from jaxal.data import stream  # pylint: disable=g-import-not-at-top
  stream.check_config(config)  # data.pool_storage
  for field in ("test_size", "validation_size", "max_train", "max_examples", "num_classes"):
    _check(int(d[field]) >= 0, f"data.{field}", f"must be >= 0, got {d[field]}")
  _check(d.max_length >= 1, "data.max_length", "must be >= 1")

  _check_model(config.model.name, config.model.options, "model")

  _check(t.optimizer in ("sgd", "adam"), "train.optimizer", f"must be sgd or adam, got {t.optimizer!r}")
  _check(t.weight_decay_on in ("conv", "kernels", "all", "none"), "train.weight_decay_on",
         f"unknown value {t.weight_decay_on!r}")
  _check(t.weight_decay >= 0, "train.weight_decay", "must be >= 0")
  _check(0 <= t.momentum < 1, "train.momentum", "must be in [0, 1)")
  _check(t.batch_size >= 1, "train.batch_size", f"must be >= 1, got {t.batch_size}")
  _check(t.epochs >= 1, "train.epochs", f"must be >= 1, got {t.epochs}")
  _check(t.epoch_size >= 0, "train.epoch_size", "must be >= 0")
  _check(t.steps_per_call >= 1, "train.steps_per_call", "must be >= 1")
  _check(0 <= t.stop_at_train_accuracy <= 1, "train.stop_at_train_accuracy", "must be in [0, 1]")
  _check(t.patience >= 0, "train.patience", "must be >= 0")
  _check(t.eval_chunk_size >= 1, "train.eval_chunk_size", "must be >= 1")
  _check(t.compute_dtype in ("float32", "bfloat16"), "train.compute_dtype",
         f"must be float32 or bfloat16, got {t.compute_dtype!r}")
  try:
    lrs = optim.parse_lr_schedule(t.lr_schedule)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  _check(all(lr > 0 for _, lr in lrs), "train.lr_schedule", "learning rates must be > 0")
  _check(t.patience == 0 or d.validation_size > 0, "train.patience",
         "patience needs a validation split: set data.validation_size")

  a = config.augment
  _check(a.max_shift >= 0, "augment.max_shift", "must be >= 0")
  _check(0 <= a.max_degrees <= 180, "augment.max_degrees", "must be in [0, 180]")

  _check(al.initial_size >= 1, "al.initial_size", f"must be >= 1, got {al.initial_size}")
  _check(al.num_rounds >= 1, "al.num_rounds", f"must be >= 1, got {al.num_rounds}")
  _check(al.max_labeled >= 0, "al.max_labeled", "must be >= 0")
  try:
    schedule = pool_lib.parse_schedule(al.query_schedule, "al.query_schedule")
  except ValueError as e:
    raise ConfigError(str(e)) from None
  _check(all(size >= 1 for _, size in schedule), "al.query_schedule", "query sizes must be >= 1")

  _check(config.acquisition.name in acquisition.ACQUISITIONS, "acquisition.name",
         f"unknown acquisition {config.acquisition.name!r}; known: {sorted(acquisition.ACQUISITIONS)}")
  acquisition.check_options(config.acquisition.name, dict(config.acquisition.options))
  _check(config.acquisition.chunk_size >= 1, "acquisition.chunk_size", "must be >= 1")
  _check(config.oracle.name in oracle.ORACLES, "oracle.name",
         f"unknown oracle {config.oracle.name!r}; known: {sorted(oracle.ORACLES)}")
  label_studio.check_config(config.oracle)
  _check(config.search.name in search.SEARCHES, "search.name",
         f"unknown search {config.search.name!r}; known: {sorted(search.SEARCHES)}")
  _check(config.parallel.num_devices >= 0, "parallel.num_devices", "must be >= 0")
  if "runtime" in config:
    runtime_lib.check(config.runtime)
  stopping.check(al)
  tg = config.target
  if tg.name:
    _check_model(tg.name, tg.options, "target")
  _check(tg.epochs >= 0, "target.epochs", "must be >= 0")
  if tg.lr_schedule:
    try:
      pool_lib.parse_schedule(tg.lr_schedule, "target.lr_schedule", float)
    except ValueError as e:
      raise ConfigError(str(e)) from None
  ev = str(tg.eval_rounds).strip()
  _check(ev == "all" or all(p.strip() == "last" or p.strip().isdigit() for p in ev.split(",") if p.strip()),
         "target.eval_rounds", f"must be 'all' or a comma list of round numbers and 'last', got {ev!r}")
  s = config.search
  _check(s.max_blocks >= 1 and s.max_stacks >= 1, "search.max_blocks", "grid caps must be >= 1")
  _check(1 <= s.initial_blocks <= s.max_blocks, "search.initial_blocks", f"must be in [1, {s.max_blocks}]")
  _check(1 <= s.initial_stacks <= s.max_stacks, "search.initial_stacks", f"must be in [1, {s.max_stacks}]")
  _check(s.steps >= 1, "search.steps", "must be >= 1")
  _check(s.epochs >= 0, "search.epochs", "must be >= 0")
  _check(0 < s.train_fraction < 1, "search.train_fraction", "must be in (0, 1)")
  if search.SEARCHES[s.name].validate is not None:  # e.g. iNAS and P-DARTS check their model
    search.SEARCHES[s.name].validate(config)
  p = config.pretrain
  _check(p.name in pretrain.PRETRAINS, "pretrain.name", f"must be one of {sorted(pretrain.PRETRAINS)}, got {p.name!r}")
  if pretrain.PRETRAINS[p.name].validate is not None:
    pretrain.PRETRAINS[p.name].validate(config)
  _check(p.style in ("simeoni", "deepcluster"), "pretrain.style", f"must be simeoni or deepcluster, got {p.style!r}")
  for field in ("epochs", "kmeans_iters", "clusters_per_class", "batch_size"):
    _check(isinstance(p[field], int) and p[field] >= 1, f"pretrain.{field}", f"must be an integer >= 1, got {p[field]!r}")
  _check(p.lr > 0, "pretrain.lr", f"must be > 0, got {p.lr}")
  _check(0 <= p.momentum < 1, "pretrain.momentum", "must be in [0, 1)")
  _check(p.weight_decay >= 0, "pretrain.weight_decay", "must be >= 0")
  _check(isinstance(p.cache_dir, str), "pretrain.cache_dir", f"must be a path string, got {p.cache_dir!r}")
  _check(p.name == "none" or s.name == "fixed", "pretrain.name",
         f"pretraining initializes one fixed architecture; it cannot be combined with search.name={s.name!r}")


def _check_model(name: str, options, section: str) -> None:
  """`name` is registered or imports as "module:attr", and its factory takes `options`."""
  from jaxal import models  # pylint: disable=g-import-not-at-top
  try:
    models.factory(name)
  except ValueError as e:
    raise ConfigError(f"{section}.name: {e}") from None
  try:
    if models.validator(name) is not None:  # the model's own registered check
      models.validator(name)(dict(options))
    models.create(name, 2, **dict(options))
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(f"{section}.options: {e}") from None


def validate_against_data(config, pool_size: int) -> None:
  """Checks the budget against the pool size, once the data is loaded (before compute)."""
  al = config.al
  _check(al.initial_size <= pool_size, "al.initial_size",
         f"{al.initial_size} exceeds the pool of {pool_size} points")
  _check(config.train.batch_size <= max(pool_size, 1), "train.batch_size",
         f"{config.train.batch_size} exceeds the pool of {pool_size} points")
  if config.pretrain.name != "none":
    _check(config.pretrain.batch_size <= pool_size, "pretrain.batch_size",
           f"{config.pretrain.batch_size} exceeds the pool of {pool_size} points")
  total = planned_sizes(config, pool_size)[-1]
  _check(total <= pool_size, "al.query_schedule", f"the run would label {total} points but the pool has {pool_size} "
         "(lower al.num_rounds or set al.max_labeled)")


def validate_against_devices(config, num_devices: int) -> None:
  """Batch and chunk sizes must split evenly over the data-parallel devices."""
  sizes = [("train.batch_size", config.train.batch_size),
           ("acquisition.chunk_size", config.acquisition.chunk_size),
           ("train.eval_chunk_size", config.train.eval_chunk_size)]
  if config.pretrain.name != "none":
    sizes.append(("pretrain.batch_size", config.pretrain.batch_size))
  for field, value in sizes:
    _check(value % num_devices == 0, field,
           f"{value} is not divisible by the {num_devices} data-parallel devices "
           f"(per-device size would be {value / num_devices:g}); change it or set parallel.num_devices")


def planned_sizes(config, pool_size: int) -> list[int]:
  """Labeled-set size at the start of each round, following the query schedule and caps."""
  al = config.al
  schedule = pool_lib.parse_schedule(al.query_schedule, "al.query_schedule")
  sizes = [al.initial_size]
  for _ in range(al.num_rounds - 1):
    n = sizes[-1]
    nxt = n + pool_lib.query_size_at(n, schedule)
    if al.max_labeled:
      nxt = min(nxt, max(al.max_labeled, n))
    sizes.append(nxt)
  return sizes
