"""Unsupervised pretraining of backbones before active learning (ALGORITHMS.md §5).

`PRETRAINS` maps each `pretrain.name` to a `Pretraining`: "none" (no pretraining) and
"deepcluster" (`deepcluster.py`). Add your own with `register(name, fn, validate=...)`,
where `fn(*, config, trainer, data, key, mesh)` trains `trainer.model` on the unlabeled
pool (`data.pool_inputs`) and returns an object with `variables` (the backbone's
`{"params", "batch_stats"}`, head dropped), `history` (JSON-able per-epoch dicts) and
`seconds`; `jaxal.pretrain.backbone_cache` stores it and every round starts from it.
"""

import dataclasses
from typing import Callable

from jaxal.registry import Registry


@dataclasses.dataclass(frozen=True)
class Pretraining:
  """A registered pretraining; `fn` is None for "none". `validate(config)` raises `ConfigError`."""

  fn: Callable | None
  validate: Callable | None = None


PRETRAINS = Registry("pretraining")


def register(name: str, fn: Callable, *, validate: Callable | None = None) -> None:
  """Adds pretraining `name`; a name already registered raises ValueError."""
  if not callable(fn):
    raise ValueError(f"pretraining {name!r}: fn must be callable, got {fn!r}")
  PRETRAINS.add(name, Pretraining(fn, validate))


def unregister(name: str) -> None:
  PRETRAINS.remove(name)


def deepcluster_pretraining(*, config, trainer, data, key, mesh):
  """DeepCluster with the `pretrain.*` settings (imported on use: it pulls in training)."""
  from jaxal.pretrain import deepcluster  # pylint: disable=g-import-not-at-top
  p = config.pretrain
  return deepcluster.pretrain(
      trainer, data.pool_inputs, data.dataset.num_classes, key,
      preprocess=data.preprocess, epochs=p.epochs, kmeans_iters=p.kmeans_iters,
      clusters_per_class=p.clusters_per_class, style=p.style, lr=p.lr, batch_size=p.batch_size,
      momentum=p.momentum, weight_decay=p.weight_decay, steps_per_call=config.train.steps_per_call,
      chunk_size=config.acquisition.chunk_size, mesh=mesh, verbose=config.output.verbose)


PRETRAINS.add("none", Pretraining(None))
register("deepcluster", deepcluster_pretraining)
