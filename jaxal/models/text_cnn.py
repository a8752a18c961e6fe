"""A convolutional text classifier (Kim 2014): the larger text model for CPU text runs.

Token embeddings, parallel 1-D convolutions of widths 3, 4 and 5 with ReLU, max-over-time
pooling (padding masked out), concatenated into the embedding; dropout before the classifier
comes from the head. `vocab_size` is filled in from the dataset by the loop. Depth 3
(embedding, convolution, classifier).
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class TextCNN(nn.Module):
  vocab_size: int = 30000
  dim: int = 128
  filters: int = 100
  widths: Sequence[int] = (3, 4, 5)

  @nn.compact
  def __call__(self, ids, *, train: bool = False, mc_dropout: bool = False):
    del train, mc_dropout
    ids = ids.astype(jnp.int32)
    x = nn.Embed(self.vocab_size, self.dim, name="embed")(ids)
    valid = ids > 0
    pooled = []
    for w in self.widths:
      h = nn.relu(nn.Conv(self.filters, (w,), padding="SAME", name=f"conv{w}")(x))
      pooled.append(jnp.max(jnp.where(valid[..., None], h, -jnp.inf), axis=1))
    out = jnp.concatenate(pooled, axis=-1)
    return jnp.where(jnp.isfinite(out), out, 0.0)  # an all-padding text pools to 0

  depth = 3

  @property
  def label(self) -> str:
    return f"text_cnn(d{self.dim},f{self.filters})"
