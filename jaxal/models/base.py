"""The one interface every jaxal model follows.

A model is a Linen `Classifier`: a backbone that maps inputs to an embedding, then
a head (dropout, then a dense layer) that maps the embedding to logits.

* `model.apply(variables, x, train=..., mc_dropout=...)` returns `(logits, embedding)`;
  the embedding is the input to the last dense layer (penultimate features).
* `train` switches BatchNorm to batch statistics (and enables dropout);
  `mc_dropout` enables dropout only, with BatchNorm in inference mode.
* `model.apply(variables, h, mc_dropout=True, method="head")` runs the head alone,
  which is the fast path for MC-dropout when dropout sits only before the classifier.
* Variables are `{"params", "batch_stats"}` (the latter may be empty); dropout draws
  from the `"dropout"` RNG stream.

Backbones are Linen modules with `__call__(x, *, train, mc_dropout) -> embedding` and a
`depth` attribute or property giving the depth by the source paper's counting.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxal import runtime as runtime_lib

Array = Any


class Classifier(nn.Module):
  """Backbone -> embedding -> dropout -> dense logits."""

  backbone: nn.Module
  num_classes: int
  dropout_rate: float = 0.0
  # The kernels and loop forms the layers use (`layers.runtime_of`; None: stock ops). The
  # Trainer and the Predictor set the run's policy (`models.with_runtime`).
  runtime: runtime_lib.Runtime | None = None

  def setup(self):
    self.head_dropout = nn.Dropout(self.dropout_rate)
    self.classifier = nn.Dense(self.num_classes, name="classifier")

  def features(self, x: Array, *, train: bool = False, mc_dropout: bool = False) -> Array:
    return self.backbone(x, train=train, mc_dropout=mc_dropout)

  def head(self, h: Array, *, train: bool = False, mc_dropout: bool = False) -> Array:
    h = self.head_dropout(h, deterministic=not (train or mc_dropout))
    return self.classifier(h)

  def __call__(self, x: Array, *, train: bool = False, mc_dropout: bool = False):
    h = self.features(x, train=train, mc_dropout=mc_dropout)
    return self.head(h, train=train, mc_dropout=mc_dropout), h

  @property
  def depth(self) -> int:
    return int(self.backbone.depth)


def global_avg_pool(x: Array) -> Array:
  """Mean over the spatial axes of an NHWC map."""
  return jnp.mean(x, axis=(1, 2))
