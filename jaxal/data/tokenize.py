"""Turning texts into fixed-length int32 token ids.

`encode_texts(texts, tokenizer=..., max_length=...)` returns `(n, max_length)` int32 ids,
padded with 0 (the pad id), truncated at `max_length`.

Tokenizers:
* `"words"`: a built-in lower-cased word-level vocabulary, built from `fit_texts`
  (the training split), ids 0 = pad, 1 = unknown, then words by descending frequency.
* `"chars"`: lower-cased characters over the fixed 69-character alphabet of Zhang et al.
  (2015), used by VDCNN: 26 letters, 10 digits, 32 punctuation marks and newline; ids
  0 = pad, 1 = any other character, then the alphabet in order (vocabulary of 71).
"""

import collections
import re
from typing import Sequence

import numpy as np

from jaxal.data import hf_tokenizer

PAD_ID = 0
UNK_ID = 1
_WORD = re.compile(r"[a-z0-9']+")


CHAR_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+=<>()[]{}\n"
_CHAR_LUT = np.full(128, UNK_ID, np.int32)  # ASCII code -> id; everything else is UNK_ID
_CHAR_LUT[[ord(ch) for ch in CHAR_ALPHABET]] = np.arange(2, len(CHAR_ALPHABET) + 2)


def _words(text: str) -> list[str]:
  return _WORD.findall(text.lower())


def build_word_vocab(texts: Sequence[str], max_vocab: int = 30000) -> dict[str, int]:
  counts = collections.Counter(w for t in texts for w in _words(t))
  ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max_vocab - 2]
  return {w: i + 2 for i, (w, _) in enumerate(ranked)}


def encode_texts(texts: Sequence[str], *, tokenizer: str = "words", max_length: int = 64,
                 fit_texts: Sequence[str] | None = None, max_vocab: int = 30000) -> tuple[np.ndarray, int]:
  """Encodes `texts`; returns `(ids (n, max_length) int32, vocab_size)`."""
  if hf_tokenizer.is_tokenizer_path(tokenizer):  # tokenizer.json / vocab.txt: see hf_tokenizer.py
    return hf_tokenizer.encode(texts, tokenizer, max_length)
  if tokenizer == "chars":
    ids = np.zeros((len(texts), max_length), np.int32)
    for row, text in enumerate(texts):  # vectorized per text: millions of reviews stay fast
      codes = np.frombuffer(text.lower()[:max_length].encode("utf-32-le"), np.uint32)
      ids[row, : codes.size] = np.where(codes < 128, _CHAR_LUT[np.minimum(codes, 127)], UNK_ID)
    return ids, len(CHAR_ALPHABET) + 2
  if tokenizer != "words":
    raise ValueError(f"unknown tokenizer {tokenizer!r}; known: 'words', 'chars', or the path of a tokenizer.json / vocab.txt")
  vocab = build_word_vocab(fit_texts if fit_texts is not None else texts, max_vocab)
  ids = np.zeros((len(texts), max_length), np.int32)
  for row, text in enumerate(texts):
    toks = [vocab.get(w, UNK_ID) for w in _words(text)][:max_length]
    ids[row, : len(toks)] = toks
  return ids, len(vocab) + 2
