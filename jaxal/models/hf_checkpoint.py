"""Reading local Hugging Face BERT / DistilBERT / RoBERTa checkpoints into jaxal's encoder.

`read_state_dict(path)` reads `model.safetensors` (also sharded, via its index) with the
`safetensors` numpy API, or `pytorch_model.bin` with torch (imported only then, with
`weights_only=True`, and refused for torch older than 2.6, where that flag could still run
code from the file). `to_flax` maps Hugging Face names onto the encoder's parameter paths
and raises `CheckpointError` naming missing and unexpected keys and shape mismatches.
Nothing is downloaded: the path is a local directory.
"""

import functools
import json
import pathlib
import re
from typing import Any

import jax
import numpy as np

from jaxal import paths

Path = tuple[str, ...]


class CheckpointError(ValueError):
  """A checkpoint does not fit the encoder: the message lists what is missing or extra."""


# checkpoint keys that hold no encoder weights (task heads, buffers): skipped
_IGNORED = re.compile(r"(^|\.)position_ids$|(^|\.)token_type_ids$|^cls\.|^lm_head\.|^qa_outputs\.|"
                      r"^classifier\.out_proj\.|^classifier\.(weight|bias)$|^vocab_(transform|layer_norm|projector)\.")
_PREFIXES = ("bert.", "roberta.", "distilbert.")
_OPTIONAL = ("pooler",)  # kept at random init when the checkpoint has none


def _linear(path: Path):
  return {"weight": (path + ("kernel",), True), "bias": (path + ("bias",), False)}


def _norm(path: Path):
  return {"weight": (path + ("scale",), False), "gamma": (path + ("scale",), False),
          "bias": (path + ("bias",), False), "beta": (path + ("bias",), False)}


_BERT_LAYER = {
    "attention.self.query": lambda p: _linear(p + ("query",)),
    "attention.self.key": lambda p: _linear(p + ("key",)),
    "attention.self.value": lambda p: _linear(p + ("value",)),
    "attention.output.dense": lambda p: _linear(p + ("attention_out",)),
    "attention.output.LayerNorm": lambda p: _norm(p + ("attention_norm",)),
    "intermediate.dense": lambda p: _linear(p + ("intermediate",)),
    "output.dense": lambda p: _linear(p + ("output",)),
    "output.LayerNorm": lambda p: _norm(p + ("output_norm",)),
}
_DISTIL_LAYER = {
    "attention.q_lin": lambda p: _linear(p + ("query",)),
    "attention.k_lin": lambda p: _linear(p + ("key",)),
    "attention.v_lin": lambda p: _linear(p + ("value",)),
    "attention.out_lin": lambda p: _linear(p + ("attention_out",)),
    "sa_layer_norm": lambda p: _norm(p + ("attention_norm",)),
    "ffn.lin1": lambda p: _linear(p + ("intermediate",)),
    "ffn.lin2": lambda p: _linear(p + ("output",)),
    "output_layer_norm": lambda p: _norm(p + ("output_norm",)),
}
_EMBEDDINGS = {
    "embeddings.word_embeddings": {"weight": (("word_embed", "embedding"), False)},
    "embeddings.position_embeddings": {"weight": (("position_embed", "embedding"), False)},
    "embeddings.token_type_embeddings": {"weight": (("token_type_embed", "embedding"), False)},
    "embeddings.LayerNorm": _norm(("embed_norm",)),
}
_POOLERS = {"pooler.dense": _linear(("pooler",)), "pre_classifier": _linear(("pooler",)),
            "classifier.dense": _linear(("pooler",))}


def _target(name: str) -> tuple[Path, bool] | None:
  """The encoder path of Hugging Face parameter `name` (prefix stripped) and whether to transpose."""
  module, _, leaf = name.rpartition(".")
  m = re.fullmatch(r"(?:encoder|transformer)\.layer\.(\d+)\.(.+)", module)
  if m:
    table = _DISTIL_LAYER if module.startswith("transformer.") else _BERT_LAYER
    rule = table.get(m.group(2))
    return rule((f"layer_{m.group(1)}",)).get(leaf) if rule else None
  rule = _EMBEDDINGS.get(module) or _POOLERS.get(module)
  return rule.get(leaf) if rule else None


def to_flax(state_dict: dict[str, np.ndarray], expected: dict[Path, tuple[int, ...]]) -> dict[Path, np.ndarray]:
  """Maps a Hugging Face state dict onto the encoder's flat `{path: array}` params.

  Args:
    state_dict: parameter name -> array, as in the checkpoint (with or without the
      `bert.` / `roberta.` / `distilbert.` prefix).
    expected: the encoder's parameter path -> shape.
  Raises:
    CheckpointError: naming missing keys, unexpected keys and shape mismatches.
  """
  out, sources, unexpected, mismatched = {}, {}, [], []
  for name, array in state_dict.items():
    short = next((name[len(p):] for p in _PREFIXES if name.startswith(p)), name)
    target = _target(short)
    if target is None:
      if not _IGNORED.search(short):
        unexpected.append(name)
      continue
    path, transpose = target
    if path not in expected:
      unexpected.append(name)
      continue
    if path in out and path[0] == "pooler":  # pooler.dense wins over a classification head
      if not short.startswith("pooler."):
        continue
    array = np.asarray(array)
    array = array.T if transpose else array
    if tuple(array.shape) != tuple(expected[path]):
      mismatched.append(f"{name}: checkpoint {tuple(array.shape)} vs model {tuple(expected[path])} at {'/'.join(path)}")
      continue
    out[path], sources[path] = array, name
  missing = sorted("/".join(p) for p in expected if p not in out and p[0] not in _OPTIONAL)
  if missing or unexpected or mismatched:
    lines = []
    if missing:
      lines.append(f"missing from the checkpoint ({len(missing)}): {', '.join(missing)}")
    if unexpected:
      lines.append(f"unexpected in the checkpoint ({len(unexpected)}): {', '.join(sorted(unexpected))}")
    if mismatched:
      lines.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched)}")
    raise CheckpointError("checkpoint does not fit the encoder:\n  " + "\n  ".join(lines))
  return out


def _directory(path) -> pathlib.Path:
  p = paths.local(path, "model.options.pretrained", FileNotFoundError, "reading a Hugging Face checkpoint")
  if not p.is_dir():
    raise FileNotFoundError(f"pretrained checkpoint directory {p} does not exist")
  return p


def read_config(path) -> dict[str, Any]:
  """The checkpoint's `config.json`."""
  f = _directory(path) / "config.json"
  if not f.is_file():
    raise FileNotFoundError(f"{f} is missing: a Hugging Face checkpoint directory has a config.json")
  return json.loads(f.read_text())


def _read_safetensors(file: pathlib.Path) -> dict[str, np.ndarray]:
  """One safetensors file; bfloat16 (which plain numpy lacks) is widened to float32."""
  from safetensors import numpy as st_numpy  # pylint: disable=import-outside-toplevel
  try:
    state = st_numpy.load_file(str(file))
  except TypeError:  # numpy without JAX's bfloat16 registered: read through JAX
    from safetensors import flax as st_flax  # pylint: disable=import-outside-toplevel
    state = {k: np.asarray(v) for k, v in st_flax.load_file(str(file)).items()}
  return {k: v.astype(np.float32) if v.dtype.name == "bfloat16" else v for k, v in state.items()}


SAFE_TORCH = (2, 6)  # torch.load(weights_only=True) runs no code from the file from here on (CVE-2025-32434)
_CONVERT = ("convert it to model.safetensors (with torch 2.6+ and transformers: "
            "AutoModel.from_pretrained(DIR).save_pretrained(DIR)), which needs no torch")


def _safe_torch(file: pathlib.Path):
  """torch, when it can read the pickle `file` safely; else a one-line `CheckpointError`."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise CheckpointError(f"{file} is a PyTorch pickle and reading it needs torch {SAFE_TORCH[0]}.{SAFE_TORCH[1]}+; "
                          f"install it or {_CONVERT}") from None
  m = re.match(r"(\d+)\.(\d+)", str(torch.__version__))
  if not m or (int(m.group(1)), int(m.group(2))) < SAFE_TORCH:
    raise CheckpointError(f"{file} is a PyTorch pickle, which torch {torch.__version__} (older than "
                          f"{SAFE_TORCH[0]}.{SAFE_TORCH[1]}) cannot read safely: {_CONVERT}")
  return torch


def read_state_dict(path) -> dict[str, np.ndarray]:
  """Reads the weights of the checkpoint directory `path` into numpy arrays."""
  d = _directory(path)
  index = d / "model.safetensors.index.json"
  if (d / "model.safetensors").is_file() or index.is_file():
    files = [d / "model.safetensors"] if not index.is_file() else sorted(
        {d / f for f in json.loads(index.read_text())["weight_map"].values()})
    state = {}
    for f in files:
      state.update(_read_safetensors(f))
    return state
  if (d / "pytorch_model.bin").is_file():
    torch = _safe_torch(d / "pytorch_model.bin")
    state = torch.load(d / "pytorch_model.bin", map_location="cpu", weights_only=True)
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}
  raise FileNotFoundError(f"no model.safetensors, model.safetensors.index.json or pytorch_model.bin in {d}")


def encoder_options(config: dict[str, Any], family: str) -> dict[str, Any]:
  """`TransformerEncoder` options from a Hugging Face `config.json` of `family`."""
  model_type = config.get("model_type", family)
  if model_type in ("bert", "distilbert", "roberta") and model_type != family:
    raise CheckpointError(f"checkpoint is a {model_type!r} model; create it as {model_type!r}, not {family!r}")
  if config.get("position_embedding_type", "absolute") != "absolute":
    raise CheckpointError(f"position_embedding_type={config['position_embedding_type']!r} is not supported")
  if family == "distilbert":
    if config.get("sinusoidal_pos_embds"):
      raise CheckpointError("sinusoidal_pos_embds=true is not supported")
    opts = dict(vocab_size=config["vocab_size"], layers=config["n_layers"], hidden=config["dim"],
                heads=config["n_heads"], intermediate=config["hidden_dim"], type_vocab_size=0,
                hidden_dropout=config.get("dropout", 0.1), attention_dropout=config.get("attention_dropout", 0.1),
                layer_norm_eps=1e-12, activation=config.get("activation", "gelu"),
                pad_id=config.get("pad_token_id", 0))
    opts["max_len"] = config["max_position_embeddings"]
    return opts
  pad_id = config.get("pad_token_id", 1 if family == "roberta" else 0)
  offset = pad_id + 1 if family == "roberta" else 0
  return dict(vocab_size=config["vocab_size"], layers=config["num_hidden_layers"], hidden=config["hidden_size"],
              heads=config["num_attention_heads"], intermediate=config["intermediate_size"],
              max_len=config["max_position_embeddings"] - offset, type_vocab_size=config.get("type_vocab_size", 2),
              hidden_dropout=config.get("hidden_dropout_prob", 0.1),
              attention_dropout=config.get("attention_probs_dropout_prob", 0.1),
              layer_norm_eps=config.get("layer_norm_eps", 1e-12), activation=config.get("hidden_act", "gelu"),
              pad_id=pad_id)


def expected_shapes(encoder) -> dict[Path, tuple[int, ...]]:
  """The encoder's parameter path -> shape, computed without allocating weights."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  blank = encoder.clone(pretrained="")
  shapes = jax.eval_shape(lambda k: blank.init(k, jnp.ones((1, 2), jnp.int32))["params"], jax.random.key(0))
  return {tuple(k.key for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(shapes)}


@functools.lru_cache(maxsize=4)
def cached_params(path: str, family: str) -> dict[Path, np.ndarray]:
  """The encoder params of checkpoint directory `path`, read once per process."""
  from jaxal.models import transformer  # pylint: disable=import-outside-toplevel
  opts = encoder_options(read_config(path), family)
  encoder = transformer.TransformerEncoder(family=family, **opts)
  return to_flax(read_state_dict(path), expected_shapes(encoder))


def load_params(path, family: str | None = None) -> tuple[dict[str, Any], dict]:
  """Reads checkpoint directory `path`; returns `(encoder options, nested encoder params)`.

  `family` defaults to the config's `model_type`. The params fit
  `TransformerEncoder(family=family, **options)` (e.g. `variables["params"]["backbone"]`).
  """
  family = family or read_config(path).get("model_type", "bert")
  opts = encoder_options(read_config(path), family)
  nested: dict = {}
  for p, array in cached_params(str(path), family).items():
    node = nested
    for part in p[:-1]:
      node = node.setdefault(part, {})
    node[p[-1]] = array
  return opts, nested
