"""BERT, DistilBERT and RoBERTa: one post-LN transformer encoder, three configurations.

Inputs are int32 token ids `(batch, length)`; positions holding `pad_id` are masked out of
attention. Per family:

* `bert`: word + position + token-type embeddings (token type 0), pooler = dense + tanh
  on the first ([CLS]) token.
* `distilbert`: word + position embeddings, pooler = dense + ReLU on the first token
  (Hugging Face's `pre_classifier`).
* `roberta`: word + position + one token-type embedding; positions count non-pad tokens
  from `pad_id + 1` (Hugging Face's offset), pooler = dropout, dense + tanh on <s>.

`pooling="mean"` instead returns the masked mean of the last hidden states (sentence-
transformers style), with no pooler. `pretrained=<dir>` reads a local Hugging Face
checkpoint (see `hf_checkpoint.py`): its `config.json` sets the sizes and its weights
become the initial values, so `init` (and the loop) starts from them. Dropout inside the
encoder (`hidden_dropout`, `attention_dropout`) is on under `train` and under `mc_dropout`;
the `dropout` option of `models.create` is the head's, before the classifier. Depth =
number of transformer layers.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

FAMILIES = ("bert", "distilbert", "roberta")
_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


def _initializer(pretrained: str, family: str, path: tuple[str, ...], default: Callable) -> Callable:
  """`default`, or (with `pretrained`) an init returning the checkpoint's array at `path`."""
  if not pretrained:
    return default
  from jaxal.models import hf_checkpoint  # pylint: disable=import-outside-toplevel

  def init(key, shape, dtype=jnp.float32):
    params = hf_checkpoint.cached_params(pretrained, family)
    if path not in params:  # optional (the pooler): not in this checkpoint
      return default(key, shape, dtype)
    array = params[path]
    if tuple(array.shape) != tuple(shape):
      raise ValueError(f"checkpoint {'/'.join(path)} has shape {array.shape}, the model expects {tuple(shape)}")
    # a host callback, so the weights are not baked into the compiled init as constants
    return jax.pure_callback(lambda: np.asarray(array, dtype), jax.ShapeDtypeStruct(tuple(shape), dtype))
  return init


class _Layers:
  """Builds Dense / LayerNorm / Embed layers whose initial values may come from a checkpoint."""

  def __init__(self, pretrained: str, family: str, prefix: tuple[str, ...], eps: float):
    self.pretrained, self.family, self.prefix, self.eps = pretrained, family, prefix, eps

  def _init(self, name, leaf, default):
    return _initializer(self.pretrained, self.family, self.prefix + (name, leaf), default)

  def dense(self, features: int, name: str) -> nn.Dense:
    return nn.Dense(features, name=name, kernel_init=self._init(name, "kernel", nn.initializers.normal(0.02)),
                    bias_init=self._init(name, "bias", nn.initializers.zeros))

  def norm(self, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(self.eps, name=name, scale_init=self._init(name, "scale", nn.initializers.ones),
                        bias_init=self._init(name, "bias", nn.initializers.zeros))

  def embed(self, rows: int, features: int, name: str) -> nn.Embed:
    return nn.Embed(rows, features, name=name, embedding_init=self._init(name, "embedding", nn.initializers.normal(0.02)))


class EncoderLayer(nn.Module):
  """Post-LN block: x = LN(x + attention(x)); x = LN(x + FFN(x)); dropout after each sublayer."""

  hidden: int
  heads: int
  intermediate: int
  hidden_dropout: float
  attention_dropout: float
  layer_norm_eps: float
  activation: str
  pretrained: str = ""
  family: str = "bert"

  @nn.compact
  def __call__(self, x, bias, deterministic: bool):
    make = _Layers(self.pretrained, self.family, (self.name,), self.layer_norm_eps)
    b, n, _ = x.shape
    head_dim = self.hidden // self.heads
    split = lambda t: t.reshape(b, n, self.heads, head_dim)
    q = split(make.dense(self.hidden, "query")(x))
    k = split(make.dense(self.hidden, "key")(x))
    v = split(make.dense(self.hidden, "value")(x))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.float32(np.sqrt(head_dim)) + bias
    probs = nn.Dropout(self.attention_dropout)(jax.nn.softmax(scores, axis=-1), deterministic=deterministic)
    ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, n, self.hidden)
    h = nn.Dropout(self.hidden_dropout)(make.dense(self.hidden, "attention_out")(ctx), deterministic=deterministic)
    x = make.norm("attention_norm")(x + h)
    h = _ACTIVATIONS[self.activation](make.dense(self.intermediate, "intermediate")(x))
    h = nn.Dropout(self.hidden_dropout)(make.dense(self.hidden, "output")(h), deterministic=deterministic)
    return make.norm("output_norm")(x + h)


class TransformerEncoder(nn.Module):
  """A post-LN transformer encoder with a per-family pooler; returns the pooled embedding."""

  family: str = "bert"
  vocab_size: int = 30522
  layers: int = 12
  hidden: int = 768
  heads: int = 12
  intermediate: int = 3072
  max_len: int = 512
  type_vocab_size: int = 2
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1
  layer_norm_eps: float = 1e-12
  activation: str = "gelu"
  pad_id: int = 0
  pooling: str = "cls"
  pretrained: str = ""

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
    if min(self.vocab_size, self.layers, self.hidden, self.heads, self.intermediate, self.max_len) < 1:
      raise ValueError("vocab_size, layers, hidden, heads, intermediate and max_len must be >= 1")
    if self.hidden % self.heads:
      raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
    if self.activation not in _ACTIVATIONS:
      raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
    if self.pooling not in ("cls", "mean"):
      raise ValueError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}")
    super().__post_init__()

  @property
  def position_offset(self) -> int:
    """Rows of the position table before the first real position (RoBERTa: pad_id + 1)."""
    return self.pad_id + 1 if self.family == "roberta" else 0

  @property
  def depth(self) -> int:
    return self.layers

  @property
  def dropout_in_backbone(self) -> bool:
    """MC-dropout must run the whole encoder, not just the head (see jaxal/inference.py)."""
    return self.hidden_dropout > 0 or self.attention_dropout > 0

  @property
  def label(self) -> str:
    return f"{self.family}(L{self.layers},H{self.hidden})"

  def _position_ids(self, mask: jax.Array) -> jax.Array:
    if self.family == "roberta":  # count real tokens; pads sit at pad_id
      return jnp.cumsum(mask, axis=1) * mask + self.pad_id
    return jnp.broadcast_to(jnp.arange(mask.shape[1]), mask.shape)

  def __call__(self, ids, *, train: bool = False, mc_dropout: bool = False):
    return self.encode(ids, train=train, mc_dropout=mc_dropout)[1]

  @nn.compact
  def encode(self, ids, *, train: bool = False, mc_dropout: bool = False):
    """Returns `(hidden states (batch, length, hidden), pooled embedding (batch, hidden))`."""
    deterministic = not (train or mc_dropout)
    ids = ids.astype(jnp.int32)
    if ids.shape[1] > self.max_len:
      raise ValueError(f"sequences of {ids.shape[1]} tokens exceed max_len={self.max_len}")
    mask = (ids != self.pad_id).astype(jnp.int32)
    make = _Layers(self.pretrained, self.family, (), self.layer_norm_eps)
    x = make.embed(self.vocab_size, self.hidden, "word_embed")(ids)
    x = x + make.embed(self.max_len + self.position_offset, self.hidden, "position_embed")(self._position_ids(mask))
    if self.family != "distilbert" and self.type_vocab_size > 0:
      x = x + make.embed(self.type_vocab_size, self.hidden, "token_type_embed")(jnp.zeros_like(ids))
    x = make.norm("embed_norm")(x)
    x = nn.Dropout(self.hidden_dropout)(x, deterministic=deterministic)
    bias = jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(x.dtype).min)
    for i in range(self.layers):
      x = EncoderLayer(self.hidden, self.heads, self.intermediate, self.hidden_dropout, self.attention_dropout,
                       self.layer_norm_eps, self.activation, self.pretrained, self.family,
                       name=f"layer_{i}")(x, bias, deterministic)
    if self.pooling == "mean":
      m = mask[..., None].astype(x.dtype)
      return x, (x * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
    first = x[:, 0]
    if self.family == "roberta":
      first = nn.Dropout(self.hidden_dropout)(first, deterministic=deterministic)
    pooled = make.dense(self.hidden, "pooler")(first)
    return x, (jax.nn.relu(pooled) if self.family == "distilbert" else jnp.tanh(pooled))


_DEFAULTS: dict[str, dict[str, Any]] = {
    "bert": dict(type_vocab_size=2, layer_norm_eps=1e-12),
    "distilbert": dict(type_vocab_size=0, layer_norm_eps=1e-12, layers=6),
    "roberta": dict(type_vocab_size=1, layer_norm_eps=1e-5, vocab_size=50265),
}


def _make(family: str, options: dict) -> TransformerEncoder:
  fields = {f.name for f in dataclasses.fields(TransformerEncoder)} - {"parent", "name", "family"}
  unknown = set(options) - fields
  if unknown:
    raise TypeError(f"unexpected options {sorted(unknown)}; known: {sorted(fields)}")
  settings = dict(_DEFAULTS[family])
  if options.get("pretrained"):
    from jaxal.models import hf_checkpoint  # pylint: disable=import-outside-toplevel
    path = str(options["pretrained"])
    from_config = hf_checkpoint.encoder_options(hf_checkpoint.read_config(path), family)
    data_vocab = options.get("vocab_size")
    if data_vocab is not None and data_vocab > from_config["vocab_size"]:
      raise ValueError(f"the data's vocabulary ({data_vocab} ids) exceeds the checkpoint's "
                       f"({from_config['vocab_size']}); tokenize with the checkpoint's tokenizer "
                       f"(data.tokenizer={path!r})")
    sizes = set(from_config) - {"hidden_dropout", "attention_dropout", "vocab_size"}
    clash = {k: (options[k], from_config[k]) for k in sizes & set(options) if options[k] != from_config[k]}
    if clash:
      raise ValueError(f"options {clash} (given, checkpoint) disagree with the checkpoint's config.json")
    settings.update(from_config)
    options = {k: v for k, v in options.items() if k != "vocab_size"}
    settings.update(options, pretrained=path)
    encoder = TransformerEncoder(family=family, **settings)
    hf_checkpoint.cached_params(path, family)  # reads and checks the weights now: errors surface here
    return encoder
  settings.update(options)
  return TransformerEncoder(family=family, **settings)


def bert(**options) -> TransformerEncoder:
  return _make("bert", options)


def distilbert(**options) -> TransformerEncoder:
  return _make("distilbert", options)


def roberta(**options) -> TransformerEncoder:
  return _make("roberta", options)
