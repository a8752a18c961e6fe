"""P-DARTS: mixed op, pruning, derivation with the skip limit, a tiny search, and the loop."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxal import config as config_lib
from jaxal import loop
from jaxal import models
from jaxal.models import darts
from jaxal.models import darts_net
from jaxal.search import pdarts
from jaxal.search import pdarts_upo
from tests.conftest import tiny_config


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_is_the_weighted_sum_of_its_ops(stride):
  ops = tuple(range(8))
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 4))
  mixed = darts.MixedOp(4, stride, ops)
  w0 = jnp.ones(8) / 8
  # compiled (eagerly, every op is dispatched one by one: slower than compiling each program)
  v = jax.jit(lambda k1, k2: mixed.init({"params": k1, "dropout": k2}, x, w0, train=False))(jax.random.key(1),
                                                                                             jax.random.key(2))
  weights = jax.nn.softmax(jax.random.normal(jax.random.key(3), (8,)))
  mixed_apply = jax.jit(lambda v, w: mixed.apply(v, x, w, train=False))
  got = mixed_apply(v, weights)
  # Brute force: every op as its own module with the mixed op's parameters, then the weighted sum.
  want = 0
  for o, name in enumerate(darts.PRIMITIVES):
    op = darts.Op(name, 4, stride, affine=False, search=True)
    sub = {c: v[c][f"op{o}"] for c in v if f"op{o}" in v[c]}
    y = jax.jit(lambda sub: op.apply(sub, x, False))(sub)
    if name == "none":
      assert y.shape == got.shape and not np.any(np.asarray(y))
    want = want + weights[o] * y
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
  # One-hot α (logit +50 on op k) gives op k.
  k = 5
  one_hot = jax.nn.softmax(jnp.zeros(8).at[k].set(50.0))
  sub = {c: v[c][f"op{k}"] for c in v}
  op_k = darts.Op(darts.PRIMITIVES[k], 4, stride, False, True)
  np.testing.assert_allclose(np.asarray(mixed_apply(v, one_hot)),
                             np.asarray(jax.jit(lambda sub: op_k.apply(sub, x, False))(sub)),
                             rtol=1e-4, atol=1e-5)


def test_depthwise_conv_matches_numpy():
  rng = np.random.default_rng(0)
  for c, k, d, s in [(3, 3, 1, 1), (3, 5, 2, 2), (70, 3, 2, 1)]:  # 70 channels: the grouped path
    x = rng.normal(size=(2, 7, 7, c)).astype(np.float32)
    taps = rng.normal(size=(k, k, c)).astype(np.float32)
    pad = d * (k - 1) // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    want = sum(xp[:, i * d:i * d + 7, j * d:j * d + 7] * taps[i, j] for i in range(k) for j in range(k))[:, ::s, ::s]
    np.testing.assert_allclose(np.asarray(darts.depthwise_conv(jnp.asarray(x), jnp.asarray(taps), s, d)), want,
                               rtol=1e-4, atol=1e-4)


def test_skip_dropout_only_on_identity_and_follows_rate():
  x = jnp.ones((64, 4, 4, 2))
  mixed = darts.MixedOp(2, 1, (darts.SKIP,))
  v = mixed.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, x, jnp.ones(1), train=False)
  y = np.asarray(mixed.apply(v, x, jnp.ones(1), train=True, skip_p=0.25, rngs={"dropout": jax.random.key(1)}))
  assert np.all((y == 0) | np.isclose(y, 1 / 0.75)) and abs((y == 0).mean() - 0.25) < 0.03
  assert np.all(np.asarray(mixed.apply(v, x, jnp.ones(1), train=False, skip_p=0.25)) == 1)
  reduce = darts.MixedOp(2, 2, (darts.SKIP,))  # stride 2: FactorizedReduce, no dropout
  v = reduce.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, x, jnp.ones(1), train=False)
  a = reduce.apply(v, x, jnp.ones(1), train=True, skip_p=0.9, rngs={"dropout": jax.random.key(1)},
                   mutable=["batch_stats"])[0]
  b = reduce.apply(v, x, jnp.ones(1), train=True, skip_p=0.0, rngs={"dropout": jax.random.key(2)},
                   mutable=["batch_stats"])[0]
  np.testing.assert_allclose(np.asarray(a), np.asarray(b))


def test_schedules():
  assert pdarts.ops_schedule((3, 2, 2)) == [8, 5, 3, 1]
  e, w = 25, 10
  for epoch in range(e):
    want = 0.4 * (e - epoch - 1) / e if epoch < w else 0.4 * math.exp(-0.2 * (epoch - w))
    assert pdarts.skip_rate(epoch, e, w, 0.4) == pytest.approx(want)
  assert pdarts.cosine_lr(0, 25, 0.025) == pytest.approx(0.025)
  assert pdarts.cosine_lr(25, 25, 0.025) == pytest.approx(0.0)


def test_pruning_keeps_the_top_ops_and_drops_none_last_stage():
  rng = np.random.default_rng(0)
  switches = darts.full_switches()
  for k, count in [(3, 8), (2, 5), (2, 3)]:
    probs = rng.dirichlet(np.ones(count), size=14)
    sw = tuple(tuple(sorted(rng.choice(8, count, replace=False))) for _ in range(14)) if count < 8 else switches
    kept = pdarts.prune(sw, probs, k, drop_none=False)
    for ops, p, new in zip(sw, probs, kept):
      assert len(new) == count - k
      assert set(new) == {ops[i] for i in np.argsort(-p)[:count - k]}
  # Last stage: `none` goes even when it is the strongest op.
  sw = ((0, 3, 4),) * 14
  probs = np.tile([0.9, 0.06, 0.04], (14, 1))
  assert pdarts.prune(sw, probs, 2, drop_none=True) == ((3,),) * 14
  # Ties: the first minimum is dropped first, as in the reference's repeated argmin.
  assert pdarts.prune(((1, 2, 3),), np.array([[0.2, 0.2, 0.6]]), 1, drop_none=False) == ((2, 3),)


def _brute_force_cell(switches, probs):
  """Per node, the two incoming edges with the largest non-none weight, each with its best non-none op."""
  out, start = [], 0
  for node in range(4):
    n = 2 + node
    best = []
    for e in range(start, start + n):
      cand = [(p, o) for o, p in zip(switches[e], probs[e]) if o != darts.NONE]
      p, o = max(cand)
      best.append((p, e, o))
    for p, e, o in sorted(sorted(best, reverse=True)[:2], key=lambda t: t[1]):
      out.append([darts.PRIMITIVES[o], e - start])
    start += n
  return out


def test_derived_cell_matches_brute_force_and_obeys_skip_limit():
  rng = np.random.default_rng(1)
  exercised = 0
  for trial in range(30):
    switches = tuple(tuple(sorted({darts.SKIP, *rng.choice([0, 1, 2, 4, 5, 6, 7], 2, replace=False)}))
                     for _ in range(14))
    logits = rng.normal(size=(14, 3))
    logits[:, :] += 2.0 * np.array([[o == darts.SKIP for o in ops] for ops in switches])  # skips dominate
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    free, removed = pdarts.derive_cell(switches, probs, max_skips=None)
    assert free == _brute_force_cell(switches, probs) and removed == 0
    for m in (2, 0):
      cell, removed = pdarts.derive_cell(switches, probs, max_skips=m)
      skips = sum(op == "skip_connect" for op, _ in cell)
      assert skips <= m
      assert len(cell) == 8 and all(op != "none" for op, _ in cell)
      for node in range(4):
        a, b = cell[2 * node][1], cell[2 * node + 1][1]
        assert a != b and 0 <= a < 2 + node and 0 <= b < 2 + node
      if sum(op == "skip_connect" for op, _ in free) > m:
        exercised += 1
        assert removed >= 1
      else:
        assert cell == free
  assert exercised > 10


@pytest.mark.slow
def test_tiny_search_end_to_end(fast_compiles):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(24, 8, 8, 1)).astype(np.float32))  # 8x8: both reductions still halve
  y = rng.integers(0, 3, 24)
  s = pdarts.Settings(layers=(1, 1, 2), channels=2, nodes=2, epochs=2, warmup_epochs=1, batch_size=8)
  r = pdarts.run_search(jax.random.key(0), x, y, np.arange(12), np.arange(12, 24), num_classes=3, settings=s)
  assert [st["ops_per_edge"] for st in r.stages] == [8, 5, 3]
  assert [st["layers"] for st in r.stages] == [1, 1, 2]
  assert all(math.isfinite(st["train_loss"]) and math.isfinite(st["val_loss"]) for st in r.stages)
  g = darts_net.parse_genotype(darts_net.genotype_json(r.genotype))
  assert len(g["normal"]) == len(g["reduce"]) == 4 and g["normal_concat"] == [2, 3]
  assert sum(op == "skip_connect" for op, _ in g["normal"]) <= 2
  net = models.create("darts_net", 3, genotype=darts_net.genotype_json(g), channels=2, layers=2)
  # compiled: eagerly, the net's init and forward dispatch every op one by one (slow)
  variables = jax.jit(lambda k: models.init_variables(net, k, (1, 8, 8, 1)))(jax.random.key(0))
  logits, _ = jax.jit(net.apply)(variables, x[:2])
  assert logits.shape == (2, 3)


def test_config_validation():
  c = tiny_config(**{"search.name": "pdarts"})
  with pytest.raises(config_lib.ConfigError, match="model.name"):
    config_lib.validate(c)
  c.model.name = "darts_net"
  c.model.options = ml_collections.ConfigDict(dict(channels=2, layers=1, dropout=0.0))
  config_lib.validate(c)
  for mode in ("joint", "spo", "upo"):
    ok = c.copy_and_resolve_references()
    ok.search.mode = mode
    config_lib.validate(ok)
  bad = c.copy_and_resolve_references()
  bad.search.mode = "x"
  with pytest.raises(config_lib.ConfigError, match="search.mode"):
    config_lib.validate(bad)
  bad = c.copy_and_resolve_references()
  bad.search.pdarts.upo_size = -1
  with pytest.raises(config_lib.ConfigError, match="search.pdarts.upo_size"):
    config_lib.validate(bad)
  bad = c.copy_and_resolve_references()
  bad.search.pdarts.drop_ops = (3, 2, 1)
  with pytest.raises(config_lib.ConfigError, match="drop_ops"):
    config_lib.validate(bad)


def _loop_config(mode):
  """The smallest search the loop can run: one node per cell (two edges) and one epoch with α on.

  The warm-up epochs and two-node cells are covered by `test_tiny_search_end_to_end`; these
  tests check what the loop does with a search, and compiling supernets is most of their time.
  """
  c = tiny_config(**{"search.name": "pdarts", "search.mode": mode, "al.num_rounds": 2})
  c.model.name = "darts_net"
  c.model.options = ml_collections.ConfigDict(dict(channels=2, layers=1, dropout=0.0))
  c.train.epochs, c.train.steps_per_call = 1, 1
  p = c.search.pdarts
  p.layers, p.channels, p.nodes, p.epochs, p.warmup_epochs, p.batch_size = (1, 1, 1), 2, 1, 1, 0, 8
  return c


@pytest.mark.slow
def test_loop_joint_searches_every_round_and_reuses_stage_one(tmp_path, fast_compiles):
  history = loop.run(_loop_config("joint"), tmp_path)
  assert len(history) == 2
  for r in history:
    s = r["search"]
    assert s["searched"] and [st["ops_per_edge"] for st in s["stages"]] == [8, 5, 3]
    assert r["architecture"] == "darts_net(C2,L1)"
    darts_net.parse_genotype(s["genotype"])
  assert history[0]["search"]["stages"][0]["compiles"] > 0
  assert history[1]["search"]["stages"][0]["compiles"] == 0  # stage 1 (all ops on) compiled once per run


@pytest.mark.slow
def test_loop_spo_searches_once(tmp_path, fast_compiles):
  history = loop.run(_loop_config("spo"), tmp_path)
  first, second = history[0]["search"], history[1]["search"]
  assert first["searched"] and not second["searched"] and second["from_round"] == 0
  assert second["genotype"] == first["genotype"]
  assert history[1]["compiles"] == 0  # same darts_net, same shapes: nothing compiles in round 1


@pytest.mark.slow
def test_pseudo_labels_are_kmeans_ids_of_random_supernet_features(fast_compiles):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(60, 8, 8, 1)).astype(np.float32))
  s = pdarts.Settings(layers=(1, 1, 1), channels=2, nodes=2)
  ids, stats = pdarts_upo.pseudo_labels(jax.random.key(0), x, num_classes=3, settings=s, clusters_per_class=5,
                                    kmeans_iters=5, chunk_size=25)  # 25: a ragged last chunk
  assert ids.shape == (60,) and ids.dtype == np.int32 and 0 <= ids.min() and ids.max() < 15
  assert stats["clusters"] == 15 and sum(stats["cluster_sizes"]) == 60
  assert stats["nonempty_clusters"] == int((np.bincount(ids, minlength=15) > 0).sum()) > 3
  again, _ = pdarts_upo.pseudo_labels(jax.random.key(0), x, num_classes=3, settings=s, clusters_per_class=5,
                                  kmeans_iters=5, chunk_size=60)
  np.testing.assert_array_equal(ids, again)  # chunking does not change the features
  with pytest.raises(ValueError, match="clusters exceed"):
    pdarts_upo.pseudo_labels(jax.random.key(0), x[:10], num_classes=3, settings=s)


def test_upo_rows():
  np.testing.assert_array_equal(pdarts_upo.upo_rows(10, 0, 1), np.arange(10))
  np.testing.assert_array_equal(pdarts_upo.upo_rows(10, 20, 1), np.arange(10))
  rows = pdarts_upo.upo_rows(100, 30, 1)
  assert rows.size == 30 and np.unique(rows).size == 30 and np.all(np.diff(rows) > 0)
  np.testing.assert_array_equal(rows, pdarts_upo.upo_rows(100, 30, 1))


@pytest.mark.slow
def test_loop_upo_searches_once_on_pseudo_labels(tmp_path, monkeypatch, fast_compiles):
  c = _loop_config("upo")
  c.search.pdarts.upo_size = 40
  c.search.pdarts.max_skips = 1
  made, searched = [], []
  real_labels, real_search = pdarts_upo.pseudo_labels, pdarts.run_search

  def spy_labels(*args, **kwargs):
    out = real_labels(*args, **kwargs)
    made.append(out[0])
    return out

  def spy_search(key, inputs, labels, train_idx, val_idx, **kwargs):
    searched.append((np.asarray(labels), train_idx, val_idx, kwargs["num_classes"]))
    return real_search(key, inputs, labels, train_idx, val_idx, **kwargs)

  monkeypatch.setattr(pdarts_upo, "pseudo_labels", spy_labels)
  monkeypatch.setattr(pdarts, "run_search", spy_search)
  history = loop.run(c, tmp_path)
  assert len(made) == 1 and len(searched) == 1  # round 0 only
  labels, train_idx, val_idx, num_classes = searched[0]
  assert num_classes == 5 * 10  # k = 5C clusters: the supernet's head
  np.testing.assert_array_equal(labels, made[0])  # the search's labels are the cluster ids ...
  rows = np.concatenate([train_idx, val_idx])
  assert rows.size == 40 and np.unique(rows).size == 40
  assert np.unique(labels).size > 10  # ... of more than C clusters, so not the digits' true labels
  first, second = history[0]["search"], history[1]["search"]
  assert first["searched"] and first["mode"] == "upo" and first["split"] == [20, 20]
  assert first["pseudo_labels"]["clusters"] == 50 and sum(first["pseudo_labels"]["cluster_sizes"]) == labels.size
  assert not second["searched"] and second["from_round"] == 0 and second["genotype"] == first["genotype"]
  g = darts_net.parse_genotype(first["genotype"])
  assert sum(op == "skip_connect" for op, _ in g["normal"]) <= 1
  assert all(op != "none" for op, _ in g["normal"] + g["reduce"])
