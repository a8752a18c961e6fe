"""Subword tokenization with the `tokenizers` library, from local files only.

`data.tokenizer` may name a `tokenizer.json`, a WordPiece `vocab.txt`, or a directory
holding one (a Hugging Face checkpoint directory; `tokenizer.json` is preferred). Texts
get the tokenizer's special tokens (e.g. [CLS] ... [SEP]), are truncated to `max_length`
and padded with the tokenizer's own pad id (BERT's [PAD] = 0, RoBERTa's <pad> = 1), so ids
line up with a pretrained checkpoint's embeddings. A `vocab.txt` is lower-cased unless a
`tokenizer_config.json` beside it says `"do_lower_case": false`.
"""

import functools
import json
import os
import pathlib
from typing import Sequence

import numpy as np

from jaxal import paths

_PAD_TOKENS = ("[PAD]", "<pad>", "<PAD>")


def is_tokenizer_path(spec: str) -> bool:
  """Whether `data.tokenizer` names tokenizer files rather than a built-in tokenizer."""
  return spec.endswith((".json", ".txt")) or "/" in spec or os.sep in spec or pathlib.Path(spec).is_dir()


def _resolve(spec: str) -> pathlib.Path:
  p = paths.local(spec, "data.tokenizer", FileNotFoundError, "the tokenizers library")
  if p.is_dir():
    for name in ("tokenizer.json", "vocab.txt"):
      if (p / name).is_file():
        return p / name
    raise FileNotFoundError(f"tokenizer directory {p} has neither tokenizer.json nor vocab.txt")
  if not p.is_file():
    raise FileNotFoundError(f"tokenizer file {p} does not exist (data.tokenizer)")
  return p


@functools.lru_cache(maxsize=4)
def load(spec: str):
  """The `tokenizers.Tokenizer` for a `tokenizer.json`, `vocab.txt` or a directory holding one."""
  try:
    import tokenizers  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError("subword tokenizers need the `tokenizers` package: pip install 'jaxal[text]'") from None
  path = _resolve(spec)
  if path.suffix == ".json":
    return tokenizers.Tokenizer.from_file(str(path))
  lowercase = True
  config = path.parent / "tokenizer_config.json"
  if config.is_file():
    lowercase = bool(json.loads(config.read_text()).get("do_lower_case", True))
  wordpiece = tokenizers.BertWordPieceTokenizer(str(path), lowercase=lowercase)
  return wordpiece._tokenizer  # pylint: disable=protected-access  # the plain Tokenizer inside


def pad_id(tokenizer) -> int:
  """The tokenizer's pad id: its padding setting, else a pad token of its vocabulary, else 0."""
  if tokenizer.padding:
    return int(tokenizer.padding["pad_id"])
  for token in _PAD_TOKENS:
    i = tokenizer.token_to_id(token)
    if i is not None:
      return int(i)
  return 0


def encode(texts: Sequence[str], spec: str, max_length: int) -> tuple[np.ndarray, int]:
  """Encodes `texts` with tokenizer files `spec`; returns `(ids (n, max_length) int32, vocab_size)`."""
  tok = load(spec)
  pid = pad_id(tok)
  pad_token = tok.id_to_token(pid) or "[PAD]"
  tok.enable_truncation(max_length)
  tok.enable_padding(length=max_length, pad_id=pid, pad_token=pad_token)
  ids = np.array([e.ids for e in tok.encode_batch(list(texts))], np.int32).reshape(len(texts), max_length)
  return ids, int(tok.get_vocab_size(with_added_tokens=True))
