"""`jaxal.query`: a model from a hand-written optax loop gets the loop's picks."""

import ast
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxal
from jaxal import acquisition
from jaxal import checkpoint as checkpoint_lib
from jaxal import compiles
from jaxal import inference
from jaxal import loop
from jaxal import models
from jaxal import querying
from jaxal.data import datasets
from tests.conftest import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
POOL, LABELED, BUDGET, CHUNK = 300, 30, 12, 64  # 300 rows: the last of 5 chunks is padded


class TinyNet(nn.Module):
  """An MLP on uint8 8x8 digits, written as a user would, with jaxal's `(logits, embedding)`."""

  @nn.compact
  def __call__(self, x, *, train: bool, mc_dropout: bool):
    h = nn.relu(nn.Dense(16)(x.reshape(x.shape[0], -1).astype(jnp.float32) / 255.0))
    return nn.Dense(10)(nn.Dropout(0.5, deterministic=not (train or mc_dropout))(h)), h


NET = TinyNet()
SEEN = []  # (dtype, shape) of every input apply_fn was traced with


def apply_fn(variables, x, *, train, mc_dropout, rngs=None):
  SEEN.append((x.dtype, x.shape))
  return NET.apply(variables, x, train=train, mc_dropout=mc_dropout, rngs=rngs)


@pytest.fixture(scope="module")
def own_loop():
  """A pool of 300 uint8 digits, 30 labeled, and variables from a hand-written optax loop."""
  images, labels = datasets.read_digits()
  pool = (images[:POOL] * 15).astype(np.uint8)
  labeled = np.zeros(POOL, bool)
  labeled[:LABELED] = True
  tx = optax.adam(1e-2)
  variables = NET.init(jax.random.key(0), pool[:1], train=False, mc_dropout=False)
  opt_state = tx.init(variables)

  @jax.jit
  def step(variables, opt_state, x, y, key):
    def loss(v):
      logits, _ = apply_fn(v, x, train=True, mc_dropout=False, rngs={"dropout": key})
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    updates, opt_state = tx.update(jax.grad(loss)(variables), opt_state)
    return optax.apply_updates(variables, updates), opt_state

  for t in range(40):
    variables, opt_state = step(variables, opt_state, pool[:LABELED], labels[:LABELED], jax.random.key(t + 1))
  return variables, pool, labeled


def _direct_scores(variables, pool, key):
  """Scores from one full-batch forward and per-row MC passes, outside jaxal's machinery."""
  logits, embedding = apply_fn(variables, jnp.asarray(pool), train=False, mc_dropout=False)
  p = np.asarray(jax.nn.softmax(np.asarray(logits, np.float64), -1))
  top2 = np.sort(p, -1)[:, ::-1][:, :2]

  @jax.jit
  def mc_pass(t):  # pass t of row i uses fold_in(fold_in(key, i), t), as Predictor documents
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, i), t))(jnp.arange(POOL))
    return jax.vmap(lambda x, k: jax.nn.softmax(apply_fn(variables, x[None], train=False, mc_dropout=True,
                                                         rngs={"dropout": k})[0][0]))(jnp.asarray(pool), keys)

  mc = np.stack([np.asarray(mc_pass(t), np.float64) for t in range(4)])
  ent = lambda q: -(q * np.log(np.maximum(q, 1e-30))).sum(-1)
  scores = {"least_confidence": 1 - top2[:, 0], "margin": top2[:, 1] - top2[:, 0], "entropy": ent(p),
            "bald": ent(mc.mean(0)) - ent(mc).mean(0)}
  return scores, np.asarray(embedding, np.float64)


def _greedy_kcenter(embedding, centers, budget):
  d = np.min(((embedding[:, None] - embedding[centers][None]) ** 2).sum(-1), 1)
  picks = []
  for _ in range(budget):
    picks.append(int(np.argmax(d)))
    d = np.minimum(d, ((embedding - embedding[picks[-1]]) ** 2).sum(-1))
  return np.array(picks)


def test_query_picks_what_the_loops_acquisition_picks(own_loop):
  variables, pool, labeled = own_loop
  key = jax.random.key(3)
  options = {"mc_samples": 4, "kcenter_prune": False}  # the dense k-center kernel compiles faster
  predictor = inference.Predictor(querying.ApplyFnModel(apply_fn), variables, jnp.asarray(pool),
                                  querying._as_given, chunk_size=CHUNK)  # pylint: disable=protected-access
  scores, embedding = _direct_scores(variables, pool, key)
  for name in ("least_confidence", "margin", "entropy", "bald", "coreset", "badge", "random"):
    picks = jaxal.query(apply_fn, variables, pool, labeled, BUDGET, acquisition=name, key=key, chunk_size=CHUNK,
                        **options)
    view = acquisition.PoolView(labeled, ~labeled, predictor, options)
    assert isinstance(picks, np.ndarray) and picks.dtype.kind == "i"
    np.testing.assert_array_equal(picks, acquisition.acquire(name, view, BUDGET, key), err_msg=name)
    assert not labeled[picks].any() and len(set(picks.tolist())) == BUDGET, name
    if name in scores:  # the same top-k from scores computed without chunks
      expected = np.argsort(-np.where(labeled, -np.inf, scores[name]), kind="stable")[:BUDGET]
      np.testing.assert_array_equal(np.sort(picks), np.sort(expected), err_msg=name)
    if name == "coreset":
      np.testing.assert_array_equal(picks, _greedy_kcenter(embedding, np.flatnonzero(labeled), BUDGET))
  # a raw PRNGKey and an int seed stand for the same key
  assert np.array_equal(jaxal.query(apply_fn, variables, pool, labeled, BUDGET, acquisition="random", key=7),
                        jaxal.query(apply_fn, variables, pool, labeled, BUDGET, acquisition="random",
                                    key=jax.random.PRNGKey(7)))


def test_inputs_reach_apply_fn_as_given_chunk_by_chunk_and_compile_once(own_loop):
  variables, pool, labeled = own_loop
  fresh = lambda v, x, **kw: apply_fn(v, x, **kw)  # a new function: traced afresh
  SEEN.clear()
  first = jaxal.query(fresh, variables, pool, labeled, BUDGET, chunk_size=CHUNK)
  assert SEEN == [(jnp.uint8, (CHUNK, 8, 8))]
  more = labeled.copy()
  more[first] = True
  with compiles.CompileCounter() as counter:
    second = jaxal.query(fresh, variables, pool, more, BUDGET + 3, chunk_size=CHUNK)
  assert counter.count == 0
  assert not np.isin(second, first).any()


def test_query_on_the_loops_model_gives_the_loops_round_zero_picks(tmp_path):
  """BALD: the loop scores on preprocessed uint8 inputs and re-runs the head alone for MC
  dropout; query gets float inputs and runs the whole model. Same picks."""
  config = tiny_config(**{"al.num_rounds": 2, "train.epochs": 1, "acquisition.name": "bald",
                          "model.options.dropout": 0.5, "acquisition.options.mc_samples": 4})
  history = loop.run(config, tmp_path)
  ckpts = checkpoint_lib.RunCheckpoints(tmp_path)
  pool_state, _, meta = ckpts.restore(1)  # after round 0: the initial labels, round 0's picks pending
  variables = ckpts.restore_model(1)
  ckpts.close()
  loop_picks = np.asarray(meta["pending"])
  assert loop_picks.size == history[0]["queried"] == 20

  data = loop.load_data(config)
  model = models.create(config.model.name, data.dataset.num_classes, **dict(config.model.options))
  pool_inputs = data.preprocess(data.pool_inputs)  # the user applies the preprocessing
  select_key = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 0), 4)[2]
  picks = jaxal.query(model.apply, variables, pool_inputs, pool_state.labeled_mask, 20, acquisition="bald",
                      key=select_key, chunk_size=config.acquisition.chunk_size, **dict(config.acquisition.options))
  np.testing.assert_array_equal(picks, loop_picks)


@pytest.mark.parametrize("change,argument", [
    ({"labeled_mask": np.zeros(POOL - 1, bool)}, "labeled_mask"),
    ({"labeled_mask": np.arange(POOL)}, "labeled_mask"),  # indices, not a mask
    ({"acquisition": "least_confident"}, "acquisition"),
    ({"budget": POOL + 1}, "budget"),
    ({"mc_sample": 4}, "mc_sample"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"key": "seed"}, "key"),
])
def test_bad_input_is_refused_naming_the_argument(change, argument):
  args = {"labeled_mask": np.zeros(POOL, bool), "budget": 5, **change}
  pool = np.zeros((POOL, 8, 8), np.uint8)
  with pytest.raises(ValueError, match=argument):
    jaxal.query(apply_fn, {}, pool, args.pop("labeled_mask"), args.pop("budget"), **args)


def test_predictor_is_inference_and_train_does_not_import_acquisition():
  assert acquisition.Predictor is inference.Predictor
  from jaxal.acquisition import scoring  # pylint: disable=import-outside-toplevel
  assert scoring.Predictor is inference.Predictor
  for path in sorted((ROOT / "jaxal" / "train").glob("*.py")):
    tree = ast.parse(path.read_text())
    imported = [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith("jaxal.acquisition")], path.name
