"""Model registry: every architecture by name, built the same way.

`create(name, num_classes, **options)` returns a Linen `Classifier` (see `base.py`);
`describe(module, input_shape)` returns its parameter count and depth.
Families are imported lazily, only when their name is asked for.
"""

import importlib
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxal.models.base import Classifier

# name -> "module:backbone factory". Model families add their names here.
_REGISTRY: dict[str, str] = {
    "resnet_grid": "jaxal.models.resnet_grid:ResNetGrid",
    "small_cnn": "jaxal.models.small_cnn:SmallCNN",
    "resnet18": "jaxal.models.resnet:resnet18",
    "resnet34": "jaxal.models.resnet:resnet34",
    "resnet50": "jaxal.models.resnet:resnet50",
    "vgg11": "jaxal.models.vgg:vgg11",
    "vgg16": "jaxal.models.vgg:vgg16",
    "vgg19": "jaxal.models.vgg:vgg19",
    "preact_resnet20": "jaxal.models.preact_resnet:preact_resnet20",
    "preact_resnet56": "jaxal.models.preact_resnet:preact_resnet56",
    "preact_resnet110": "jaxal.models.preact_resnet:preact_resnet110",
    "preact_resnet164": "jaxal.models.preact_resnet:preact_resnet164",
    "fasttext": "jaxal.models.fasttext:FastText",
    "text_cnn": "jaxal.models.text_cnn:TextCNN",
    "vdcnn9": "jaxal.models.vdcnn:vdcnn9",
    "vdcnn29": "jaxal.models.vdcnn:vdcnn29",
    "bert": "jaxal.models.transformer:bert",
    "distilbert": "jaxal.models.transformer:distilbert",
    "roberta": "jaxal.models.transformer:roberta",
    "darts_net": "jaxal.models.darts:darts_net",
    "plain_cnn": "jaxal.models.plain_cnn:PlainCNN",
    "depth_dropout": "jaxal.models.depth_dropout:DepthDropoutCNN",
    "bbdropout": "jaxal.models.bbdropout:BBDropoutCNN",
}

# Text models whose embedding table is sized from the dataset's vocabulary.
TAKES_VOCAB = frozenset({"fasttext", "text_cnn", "vdcnn9", "vdcnn29", "bert", "distilbert", "roberta"})


def available() -> list[str]:
  return sorted(_REGISTRY)


def create(name: str, num_classes: int, **options: Any) -> Classifier:
  """Builds model `name` with `num_classes` outputs.

  Args:
    name: a registered model name (see `available()`).
    num_classes: size of the output layer.
    **options: backbone options (e.g. `blocks`, `stacks`, `width`), plus `dropout`,
      the rate of the dropout layer before the classifier.
  Returns:
    An (unbound) Linen `Classifier`.
  """
  if name not in _REGISTRY:
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(available())}")
  module_name, attr = _REGISTRY[name].split(":")
  factory = getattr(importlib.import_module(module_name), attr)
  options = dict(options)
  dropout = float(options.pop("dropout", 0.0))
  try:
    backbone = factory(**options)
  except TypeError as e:
    raise ValueError(f"bad options for model {name!r}: {e}") from None
  wrapper = getattr(backbone, "classifier_class", Classifier)  # e.g. one averaging structure samples
  return wrapper(backbone=backbone, num_classes=num_classes, dropout_rate=dropout)


def init_rng_context():
  """The PRNG setting for weight init: threefry in its non-partitionable form.

  JAX's default partitionable threefry made a jitted init of the digits demo's 20k-parameter
  ResNet compile in 8.7 s on XLA:CPU, against 2.5 s without (benchmarks/NOTES.md §6);
  initial weights are replicated, so partitioning buys nothing there. The setting is read
  when a jitted function is traced and lowered, so wrap the call of a jitted init with it
  (`Trainer.init` does), not only the code inside.
  """
  return jax.threefry_partitionable(False)


def init_variables(module: Classifier, rng: jax.Array, input_shape, dtype=jnp.float32):
  """Initializes `{"params", "batch_stats"}` for inputs of shape `(batch, ...)` (see `init_rng_context`)."""
  x = jnp.ones(input_shape, dtype)  # ones: token id 0 is padding
  with init_rng_context():
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
