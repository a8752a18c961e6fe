"""Text models (fastText, text CNN): padding is ignored, and they train through the loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import loop
from jaxal import models
from tests.conftest import tiny_config


@pytest.mark.parametrize("name", ["fasttext", "text_cnn"])
def test_padding_does_not_change_the_embedding(name):
  m = models.create(name, 3, vocab_size=50, dim=8, **({"buckets": 97} if name == "fasttext" else {"filters": 4}))
  v = models.init_variables(m, jax.random.key(0), (1, 6), jnp.int32)
  ids = jnp.array([[5, 9, 3, 0, 0, 0]])
  longer = jnp.array([[5, 9, 3, 0, 0, 0, 0, 0, 0, 0]])
  _, e1 = m.apply(v, ids)
  _, e2 = m.apply(v, longer)
  np.testing.assert_allclose(e1, e2, atol=1e-6)
  _, e3 = m.apply(v, jnp.array([[5, 9, 4, 0, 0, 0]]))
  assert not np.allclose(e1, e3)


def test_fasttext_is_a_mean_of_word_and_bigram_vectors():
  m = models.create("fasttext", 2, vocab_size=10, dim=4, buckets=7)
  v = models.init_variables(m, jax.random.key(1), (1, 3), jnp.int32)
  table = np.asarray(v["params"]["backbone"]["embed"]["embedding"])
  _, e = m.apply(v, jnp.array([[2, 5, 0]]))
  bigram = 10 + (2 * 1_000_003 + 5) % 7
  np.testing.assert_allclose(e[0], (table[2] + table[5] + table[bigram]) / 3, rtol=1e-5)


@pytest.mark.parametrize("name", ["fasttext", "text_cnn"])
def test_text_model_in_the_loop(tmp_path, name, fast_compiles):
  rng = np.random.default_rng(0)
  words = {0: ["great", "love", "fine"], 1: ["awful", "hate", "broken"]}
  lines = ["text,label"]
  for i in range(120):
    y = i % 2
    lines.append(" ".join(rng.choice(words[y], 4)) + f" filler{i % 7},{'pos' if y == 0 else 'neg'}")
  (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
  c = tiny_config(**{"data.source": "csv", "data.path": str(tmp_path / "t.csv"), "data.test_size": 40,
                     "data.max_length": 8, "model.name": name, "train.optimizer": "adam",
                     "train.lr_schedule": "0:0.01", "train.weight_decay": 0.0, "train.epochs": 6})
  c.model.options = type(c.model.options)({"dim": 8})
  history = loop.run(c, tmp_path / "run")
  assert [r["num_labeled"] for r in history] == [20, 40, 60]
  assert history[-1]["test_accuracy"] > 0.9  # the words give the class away
