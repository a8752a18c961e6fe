"""Turning texts into fixed-length int32 token ids.

`encode_texts(texts, tokenizer=..., max_length=...)` returns `(n, max_length)` int32 ids,
padded with 0 (the pad id), truncated at `max_length`.

Tokenizers:
* `"words"`: a built-in lower-cased word-level vocabulary, built from `fit_texts`
  (the training split), ids 0 = pad, 1 = unknown, then words by descending frequency.
  A word is a run of letters, digits, combining marks (of any script) and apostrophes;
  each character of a script written without spaces (CJK ideographs, Hiragana, Katakana,
  Thai, Lao, Khmer, Myanmar) is a word of its own, as in BERT's basic tokenizer.
  Everything else (spaces, punctuation, `_`) separates words. ASCII text splits as
  `[a-z0-9']+` on the lower-cased text.
* `"chars"`: lower-cased characters over the fixed 69-character alphabet of Zhang et al.
  (2015), used by VDCNN: 26 letters, 10 digits, 32 punctuation marks and newline; ids
  0 = pad, 1 = any other character, then the alphabet in order (vocabulary of 71).
"""

import collections
import functools
import re
import sys
import unicodedata
from typing import Sequence

import numpy as np

from jaxal.data import hf_tokenizer

PAD_ID = 0
UNK_ID = 1
_ASCII_WORD = re.compile(r"[a-z0-9']+")
# Scripts written without spaces between words (one token per character), as code point ranges:
# Thai, Lao, Myanmar, Khmer, Hiragana, Katakana, CJK ideographs (and their extensions), halfwidth Katakana.
_UNSPACED = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x3040, 0x30FF), (0x31F0, 0x31FF),
             (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F), (0x20000, 0x3134F))

CHAR_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+=<>()[]{}\n"
_CHAR_LUT = np.full(128, UNK_ID, np.int32)  # ASCII code -> id; everything else is UNK_ID
_CHAR_LUT[[ord(ch) for ch in CHAR_ALPHABET]] = np.arange(2, len(CHAR_ALPHABET) + 2)


def _class(codes: list[int]) -> str:
  """A regex character class of `codes` (sorted), as ranges."""
  ranges, start = [], None
  for i, code in enumerate(codes):
    start = code if start is None else start
    if i + 1 == len(codes) or codes[i + 1] != code + 1:
      ranges.append(f"\\U{start:08x}-\\U{code:08x}")
      start = None
  return f"[{''.join(ranges)}]"


@functools.cache
def _unicode_word(last: int):
  """Matches one unspaced-script character, or a run of word characters, up to code point `last`.

  Word characters: letters and digits (`str.isalnum`, what `\\w` matches less `_`), apostrophes, and
  combining marks, which `\\w` lacks: without them Arabic vowel signs or Devanagari matras would
  split words. Built once per process; `last=0xFFFF` keeps the classes small enough for `re` to
  test in constant time.
  """
  word, unspaced = [], []
  for code in range(last + 1):
    ch = chr(code)
    if ch.isalnum() or ch == "'" or unicodedata.category(ch).startswith("M"):
      (unspaced if any(lo <= code <= hi for lo, hi in _UNSPACED) else word).append(code)
  return re.compile(f"{_class(unspaced)}|{_class(word)}+")


def _unicode_words(text: str) -> list[str]:
  text = text.lower()
  last = 0xFFFF if not text or max(text) <= "\uffff" else sys.maxunicode
  return _unicode_word(last).findall(text)


def _words(text: str) -> list[str]:
  if text.isascii():  # the common case, fast; `_unicode_words` splits ASCII the same way
    return _ASCII_WORD.findall(text.lower())
  return _unicode_words(text)


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
