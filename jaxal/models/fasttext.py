"""fastText (Joulin et al. 2017): a bag of word and hashed n-gram embeddings, mean-pooled.

Inputs are int32 token ids `(batch, length)` with 0 = padding. Each non-pad token and each
run of 2..`ngrams` adjacent non-pad tokens (hashed into `buckets` shared slots) has an
embedding; the embedding of a text is the mean over its tokens and n-grams, and the head is
a linear layer. `ngrams=2` (default) is words + bigrams, `ngrams=1` (or `bigrams=False`)
words only. `vocab_size` is filled in from the dataset by the loop. Depth 2 (embedding +
linear).
"""

import flax.linen as nn
import jax.numpy as jnp

_PRIME = 1_000_003


class FastText(nn.Module):
  vocab_size: int = 30000
  dim: int = 64
  buckets: int = 100_000
  bigrams: bool = True
  ngrams: int = 2

  def __post_init__(self):
    if self.ngrams < 1 or min(self.vocab_size, self.dim, self.buckets) < 1:
      raise ValueError("ngrams, vocab_size, dim and buckets must be >= 1")
    super().__post_init__()

  @property
  def max_n(self) -> int:
    return self.ngrams if self.bigrams else 1

  @nn.compact
  def __call__(self, ids, *, train: bool = False, mc_dropout: bool = False):
    del train, mc_dropout
    ids = ids.astype(jnp.int32)
    table = nn.Embed(self.vocab_size + (self.buckets if self.max_n > 1 else 0), self.dim, name="embed")
    valid = (ids > 0).astype(jnp.float32)
    vecs = table(ids) * valid[..., None]
    total, count = vecs.sum(1), valid.sum(1)
    for n in range(2, self.max_n + 1):
      if ids.shape[1] < n:
        break
      span = ids.shape[1] - n + 1
      h, ok = ids[:, :span], ids[:, :span] > 0
      for j in range(1, n):  # polynomial hash, int32 wrap-around
        nxt = ids[:, j:j + span]
        h, ok = h * _PRIME + nxt, ok & (nxt > 0)
      gram_valid = ok.astype(jnp.float32)
      gram_ids = self.vocab_size + jnp.mod(h, self.buckets)
      total += (table(gram_ids) * gram_valid[..., None]).sum(1)
      count += gram_valid.sum(1)
    return total / jnp.maximum(count, 1.0)[:, None]

  depth = 2

  @property
  def label(self) -> str:
    return f"fasttext(d{self.dim})" if self.max_n == 2 else f"fasttext(d{self.dim},n{self.max_n})"
