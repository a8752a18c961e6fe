"""Text proxies of SVP: VDCNN-9/29 and fastText n-grams (hashing, padding, training)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxal import loop
from jaxal import models
from jaxal.models import vdcnn
from tests.conftest import tiny_config

TINY_VDCNN = dict(vocab_size=30, dim=8, width=4, fc_width=16, kmax=4)


@pytest.fixture
def fast_compiles():
  """Deep unrolled nets compile slowly; XLA's optimizations buy nothing for a few tiny steps."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


def test_vdcnn_depth_and_layout():
  for name, depth in (("vdcnn9", 9), ("vdcnn29", 29)):
    m = models.create(name, 5, vocab_size=69)
    d = models.describe(m, (1, 1024), jnp.int32)
    assert d["depth"] == depth and d["architecture"] == name
    shapes = jax.eval_shape(lambda k, m=m: models.init_variables(m, k, (1, 1024), jnp.int32), jax.random.key(0))
    p = shapes["params"]["backbone"]
    assert p["embed"]["embedding"].shape == (69, 16)
    assert p["fc0"]["kernel"].shape == (512 * 8, 2048)  # k-max pooling, k = 8, over 512 channels
    assert p["fc1"]["kernel"].shape == (2048, 2048)
    kernels = [jax.tree_util.keystr(k) for k, a in jax.tree_util.tree_leaves_with_path(p) if a.ndim == 3]
    assert len(kernels) == depth  # temporal conv kernels: the paper counts conv layers
  with pytest.raises(ValueError, match="bad options for model 'vdcnn9'"):
    models.create("vdcnn9", 2, stem="cifar")


def test_kmax_pool_keeps_the_largest_in_time_order():
  x = jnp.array([[[1.0], [5.0], [2.0], [7.0], [3.0]]])
  np.testing.assert_allclose(vdcnn.kmax_pool(x, 3)[0, :, 0], [5.0, 7.0, 3.0])
  np.testing.assert_allclose(vdcnn.kmax_pool(x[:, :2], 3)[0, :, 0], [1.0, 5.0, 0.0])  # short: zero-padded


# VDCNN-29 differs from VDCNN-9 only in how often blocks repeat (its layout: test_vdcnn_depth_and_layout);
# VDCNN-9's blocks (1, 1, 1, 1) take both shortcut branches: identity in stage 0, projection after.
@pytest.mark.parametrize("name,options", [("vdcnn9", dict(TINY_VDCNN, block_dropout=0.2)),
                                          ("vdcnn9", dict(TINY_VDCNN, shortcut=True))])
def test_vdcnn_trains_and_mc_dropout_freezes_batch_norm(name, options, fast_compiles):
  rng = np.random.default_rng(0)
  ids = jnp.asarray(rng.integers(1, 30, (16, 24)), jnp.int32)
  labels = jnp.asarray((np.asarray(ids) < 15).sum(1) > 12, jnp.int32)
  m = models.create(name, 2, dropout=0.3, **options)
  v = models.init_variables(m, jax.random.key(0), ids[:1].shape, jnp.int32)  # op by op: one row's shapes, reused below
  opt = optax.sgd(0.05, momentum=0.9)

  @jax.jit
  def step(params, stats, opt_state, key):
    def loss_fn(p):
      (logits, _), new = m.apply({"params": p, "batch_stats": stats}, ids, train=True,
                                 mutable=["batch_stats"], rngs={"dropout": key})
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new["batch_stats"]
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), stats, opt_state, loss

  params, stats, opt_state = v["params"], v["batch_stats"], opt.init(v["params"])
  losses = []
  for i in range(4):
    params, stats, opt_state, loss = step(params, stats, opt_state, jax.random.key(i))
    losses.append(float(loss))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  moved = jax.tree_util.tree_map(lambda a, b: not np.allclose(a, b), v["batch_stats"], stats)
  assert all(jax.tree_util.tree_leaves(moved))
  assert m.depth == int(name[5:])
  # MC-dropout: dropout on (keys differ), BatchNorm in inference mode (batch-independent).
  a, _ = m.apply(v, ids[:4], mc_dropout=True, rngs={"dropout": jax.random.key(1)})
  b, _ = m.apply(v, ids[:4], mc_dropout=True, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(a, b)
  np.testing.assert_allclose(m.apply(v, ids[:1])[1][0], m.apply(v, ids[:4])[1][0], rtol=1e-4, atol=1e-5)


def test_vdcnn_ignores_padding_embeddings(fast_compiles):
  m = models.create("vdcnn9", 2, **TINY_VDCNN)
  v = models.init_variables(m, jax.random.key(0), (1, 12), jnp.int32)
  table = v["params"]["backbone"]["embed"]["embedding"]
  v2 = jax.tree_util.tree_map(lambda a: a, v)
  v2["params"]["backbone"]["embed"]["embedding"] = table.at[0].set(100.0)  # the pad row is never used
  ids = jnp.array([[4, 7, 9, 2, 0, 0, 0, 0, 0, 0, 0, 0]])
  embed = jax.jit(lambda v: m.apply(v, ids)[1])  # one compile for both tables
  np.testing.assert_allclose(embed(v), embed(v2), atol=1e-6)


def test_fasttext_trigrams_hash_like_bigrams():
  m = models.create("fasttext", 2, vocab_size=10, dim=4, buckets=7, ngrams=3)
  v = models.init_variables(m, jax.random.key(1), (1, 4), jnp.int32)
  table = np.asarray(v["params"]["backbone"]["embed"]["embedding"])
  _, e = m.apply(v, jnp.array([[2, 5, 3, 0]]))
  def gram(*tokens):  # the model's polynomial hash in int32 arithmetic (wraps around)
    h = np.array([tokens[0]], np.int32)
    for t in tokens[1:]:
      h = h * np.int32(1_000_003) + np.int32(t)
    return 10 + int(np.mod(h, 7)[0])
  grams = [gram(2, 5), gram(5, 3), gram(2, 5, 3)]
  want = (table[2] + table[5] + table[3] + sum(table[g] for g in grams)) / 6
  np.testing.assert_allclose(e[0], want, rtol=1e-5)
  words = models.create("fasttext", 2, vocab_size=10, dim=4, ngrams=1)
  assert models.describe(words, (1, 4), jnp.int32)["num_params"] == 10 * 4 + 4 * 2 + 2
  assert models.describe(m, (1, 4), jnp.int32)["architecture"] == "fasttext(d4,n3)"


def test_vdcnn_in_the_loop(tmp_path, fast_compiles):
  rng = np.random.default_rng(0)
  words = {0: ["great", "love", "fine"], 1: ["awful", "hate", "broken"]}
  lines = ["text,label"]
  for i in range(120):
    y = i % 2
    lines.append(" ".join(rng.choice(words[y], 4)) + f" filler{i % 7},{'pos' if y == 0 else 'neg'}")
  (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
  c = tiny_config(**{"data.source": "csv", "data.path": str(tmp_path / "t.csv"), "data.test_size": 40,
                     "data.max_length": 8, "model.name": "vdcnn9", "train.optimizer": "adam",
                     "train.lr_schedule": "0:0.01", "train.weight_decay": 0.0, "train.epochs": 2})
  c.model.options = type(c.model.options)({"dim": 8, "width": 4, "fc_width": 16, "kmax": 2})
  c.al.num_rounds = 2
  history = loop.run(c, tmp_path / "run")
  assert [r["num_labeled"] for r in history] == [20, 40]
  assert np.isfinite(history[-1]["test_accuracy"])
