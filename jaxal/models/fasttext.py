"""fastText (Joulin et al. 2017): a bag of word and hashed bigram embeddings, mean-pooled.

Inputs are int32 token ids `(batch, length)` with 0 = padding. Each non-pad token and each
pair of adjacent non-pad tokens (hashed into `buckets` slots) has an embedding; the
embedding of a text is the mean over its tokens and bigrams, and the head is a linear layer.
`vocab_size` is filled in from the dataset by the loop. Depth 2 (embedding + linear).
"""

import flax.linen as nn
import jax.numpy as jnp

_PRIME = 1_000_003


class FastText(nn.Module):
  vocab_size: int = 30000
  dim: int = 64
  buckets: int = 100_000
  bigrams: bool = True

  @nn.compact
  def __call__(self, ids, *, train: bool = False, mc_dropout: bool = False):
    del train, mc_dropout
    ids = ids.astype(jnp.int32)
    table = nn.Embed(self.vocab_size + (self.buckets if self.bigrams else 0), self.dim, name="embed")
    valid = (ids > 0).astype(jnp.float32)
    vecs = table(ids) * valid[..., None]
    total, count = vecs.sum(1), valid.sum(1)
    if self.bigrams:
      a, b = ids[:, :-1], ids[:, 1:]
      pair_valid = ((a > 0) & (b > 0)).astype(jnp.float32)
      pair_ids = self.vocab_size + (a * _PRIME + b) % self.buckets
      total += (table(pair_ids) * pair_valid[..., None]).sum(1)
      count += pair_valid.sum(1)
    return total / jnp.maximum(count, 1.0)[:, None]

  depth = 2

  @property
  def label(self) -> str:
    return f"fasttext(d{self.dim})"
