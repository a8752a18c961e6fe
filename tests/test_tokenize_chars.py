"""The character tokenizer (VDCNN's input) against a direct reading of the alphabet."""

import numpy as np

from jaxal.data import tokenize


def test_chars_follow_the_alphabet_with_padding_and_truncation():
  rng = np.random.default_rng(0)
  pool = tokenize.CHAR_ALPHABET + "ABCXYZ éß\t"
  texts = ["".join(rng.choice(list(pool), size=int(rng.integers(0, 30)))) for _ in range(50)]
  ids, vocab_size = tokenize.encode_texts(texts, tokenizer="chars", max_length=20)
  assert ids.shape == (50, 20) and ids.dtype == np.int32 and vocab_size == 71
  assert len(set(tokenize.CHAR_ALPHABET)) == 69
  for row, text in zip(ids, texts):
    expected = []
    for ch in text[:20]:
      low = ch.lower()
      expected.append(tokenize.CHAR_ALPHABET.index(low) + 2 if low in tokenize.CHAR_ALPHABET else 1)
    np.testing.assert_array_equal(row[: len(expected)], expected)
    assert (row[len(expected):] == 0).all()
  assert ids.max() < vocab_size and ids.min() >= 0


def test_chars_do_not_depend_on_the_fitting_texts():
  a, _ = tokenize.encode_texts(["Great product!"], tokenizer="chars", max_length=16, fit_texts=["x"])
  b, _ = tokenize.encode_texts(["great product!"], tokenizer="chars", max_length=16, fit_texts=["other", "texts"])
  np.testing.assert_array_equal(a, b)
