"""BERT / DistilBERT / RoBERTa: layouts, parameter counts, dropout switches, training, the loop."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxal import loop
from jaxal import models
from jaxal.acquisition import mc_dropout
from jaxal import inference
from jaxal.data import pipeline
from jaxal.models import transformer
from tests.conftest import tiny_config
from tests.zoo_helpers import fast_compiles  # pylint: disable=unused-import  # a fixture

FAMILIES = ("bert", "distilbert", "roberta")
TINY = dict(vocab_size=40, layers=2, hidden=16, heads=2, intermediate=24, max_len=12)
SMALL = dict(TINY, layers=1, hidden=8, intermediate=8)  # tests that run the encoder: one layer holds every code path


def _backbone_params(model, length=6):
  shapes = jax.eval_shape(lambda k: models.init_variables(model, k, (1, length), jnp.int32), jax.random.key(0))
  return shapes["params"]["backbone"]


def _expected_count(family, vocab, layers, hidden, intermediate, max_len, type_vocab, pad_id=0):
  """Parameter count of the encoder written out from the architecture (pooler included)."""
  positions = max_len + (pad_id + 1 if family == "roberta" else 0)
  embeddings = (vocab + positions + (0 if family == "distilbert" else type_vocab)) * hidden + 2 * hidden
  block = 4 * (hidden * hidden + hidden) + 2 * hidden * intermediate + intermediate + hidden + 4 * hidden
  return embeddings + layers * block + hidden * hidden + hidden


@pytest.mark.parametrize("family", FAMILIES)
def test_layout_depth_and_count(family):
  m = models.create(family, 3, **TINY)
  d = models.describe(m, (1, 6), jnp.int32)
  type_vocab = {"bert": 2, "distilbert": 0, "roberta": 1}[family]
  backbone = _expected_count(family, 40, 2, 16, 24, 12, type_vocab)
  assert d["depth"] == 2 and d["architecture"] == f"{family}(L2,H16)"
  assert d["num_params"] == backbone + 16 * 3 + 3 and d["num_batch_stats"] == 0
  p = _backbone_params(m)
  assert ("token_type_embed" in p) == (family != "distilbert")
  assert p["position_embed"]["embedding"].shape[0] == (13 if family == "roberta" else 12)  # RoBERTa: pad_id + 1 rows first
  if family == "roberta":  # Hugging Face's pad id 1: 514 rows for 512 positions
    assert _backbone_params(models.create(family, 3, **dict(TINY, pad_id=1)))["position_embed"]["embedding"].shape[0] == 14
  assert sorted(k for k in p if k.startswith("layer_")) == ["layer_0", "layer_1"]


@pytest.mark.parametrize("family,published", [("bert", 109_482_240), ("roberta", 124_645_632),
                                              ("distilbert", 66_362_880 + 768 * 768 + 768)])
def test_base_sizes_match_the_published_counts(family, published):
  """bert-base-uncased, roberta-base and distilbert-base-uncased (+ its pre_classifier as the pooler)."""
  vocab = {"bert": 30522, "distilbert": 30522, "roberta": 50265}[family]
  options = dict(vocab_size=vocab, max_len=512) if family != "roberta" else dict(max_len=512, pad_id=1)
  m = models.create(family, 2, **options)
  assert models.count_params(_backbone_params(m)) == published
  assert m.depth == (6 if family == "distilbert" else 12)


def test_roberta_positions_count_real_tokens_from_the_pad_offset():
  enc = transformer.roberta(pad_id=1, **TINY)
  ids = jnp.array([[0, 5, 6, 2, 1, 1], [0, 7, 2, 1, 1, 1]])
  np.testing.assert_array_equal(enc._position_ids((ids != 1).astype(jnp.int32)),
                                [[2, 3, 4, 5, 1, 1], [2, 3, 4, 1, 1, 1]])
  bert = transformer.bert(**TINY)
  np.testing.assert_array_equal(bert._position_ids(jnp.ones((1, 4), jnp.int32)), [[0, 1, 2, 3]])


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_is_masked(family):
  for pooling in ("cls", "mean"):
    m = models.create(family, 3, pooling=pooling, **SMALL)
    v = models.init_variables(m, jax.random.key(0), (1, 6), jnp.int32)
    short = jnp.array([[3, 9, 4, 7, 0, 0]])
    longer = jnp.array([[3, 9, 4, 7, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_allclose(m.apply(v, short)[1], m.apply(v, longer)[1], atol=1e-5)
    assert not np.allclose(m.apply(v, short)[1], m.apply(v, jnp.array([[3, 9, 4, 8, 0, 0]]))[1])


@pytest.mark.parametrize("family", FAMILIES)
def test_trains_and_mc_dropout_reaches_inside_the_encoder(family, fast_compiles):
  rng = np.random.default_rng(0)
  ids = jnp.asarray(rng.integers(1, 40, (16, 10)), jnp.int32)
  labels = jnp.asarray((np.asarray(ids) < 20).sum(1) > 5, jnp.int32)
  m = models.create(family, 2, **SMALL)  # no head dropout: any MC variation comes from the encoder
  v = models.init_variables(m, jax.random.key(0), ids.shape, jnp.int32)
  opt = optax.adam(3e-3)

  @jax.jit
  def step(params, opt_state, key):
    def loss_fn(p):
      logits, _ = m.apply({"params": p}, ids, train=True, rngs={"dropout": key})
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  params, opt_state, losses = v["params"], opt.init(v["params"]), []
  for i in range(8):
    params, opt_state, loss = step(params, opt_state, jax.random.key(i))
    losses.append(float(loss))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]

  def sampler(model):  # op by op, not jitted: the ops' compiles serve every family, a jit per program costs more
    return lambda v, x, key: model.apply(v, x, mc_dropout=True, rngs={"dropout": key})[0]

  def plain(v, x, key):
    return m.apply(v, x, rngs={"dropout": key})
  mc = sampler(m)
  x = ids[:4]
  assert not np.allclose(mc(v, x, jax.random.key(1)), mc(v, x, jax.random.key(2)))
  np.testing.assert_array_equal(plain(v, x, jax.random.key(1))[0], plain(v, x, jax.random.key(2))[0])
  np.testing.assert_allclose(plain(v, x[:1], jax.random.key(1))[1][0], plain(v, x, jax.random.key(1))[1][0],
                             rtol=1e-4, atol=1e-5)
  still_model = models.create(family, 2, **dict(SMALL, hidden_dropout=0.0, attention_dropout=0.0))
  still = sampler(still_model)
  np.testing.assert_array_equal(still(v, x, jax.random.key(1)), still(v, x, jax.random.key(2)))
  # MC-dropout scoring runs the whole encoder when it has dropout, the head alone otherwise
  assert m.backbone.dropout_in_backbone and not still_model.backbone.dropout_in_backbone


def test_bald_sees_the_encoder_dropout(fast_compiles):
  """With no head dropout, MC passes differ only through the encoder's own dropout."""
  ids = jnp.asarray(np.random.default_rng(1).integers(1, 40, (6, 8)), jnp.int32)
  scores = {}
  for rate in (0.1, 0.0):
    m = models.create("bert", 3, **dict(SMALL, hidden_dropout=rate, attention_dropout=rate))
    v = models.init_variables(m, jax.random.key(0), ids.shape, jnp.int32)
    v["params"]["classifier"]["kernel"] *= 50.0  # logits large enough for the passes to disagree visibly
    predictor = inference.Predictor(m, v, ids, pipeline.make_preprocess(ids, "text", "none"), chunk_size=4)
    stats = predictor.mc_statistics(4, jax.random.key(3))
    scores[rate] = np.asarray(mc_dropout.bald_from_stats(stats["mean_probs"], stats["mean_entropy"]))
  assert (scores[0.1] > 1e-4).all()
  np.testing.assert_allclose(scores[0.0], 0.0, atol=1e-5)


def test_bad_options_are_named():
  with pytest.raises(ValueError, match="bad options for model 'bert'.*stem"):
    models.create("bert", 2, stem="cifar")
  with pytest.raises(ValueError, match="multiple of heads"):
    models.create("roberta", 2, hidden=10, heads=3)


def test_transformer_in_the_loop(tmp_path, fast_compiles):
  """The loop has no per-family code; RoBERTa (pad offset, pooler dropout) has the most branches."""
  rng = np.random.default_rng(0)
  words = {0: ["great", "love", "fine"], 1: ["awful", "hate", "broken"]}
  lines = ["text,label"]
  for i in range(100):
    y = i % 2
    lines.append(" ".join(rng.choice(words[y], 4)) + f" filler{i % 7},{'pos' if y == 0 else 'neg'}")
  (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
  c = tiny_config(**{"data.source": "csv", "data.path": str(tmp_path / "t.csv"), "data.test_size": 40,
                     "data.max_length": 8, "model.name": "roberta", "train.optimizer": "adam",
                     "train.lr_schedule": "0:0.003", "train.weight_decay": 0.0, "train.epochs": 4})
  c.model.options = type(c.model.options)(dict(layers=1, hidden=16, heads=2, intermediate=16, max_len=8))
  c.al.num_rounds = 2
  history = loop.run(c, tmp_path / "run")
  assert [r["num_labeled"] for r in history] == [20, 40]
  assert history[-1]["test_accuracy"] > 0.8  # the words give the class away
