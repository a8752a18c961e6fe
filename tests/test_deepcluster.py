"""DeepCluster pretraining: k-means against numpy, re-seeding, sampler, pretrain, loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import models
from jaxal.data import augment
from jaxal.data import pipeline
from jaxal.pretrain import backbone_cache
from jaxal.pretrain import deepcluster as dc


def lloyd_reference(x, init, iters):
  """Float64 Lloyd's k-means from given centroids; fails if a cluster empties."""
  x = np.asarray(x, np.float64)
  c = np.asarray(init, np.float64).copy()
  objs = []
  for _ in range(iters):
    d2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    a = d2.argmin(1)
    objs.append(d2.min(1).sum())
    for j in range(len(c)):
      assert (a == j).any(), "reference: a cluster emptied; pick other data"
      c[j] = x[a == j].mean(0)
  d2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
  return c, d2.argmin(1), np.array(objs + [d2.min(1).sum()])


def nmi(a, b):
  """Normalised mutual information (arithmetic mean of entropies), from counts."""
  a, b = np.asarray(a), np.asarray(b)
  n = a.size
  joint = np.zeros((a.max() + 1, b.max() + 1))
  np.add.at(joint, (a, b), 1)
  p = joint / n
  pa, pb = p.sum(1), p.sum(0)
  nz = p > 0
  mi = (p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum()
  h = lambda q: -(q[q > 0] * np.log(q[q > 0])).sum()
  return 2 * mi / (h(pa) + h(pb))


def blobs(rng, k=6, per=40, d=5, scale=0.05):
  centers = rng.normal(size=(k, d)) * 3
  y = np.repeat(np.arange(k), per)
  return (centers[y] + scale * rng.normal(size=(y.size, d))).astype(np.float32), y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_matches_float64_lloyd_from_the_same_init(seed):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(400, 6)).astype(np.float32)
  init = x[rng.choice(400, 8, replace=False)]
  ref_c, ref_a, ref_obj = lloyd_reference(x, init, 7)
  got = dc.kmeans(jnp.asarray(x), 8, jax.random.key(seed), 7, init=jnp.asarray(init))
  np.testing.assert_array_equal(np.asarray(got.assignments), ref_a)
  np.testing.assert_allclose(np.asarray(got.centroids), ref_c, atol=1e-5)
  np.testing.assert_allclose(np.asarray(got.objective), ref_obj, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(got.counts), np.bincount(ref_a, minlength=8))


def test_kmeans_objective_never_increases_and_recovers_blobs():
  rng = np.random.default_rng(3)
  x, y = blobs(rng, k=3)
  runs = [dc.kmeans(jnp.asarray(x), 3, jax.random.key(s), 10) for s in range(12)]
  for r in runs:
    obj = np.asarray(r.objective)
    assert np.all(np.diff(obj) <= 1e-5 * obj[0])
  # A random init can put two seeds in one blob, a local minimum Lloyd cannot leave; keep
  # the lowest objective over keys (faiss's nredo), which must recover the blobs.
  best = min(runs, key=lambda r: float(r.objective[-1]))
  assert nmi(np.asarray(best.assignments), y) > 0.999


def test_default_init_uses_distinct_points():
  x = np.arange(40, dtype=np.float32).reshape(20, 2)
  got = dc.kmeans(jnp.asarray(x), 20, jax.random.key(1), 0)  # 0 iterations: the init itself
  assert len({tuple(r) for r in np.asarray(got.centroids)}) == 20
  assert sorted(np.asarray(got.assignments).tolist()) == list(range(20))


def test_empty_clusters_are_reseeded():
  """An initial centroid far from every point gets no points: without re-seeding it stays empty."""
  rng = np.random.default_rng(0)
  x, _ = blobs(rng, k=3, per=30)
  init = np.stack([x[0], np.full(x.shape[1], 100.0, np.float32), x[30], x[60]])
  off = dc.kmeans(jnp.asarray(x), 4, jax.random.key(0), 5, init=jnp.asarray(init), reseed=False)
  assert (np.asarray(off.counts) == 0).sum() == 1  # the construction does produce an empty cluster
  on = dc.kmeans(jnp.asarray(x), 4, jax.random.key(0), 5, init=jnp.asarray(init))
  counts = np.asarray(on.counts)
  assert (counts > 0).all() and counts.sum() == len(x)
  assert np.asarray(on.objective)[-1] < np.asarray(off.objective)[-1]


def test_split_empty_follows_faiss():
  c = jnp.asarray([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [9.0, 9.0, 9.0]])
  counts = jnp.asarray([10, 0, 1])  # only cluster 0 has > 1 point, so it must be split
  new_c, new_n = dc.split_empty(c, counts, jax.random.key(0))
  e = dc.SPLIT_EPS
  np.testing.assert_allclose(np.asarray(new_c[1]), [1 + e, 2 * (1 - e), 3 * (1 + e)], rtol=1e-7)
  np.testing.assert_allclose(np.asarray(new_c[0]), [1 - e, 2 * (1 + e), 3 * (1 - e)], rtol=1e-7)
  np.testing.assert_array_equal(np.asarray(new_c[2]), [9.0, 9.0, 9.0])
  assert np.asarray(new_n).tolist() == [5, 5, 1]


def test_uniform_sampler_is_even_over_nonempty_clusters():
  rng = np.random.default_rng(0)
  assignments = np.array([0] * 50 + [2] * 3 + [5] * 20 + [7] * 1)  # ids 1, 3, 4, 6 empty
  draws = dc.uniform_cluster_indices(assignments, 74, rng)
  assert draws.size == 74
  per = np.bincount(assignments[draws], minlength=8)
  assert set(per[[0, 2, 5, 7]].tolist()) <= {74 // 4, -(-74 // 4)}
  assert per[[1, 3, 4, 6]].sum() == 0
  big = draws[assignments[draws] == 0]
  assert np.unique(big).size == big.size  # no repeats where the cluster is large enough


def _tiny_pool(n=96):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
  return x, pipeline.make_preprocess(x, "image", "per_channel")


@pytest.mark.parametrize("style", ["simeoni", "deepcluster"])
def test_pretrain_trains_on_pseudo_labels(style):
  x, pre = _tiny_pool()
  model = models.create("resnet_grid", 3, blocks=1, stacks=1, width=4)
  res = dc.pretrain(model, jnp.asarray(x), 3, jax.random.key(0), preprocess=pre, epochs=3, kmeans_iters=4,
                    batch_size=16, lr=0.05, steps_per_call=1, style=style)
  assert len(res.history) == 3 and all(np.isfinite(h["loss"]) for h in res.history)
  assert res.full_variables["params"]["classifier"]["kernel"].shape[-1] == 15  # k = 5 * 3
  assert "classifier" not in res.variables["params"] and "backbone" in res.variables["params"]
  init = models.init_variables(model.clone(num_classes=15), jax.random.split(jax.random.key(0))[0], (1, 8, 8, 1),
                               np.uint8)
  moved = [not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(init["params"]["backbone"]),
                                                 jax.tree_util.tree_leaves(res.variables["params"]["backbone"]))]
  assert any(moved)  # the backbone was trained
  again = dc.pretrain(model, jnp.asarray(x), 3, jax.random.key(0), preprocess=pre, epochs=3, kmeans_iters=4,
                      batch_size=16, lr=0.05, steps_per_call=1, style=style)
  for a, b in zip(jax.tree_util.tree_leaves(res.full_variables), jax.tree_util.tree_leaves(again.full_variables)):
    np.testing.assert_array_equal(a, b)


def test_head_reinit_changes_the_head_and_keeps_the_backbone(monkeypatch):
  """With the DeepCluster style the head is re-created each epoch; the backbone carries over."""
  x, pre = _tiny_pool()
  model = models.create("resnet_grid", 3, blocks=1, stacks=1, width=4)  # as above: compiled once
  seen = []
  real = dc.Predictor

  def spy(model, variables, *args, **kwargs):  # the state at the start of each epoch
    seen.append(jax.tree_util.tree_map(np.asarray, variables))
    return real(model, variables, *args, **kwargs)

  monkeypatch.setattr(dc, "Predictor", spy)
  res = dc.pretrain(model, jnp.asarray(x), 3, jax.random.key(0), preprocess=pre, epochs=2, kmeans_iters=4,
                    batch_size=16, style="deepcluster", lr=0.0, steps_per_call=1)  # lr 0: only the re-init moves anything
  head0, head1 = seen[0]["params"]["classifier"], seen[1]["params"]["classifier"]
  end = res.full_variables["params"]["classifier"]
  assert not np.allclose(head0["kernel"], head1["kernel"]) and not np.allclose(head1["kernel"], end["kernel"])
  assert np.all(end["bias"] == 0) and 0.003 < end["kernel"].std() < 0.03  # normal(0.01), zero bias
  for a, b in zip(jax.tree_util.tree_leaves(seen[0]["params"]["backbone"]),
                  jax.tree_util.tree_leaves(res.full_variables["params"]["backbone"])):
    np.testing.assert_array_equal(a, b)


def test_round_model_starts_from_the_pretrained_backbone_with_a_fresh_head():
  from jaxal import config as config_lib
  from jaxal.train import trainer as trainer_lib
  x, pre = _tiny_pool()
  model = models.create("resnet_grid", 3, blocks=1, stacks=1, width=4)
  res = dc.pretrain(model, jnp.asarray(x), 3, jax.random.key(0), preprocess=pre, epochs=1, kmeans_iters=4,
                    batch_size=16, lr=0.05, steps_per_call=1)
  cfg = config_lib.base_config().train
  t = trainer_lib.Trainer(model, cfg, pre, augment.AugmentConfig(), (8, 8, 1), np.uint8)
  fresh = t.init(jax.random.key(7))
  started = t.init(jax.random.key(7), res.variables)
  for col in ("params", "batch_stats"):
    got = jax.tree_util.tree_leaves(getattr(started, col)["backbone"])
    want = jax.tree_util.tree_leaves(res.variables[col]["backbone"])
    other = jax.tree_util.tree_leaves(getattr(fresh, col)["backbone"])
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
      np.testing.assert_array_equal(g, w)
    assert any(not np.array_equal(g, o) for g, o in zip(got, other)) or col == "batch_stats"
  for g, f in zip(jax.tree_util.tree_leaves(started.params["classifier"]),
                  jax.tree_util.tree_leaves(fresh.params["classifier"])):
    np.testing.assert_array_equal(g, f)  # the head is the fresh init of this round's key
  assert started.params["classifier"]["kernel"].shape == (4, 3)
  with pytest.raises(ValueError, match="shape"):
    t.init(jax.random.key(7), {"params": {"classifier": res.full_variables["params"]["classifier"]}})


def _loop_config(**extra):
  from tests.conftest import tiny_config
  return tiny_config(**{"al.num_rounds": 2, "pretrain.name": "deepcluster", "pretrain.epochs": 2,
                        "pretrain.kmeans_iters": 3, "pretrain.batch_size": 32, **extra})


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
  """Two rounds on digits with pretraining; records the `start` of every round's fit."""
  from jaxal import loop
  from jaxal.train import trainer as trainer_lib
  workdir = tmp_path_factory.mktemp("pretrained")
  starts = []
  real_fit = trainer_lib.Trainer.fit

  def spy_fit(self, *args, start=None, **kwargs):
    starts.append(None if start is None else jax.tree_util.tree_map(np.asarray, start))
    return real_fit(self, *args, start=start, **kwargs)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(trainer_lib.Trainer, "fit", spy_fit)
    history = loop.run(_loop_config(), workdir)
  return workdir, history, starts


def test_loop_pretrains_once_and_starts_every_round_from_it(pretrained_run):
  import json
  workdir, history, starts = pretrained_run
  assert [r["num_labeled"] for r in history] == [20, 40]
  assert all(r["pretrain"] == "deepcluster" for r in history)
  assert history[0]["compiles"] > 0 and history[1]["compiles"] == 0
  meta = json.loads((workdir / "pretrained.json").read_text())
  assert len(meta["history"]) == 2 and meta["history"][0]["nonempty_clusters"] <= 50  # k = 5 x 10 digits
  stored = backbone_cache.load_tree(workdir / "pretrained.npz")
  assert set(stored) == {"params", "batch_stats"} and "classifier" not in stored["params"]
  assert len(starts) == 2
  for start in starts:
    want = jax.tree_util.tree_leaves(stored)
    got = jax.tree_util.tree_leaves(start)
    assert len(got) == len(want)
    for g, w in zip(got, want):
      np.testing.assert_array_equal(g, w)


def test_resume_does_not_redo_pretraining(pretrained_run, tmp_path, monkeypatch):
  from jaxal import loop
  from tests.conftest import run_killed_after
  _, history, _ = pretrained_run
  run_killed_after(monkeypatch, _loop_config(), tmp_path, 1, after_write=True)
  assert (tmp_path / "pretrained.npz").exists()

  def no_pretraining(*args, **kwargs):
    raise AssertionError("pretraining ran again on resume")

  monkeypatch.setattr(dc, "pretrain", no_pretraining)
  resumed = loop.run(_loop_config(), tmp_path)
  keys = ("num_labeled", "test_accuracy", "test_loss", "train_loss", "train_accuracy")
  assert [{k: r[k] for k in keys} for r in resumed] == [{k: r[k] for k in keys} for r in history]


def test_pretrain_config_errors_name_the_field():
  from jaxal import config as config_lib
  for overrides, field in (({"pretrain.name": "simclr"}, "pretrain.name"),
                           ({"pretrain.style": "faiss"}, "pretrain.style"),
                           ({"pretrain.epochs": 0}, "pretrain.epochs"),
                           ({"pretrain.lr": 0.0}, "pretrain.lr"),
                           ({"search.name": "inas"}, "pretrain.name")):
    with pytest.raises(config_lib.ConfigError, match=field.replace(".", r"\.")):
      config_lib.validate(_loop_config(**overrides))
  with pytest.raises(config_lib.ConfigError, match=r"pretrain\.batch_size"):
    config_lib.validate_against_devices(_loop_config(**{"pretrain.batch_size": 33}), 2)
  config_lib.validate_against_devices(_loop_config(**{"pretrain.batch_size": 33, "pretrain.name": "none"}), 2)


def test_workdir_from_before_the_pretrain_section_still_resumes(tmp_path):
  """A config.json without `pretrain` matches a config at pretrain's defaults, not a changed one."""
  import json
  from jaxal.checkpoint import run_files
  from tests.conftest import tiny_config
  old = json.loads(run_files.config_to_json(tiny_config()))
  del old["pretrain"]
  (tmp_path / "rounds.jsonl").write_text('{"round": 0}\n')  # a started run (an unstarted one takes any config)
  (tmp_path / "config.json").write_text(json.dumps(old))
  run_files.check_or_write_config(tmp_path, tiny_config(), force=False)
  (tmp_path / "config.json").write_text(json.dumps(old))
  with pytest.raises(run_files.WorkdirConflict, match="pretrain"):
    run_files.check_or_write_config(tmp_path, tiny_config(**{"pretrain.name": "deepcluster"}), force=False)
  (tmp_path / "config.json").write_text(json.dumps(old))  # pretraining off: its settings do not matter
  run_files.check_or_write_config(tmp_path, tiny_config(**{"pretrain.epochs": 7}), force=False)
  with pytest.raises(run_files.WorkdirConflict, match=r"pretrain\.name"):
    run_files.check_or_write_config(tmp_path, tiny_config(**{"pretrain.epochs": 7, "pretrain.name": "deepcluster"}),
                                      force=False)


def test_runs_share_a_backbone_through_the_cache(tmp_path, monkeypatch):
  """Runs that differ only in the acquisition pretrain once; another seed gets its own."""
  from jaxal import loop
  cache = str(tmp_path / "cache")
  cfg = lambda **kw: _loop_config(**{"al.num_rounds": 1, "pretrain.cache_dir": cache, **kw})
  fp = backbone_cache.pretrain_fingerprint
  assert fp(cfg()) == fp(cfg(**{"acquisition.name": "random", "train.epochs": 5}))
  assert fp(cfg()) != fp(cfg(seed=1)) and fp(cfg()) != fp(cfg(**{"pretrain.epochs": 3}))
  loop.run(cfg(), tmp_path / "a")
  assert (tmp_path / "cache" / fp(cfg()) / "pretrained.npz").exists()

  def no_pretraining(*args, **kwargs):
    raise AssertionError("pretraining ran although the cache holds this backbone")

  monkeypatch.setattr(dc, "pretrain", no_pretraining)
  loop.run(cfg(**{"acquisition.name": "random"}), tmp_path / "b")
  a, b = backbone_cache.load_tree(tmp_path / "a" / "pretrained.npz"), backbone_cache.load_tree(tmp_path / "b" / "pretrained.npz")
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert (tmp_path / "b" / "pretrained.json").exists()
  with pytest.raises(AssertionError, match="pretraining ran"):
    loop.run(cfg(seed=1), tmp_path / "c")


def test_collapse_is_flagged():
  """Features that fill fewer than half of the k clusters mark the pretraining collapsed."""
  k = 10
  full = {"params": {"classifier": {"kernel": np.zeros((4, k))}}}
  ok = dc.PretrainResult({}, full, [{"nonempty_clusters": 5}], 0.0)
  bad = dc.PretrainResult({}, full, [{"nonempty_clusters": 4}], 0.0)
  assert not ok.collapsed and bad.collapsed
