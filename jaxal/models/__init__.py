"""Model registry: every architecture by name, built the same way.

`create(name, num_classes, **options)` returns a Linen `Classifier` (see `base.py`);
`describe(module, input_shape)` returns its parameter count and depth.

Your own model plugs in without changing jaxal: write a backbone factory (a callable,
e.g. a Flax module class, that takes the model options and returns a Linen module with
`__call__(x, *, train, mc_dropout) -> embedding` and a `depth`), then either
`register("my_net", MyNet)` and set `model.name = "my_net"`, or set
`model.name = "my_package.my_module:MyNet"` (imported on use). jaxal adds the head.
Built-in families are imported lazily, only when their name is asked for.
"""

import dataclasses
import importlib
import math
from collections.abc import Set
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxal import runtime as runtime_lib
from jaxal.models import layers
from jaxal.models.base import Classifier
from jaxal.registry import Registry


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  """A registered backbone factory and what the loop must know about it.

  Attributes:
    factory: `options -> backbone module`, or a "module:attr" string imported on use.
    takes_vocab: the loop passes `vocab_size` (the dataset's vocabulary) unless set.
    validate: optional `options dict -> None` that raises `config.ConfigError`.
  """

  factory: Callable | str
  takes_vocab: bool = False
  validate: Callable[[dict], None] | None = None


_REGISTRY = Registry("model")


def register(name: str, factory: Callable | str, *, takes_vocab: bool = False,
             validate: Callable[[dict], None] | None = None) -> None:
  """Adds backbone `factory` as model `name`; a name already registered raises ValueError."""
  if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
    raise ValueError(f"model {name!r}: factory must be callable or a 'module:attr' string, got {factory!r}")
  _REGISTRY.add(name, ModelEntry(factory, bool(takes_vocab), validate))


def unregister(name: str) -> None:
  _REGISTRY.remove(name)


for _name, _path in {
    "resnet_grid": "resnet_grid:ResNetGrid", "small_cnn": "small_cnn:SmallCNN",
    "resnet18": "resnet:resnet18", "resnet34": "resnet:resnet34", "resnet50": "resnet:resnet50",
    "vgg11": "vgg:vgg11", "vgg16": "vgg:vgg16", "vgg19": "vgg:vgg19",
    "preact_resnet20": "preact_resnet:preact_resnet20", "preact_resnet56": "preact_resnet:preact_resnet56",
    "preact_resnet110": "preact_resnet:preact_resnet110", "preact_resnet164": "preact_resnet:preact_resnet164",
    "darts_net": "darts_net:darts_net", "plain_cnn": "plain_cnn:PlainCNN",
    "depth_dropout": "depth_dropout:DepthDropoutCNN", "bbdropout": "bbdropout:BBDropoutCNN",
}.items():
  register(_name, f"jaxal.models.{_path}")
for _name, _path in {  # text models: the embedding table is sized from the dataset's vocabulary
    "fasttext": "fasttext:FastText", "text_cnn": "text_cnn:TextCNN",
    "vdcnn9": "vdcnn:vdcnn9", "vdcnn29": "vdcnn:vdcnn29",
    "bert": "transformer:bert", "distilbert": "transformer:distilbert", "roberta": "transformer:roberta",
}.items():
  register(_name, f"jaxal.models.{_path}", takes_vocab=True)
del _name, _path


class _TakesVocabView(Set):
  """Read-only, live: the registered names whose entry has `takes_vocab` (use `takes_vocab(name)`)."""

  def __contains__(self, name) -> bool:
    return name in _REGISTRY and _REGISTRY[name].takes_vocab

  def __iter__(self):
    return (name for name, entry in _REGISTRY.items() if entry.takes_vocab)

  def __len__(self) -> int:
    return sum(1 for _ in self)


TAKES_VOCAB = _TakesVocabView()  # compatibility: was a hand-kept frozenset


def available() -> list[str]:
  return sorted(_REGISTRY)


def _import(path: str) -> Callable:
  """The attribute that "module:attr" names; ValueError (one line) when it does not import."""
  module_name, _, attr = path.partition(":")
  if not module_name or not attr:
    raise ValueError(f"{path!r} is not of the form 'module:attr'")
  try:
    factory = getattr(importlib.import_module(module_name), attr)
  except Exception as e:  # pylint: disable=broad-except  (ImportError, AttributeError, or the module's own error)
    detail = (str(e).strip().splitlines() or [""])[-1]
    raise ValueError(f"cannot import model factory {path!r}: {type(e).__name__}: {detail}") from None
  if not callable(factory):
    raise ValueError(f"model factory {path!r} is not callable")
  return factory


def factory(name: str) -> Callable:
  """The backbone factory of a registered name or of a "module:attr" name (imported here)."""
  if name in _REGISTRY:
    entry = _REGISTRY[name].factory
    return _import(entry) if isinstance(entry, str) else entry
  if ":" in name:
    return _import(name)
  raise ValueError(_REGISTRY.unknown(name) + " (or name your own as 'module:Factory')")


def takes_vocab(name: str) -> bool:
  """Whether the loop passes the dataset's `vocab_size`: the registry's flag, or a
  "module:attr" factory's own `takes_vocab` attribute."""
  if name in _REGISTRY:
    return _REGISTRY[name].takes_vocab
  return bool(getattr(factory(name), "takes_vocab", False))


def validator(name: str) -> Callable[[dict], None] | None:
  """The registered options check of model `name`, if any."""
  return _REGISTRY[name].validate if name in _REGISTRY else None


def create(name: str, num_classes: int, *, runtime: runtime_lib.Runtime | None = None,
           **options: Any) -> Classifier:
  """Builds model `name` with `num_classes` outputs.

  Args:
    name: a registered model name (see `available()`), or "module:attr" naming a factory.
    num_classes: size of the output layer.
    runtime: the policy its layers run under; None leaves the choice to the Trainer and
      the Predictor (see `runtime_for`).
    **options: backbone options (e.g. `blocks`, `stacks`, `width`), plus `dropout`,
      the rate of the dropout layer before the classifier.
  Returns:
    An (unbound) Linen `Classifier`.
  """
  build = factory(name)
  options = dict(options)
  dropout = float(options.pop("dropout", 0.0))
  try:
    backbone = build(**options)
  except TypeError as e:
    raise ValueError(f"bad options for model {name!r}: {e}") from None
  wrapper = getattr(backbone, "classifier_class", Classifier)  # e.g. one averaging structure samples
  return wrapper(backbone=backbone, num_classes=num_classes, dropout_rate=dropout, runtime=runtime)


def runtime_for(model, runtime: runtime_lib.Runtime | None = None) -> runtime_lib.Runtime:
  """The policy to run `model` under: `runtime` if given, else the model's own, else the
  "auto" policy of JAX's default backend (what the Trainer and the Predictor use)."""
  if runtime is None:
    runtime = getattr(model, "runtime", None)
  if not isinstance(runtime, runtime_lib.Runtime):
    runtime = runtime_lib.for_backend(jax.default_backend())
  return runtime


def with_runtime(model, runtime: runtime_lib.Runtime):
  """`model` running under `runtime`: a `Classifier` (or any module with a `runtime` field)
  is cloned with it; anything else (a user's apply function) is returned as it is."""
  if isinstance(model, Classifier) or hasattr(type(model), "runtime"):
    return model if model.runtime == runtime else model.clone(runtime=runtime)
  return model


def init_variables(module: Classifier, rng: jax.Array, input_shape, dtype=jnp.float32):
  """Initializes `{"params", "batch_stats"}` for inputs of shape `(batch, ...)`.

  The threefry form is the module's policy's (`runtime.init_prng`); JAX reads the setting
  when a jitted function is traced, so a jitted init must also be called inside
  `jax.threefry_partitionable(...)` of that policy (`Trainer.init` does).
  """
  x = jnp.ones(input_shape, dtype)  # ones: token id 0 is padding
  with jax.threefry_partitionable(layers.runtime_of(module).partitionable_init):
    variables = module.init({"params": rng, "dropout": rng}, x, train=False)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def count_params(params) -> int:
  return int(sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def describe(module: Classifier, input_shape, dtype=jnp.float32) -> dict:
  """Trainable parameter count, BatchNorm statistics count, depth and a short label.

  Computed with `jax.eval_shape`, so no weights are allocated.
  """
  shapes = jax.eval_shape(lambda k: init_variables(module, k, input_shape, dtype), jax.random.key(0))
  backbone = module.backbone
  label = getattr(backbone, "label", None) or type(backbone).__name__.lower()
  return {
      "architecture": label,
      "num_params": count_params(shapes["params"]),
      "num_batch_stats": count_params(shapes["batch_stats"]),
      "depth": module.depth,
  }
