"""Depth-Dropout (ALGORITHMS.md §9): prior, KL, masks, gating, read-outs, ELBO training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from jaxal import config as config_lib
from jaxal import models
from jaxal.models import depth_dropout as dd
from jaxal.train import step as step_lib
from jaxal.train import trainer as trainer_lib

jax.config.update("jax_enable_x64", False)


def _model(**kw):
  opts = dict(truncation=4, width=6, num_samples=3)
  opts.update(kw)
  return models.create("depth_dropout", 3, **opts)


def _init(m, key, shape):
  """`models.init_variables` compiled: run eagerly it dispatches every op one by one (slow)."""
  return jax.jit(lambda k: models.init_variables(m, k, shape))(key)


def test_stick_breaking_pi_is_non_increasing(fast_compiles):
  a = jnp.asarray([0.5, 2.0, 1.1, 3.0, 0.7, 1.0])
  b = jnp.asarray([1.0, 0.3, 10.0, 1.0, 2.0, 5.0])
  _, log_pi = dd.sample_structure(jax.random.key(3), a, b, num_samples=50, width=2, temperature=0.5, hard=False)
  assert np.all(np.diff(np.asarray(log_pi), axis=1) <= 0)
  pi = np.asarray(dd.expected_pi(a, b))
  assert np.all(np.diff(pi) <= 0)
  np.testing.assert_allclose(pi, np.cumprod(np.asarray(a) / np.asarray(a + b)), rtol=1e-6)
  # E[pi_l] matches a Monte-Carlo mean of products of independent Beta draws
  rng = np.random.default_rng(0)
  mc = np.cumprod(rng.beta(np.asarray(a), np.asarray(b), size=(200_000, 6)), axis=1).mean(0)
  np.testing.assert_allclose(pi, mc, rtol=0.02, atol=1e-4)


@pytest.mark.parametrize("a,b,alpha,beta", [(1.5, 0.7, 1.1, 2.0), (0.6, 4.0, 1.1, 10.0), (3.0, 3.0, 0.8, 1.5)])
def test_beta_kl_matches_quadrature(a, b, alpha, beta):
  q, p = stats.beta(a, b), stats.beta(alpha, beta)
  f = lambda x: q.pdf(x) * (q.logpdf(x) - p.logpdf(x))
  ref = integrate.quad(f, 0, 0.5, limit=200)[0] + integrate.quad(f, 0.5, 1, limit=200)[0]
  got = float(dd.beta_kl(jnp.float32(a), jnp.float32(b), alpha, beta))
  assert got == pytest.approx(ref, rel=2e-4, abs=2e-5)
  # and the closed form in float64 via scipy.special
  closed = (special.betaln(alpha, beta) - special.betaln(a, b) + (a - alpha) * special.digamma(a)
            + (b - beta) * special.digamma(b) + (alpha - a + beta - b) * special.digamma(a + b))
  assert closed == pytest.approx(ref, rel=1e-6, abs=1e-8)


def test_beta_kl_is_zero_at_the_prior_and_init_matches_prior():
  assert float(dd.beta_kl(jnp.float32(1.1), jnp.float32(10.0), 1.1, 10.0)) == pytest.approx(0.0, abs=1e-5)
  a, b = dd.variational_params(jnp.float32(dd.softplus_inverse(1.1)), jnp.float32(dd.softplus_inverse(10.0)))
  assert float(a) == pytest.approx(1.11, rel=1e-5) and float(b) == pytest.approx(10.01, rel=1e-5)


def test_log1mexp_is_accurate():
  x = np.array([-1e-6, -0.1, -0.69, -0.7, -5.0, -40.0])
  np.testing.assert_allclose(np.asarray(dd.log1mexp(jnp.asarray(x, jnp.float32))), np.log(-np.expm1(x)),
                             rtol=1e-4, atol=1e-12)


def test_hard_masks_have_rate_pi_and_relaxed_masks_approach_them(fast_compiles):
  a, b = jnp.asarray([2.0, 1.0, 3.0]), jnp.asarray([1.0, 1.0, 2.0])
  key = jax.random.key(7)
  m = 20_000
  hard, log_pi = dd.sample_structure(key, a, b, num_samples=2, width=m, temperature=0.5, hard=True)
  pi = np.exp(np.asarray(log_pi))
  rate = np.asarray(hard).mean(-1)
  assert np.all(np.abs(rate - pi) <= 5 * np.sqrt(pi * (1 - pi) / m) + 1e-6)
  gaps = []
  for tau in (1.0, 0.1, 0.01):
    soft, log_pi2 = dd.sample_structure(key, a, b, num_samples=2, width=m, temperature=tau, hard=False)
    np.testing.assert_array_equal(np.asarray(log_pi2), np.asarray(log_pi))  # same draws
    gaps.append(float(np.abs(np.asarray(soft) - np.asarray(hard)).mean()))
  assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.01


def test_mask_readout_counts_layers_and_last_index():
  z = np.zeros((2, 5, 4))
  z[0, 0, :2] = 1
  z[0, 2, 1] = 0.5      # gap at layer 1: counted 2 layers, last index 3
  z[1, :2, :] = 1       # prefix of 2
  z[1, 3, 0] = 0.005    # below epsilon
  r = dd.mask_readout(z, epsilon=0.01)
  assert r["depth"] == 2 and r["depth_last"] == 3
  assert r["active_filters"] == [3.0, 2.0, 0.5, 0.0, 0.0]
  assert int(dd.threshold(jnp.asarray(z), 0.01)) == 2


def test_readout_is_consistent_with_its_masks(fast_compiles):
  m = _model(truncation=6, width=5, alpha=2.0, beta=1.5)
  v = _init(m, jax.random.key(0), (1, 8, 8, 1))
  r = dd.readout(v["params"], num_samples=4, filter_samples=300, seed=11)
  a, b = dd.variational_params(v["params"]["backbone"]["a_hat"], v["params"]["backbone"]["b_hat"])
  z, _ = dd.sample_structure(jax.random.key(11), a, b, num_samples=300, width=5, temperature=1.0, hard=True)
  z = np.asarray(z)
  assert r["active_filters"] == list(z.sum(-1).mean(0))
  s = z[:4]  # the depths use the reference's S samples
  assert r["depth"] == int((s.sum(-1) > 0).sum(-1).max()) == int(dd.threshold(jnp.asarray(s)))
  assert r["depth_last"] == max(max([l + 1 for l in range(6) if s[i, l].any()], default=0) for i in range(4))
  np.testing.assert_allclose(r["active_filters"], 5 * np.asarray(r["pi"]), atol=0.35)  # E[#active] = M E[π]
  assert r["depth"] <= r["depth_last"] <= 6 and r["width"] == 5
  assert np.all(np.diff(r["pi"]) <= 0)


@pytest.fixture(scope="module")
def tiny():
  """One small net shared by the tests below; their programs compile with `fast_compiles`: they
  compare two paths compiled with the same flags, or a compiled value with a float tolerance."""
  m = _model()
  v = _init(m, jax.random.key(0), (4, 8, 8, 1))
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  return m, v, x


_COMPILED = {}  # (id of the backbone, train, static depth) -> (the backbone, kept alive; its jitted forward)


def _forward(m, v, x, z, depth, train):
  """The backbone's forward pass, compiled once per model, mode and Python `depth` (the loop
  that stops there); an array `depth` stays traced (the gated layers)."""
  static = depth if isinstance(depth, int) else None
  key = (id(m.backbone), train, static)
  if key not in _COMPILED:
    fn = lambda mdl, *a: mdl.forward(*a, train=train)
    apply = lambda variables, x, z, d: m.backbone.apply(variables, x, z, d if static is None else static, method=fn,
                                                        mutable=["batch_stats"] if train else False)
    _COMPILED[key] = (m.backbone, jax.jit(apply))
  return _COMPILED[key][1]({"params": v["params"]["backbone"], "batch_stats": v["batch_stats"]["backbone"]},
                        x, z, jnp.asarray(depth))


def test_gated_layers_equal_the_python_loop_that_stops_at_the_threshold(tiny, fast_compiles):
  m, v, x = tiny
  z = jax.random.uniform(jax.random.key(2), (3, 4, 6))
  for depth in (1, 2, 4):
    for train in (False, True):
      gated = _forward(m, v, x, z, jnp.asarray(depth), train)
      loop = _forward(m, v, x, z, depth, train)
      if train:
        (gated, g_stats), (loop, l_stats) = gated, loop
        for l in range(1, 4):  # a layer beyond the depth keeps its statistics
          name = f"blocks_{l - 1}"
          got = g_stats["batch_stats"][name]["bn"]["mean"]
          old = v["batch_stats"]["backbone"][name]["bn"]["mean"]
          assert np.array_equal(np.asarray(got), np.asarray(old)) == (l >= depth)
          if l < depth:
            np.testing.assert_allclose(got, l_stats["batch_stats"][name]["bn"]["mean"], rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(np.asarray(gated), np.asarray(loop), rtol=1e-5, atol=1e-5)


def test_a_layer_with_zero_mask_is_the_identity(tiny, fast_compiles):
  m, v, x = tiny
  z = np.array(jax.random.uniform(jax.random.key(4), (3, 4, 6)))
  z[:, 2:] = 0.0
  full = _forward(m, v, x, jnp.asarray(z), 4, False)
  cut = _forward(m, v, x, jnp.asarray(z), 2, False)
  np.testing.assert_allclose(np.asarray(full), np.asarray(cut), rtol=1e-6, atol=1e-6)
  z[:, 1] = 0.0  # a middle layer off: the same as skipping it
  mid = _forward(m, v, x, jnp.asarray(z), 4, False)
  assert not np.allclose(np.asarray(mid), np.asarray(full))


def test_eval_averages_probabilities_and_is_deterministic(tiny, fast_compiles):
  m, v, x = tiny
  infer = jax.jit(lambda v, x: m.apply(v, x, train=False))
  logp, h = infer(v, x)
  logp2, _ = infer(v, x)
  np.testing.assert_array_equal(np.asarray(logp), np.asarray(logp2))
  np.testing.assert_allclose(np.exp(np.asarray(logp)).sum(-1), 1.0, rtol=1e-5)
  bb = m.backbone.bind({"params": v["params"]["backbone"], "batch_stats": v["batch_stats"]["backbone"]})
  z, depth = bb.structure(train=False, mc_dropout=False)
  hs = _forward(m, v, x, z, int(depth), False)  # compiled by the tests above
  logits = m.bind(v).head(hs)
  ref = np.log(np.mean(np.asarray(jax.nn.softmax(logits, -1)), 0))
  np.testing.assert_allclose(np.asarray(logp), ref, rtol=1e-5, atol=1e-5)
  assert h.shape == (4, 6) and set(np.unique(np.asarray(z))) <= {0.0, 1.0}


def test_training_loss_adds_the_kl_over_n(tiny, fast_compiles):
  m, v, x = tiny
  train_cfg = config_lib.base_config().train
  tx = __import__("jaxal.train.optim", fromlist=["x"]).make_optimizer(train_cfg)
  state = step_lib.TrainState(v["params"], v["batch_stats"], tx.init(v["params"]))
  inputs = jax.random.normal(jax.random.key(5), (8, 8, 8, 1))
  labels = jnp.arange(8, dtype=jnp.int32) % 3
  idx = jnp.arange(4, dtype=jnp.int32)[None]
  key = jax.random.key(9)
  from jaxal.data import augment as augment_lib
  # compiled once, `scale` traced (eagerly, the block dispatched every op one by one: ~100 s)
  block = jax.jit(lambda scale: step_lib.train_block(state, inputs, labels, idx, jnp.asarray([True]), key, 0.0, scale,
                                                     model=m, tx=tx, preprocess=lambda t: t,
                                                     augment=augment_lib.AugmentConfig(False, 0, 0.0))[1][0])
  run = lambda scale: block(jnp.float32(scale))
  k_drop = jax.random.split(jax.random.split(key, 1)[0])[1]
  (logits, _), upd = jax.jit(lambda v, x, k: m.apply(v, x, train=True, mutable=["batch_stats", "losses"],
                                                      rngs={"dropout": k}))(v, inputs[:4], k_drop)
  assert logits.shape == (3, 4, 3)
  ce = float(np.mean(-np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), np.asarray(labels[:4])[None, :, None],
                                         -1)))
  kl = float(upd["losses"]["backbone"]["kl"][0])
  a, b = dd.variational_params(v["params"]["backbone"]["a_hat"], v["params"]["backbone"]["b_hat"])
  ref_kl = sum(special.betaln(1.1, 10) - special.betaln(ai, bi) + (ai - 1.1) * special.digamma(ai)
               + (bi - 10) * special.digamma(bi) + (1.1 - ai + 10 - bi) * special.digamma(ai + bi)
               for ai, bi in zip(np.asarray(a, np.float64), np.asarray(b, np.float64)))
  assert kl == pytest.approx(ref_kl, rel=1e-3, abs=1e-5)
  assert float(run(0.0)) == pytest.approx(ce, rel=1e-5)
  assert float(run(0.25)) == pytest.approx(ce + 0.25 * kl, rel=1e-5)


def test_elbo_decreases_when_training(fast_compiles):  # compiling the train block is most of its time
  from jaxal.data import augment as augment_lib
  cfg = config_lib.base_config().train
  cfg.batch_size, cfg.steps_per_call, cfg.epoch_size = 16, 1, 64  # one step per block: compiles 4x faster
  cfg.optimizer, cfg.lr_schedule, cfg.weight_decay = "adam", "0:0.003", 0.0
  m = _model(truncation=3, width=6, num_samples=2, alpha=1.1, beta=2.0)
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 48).astype(np.int32)
  inputs = rng.normal(size=(48, 8, 8, 1)).astype(np.float32) * 0.3
  inputs[np.arange(48), labels * 2, labels * 2, 0] += 3.0  # a learnable pixel per class
  trainer = trainer_lib.Trainer(m, cfg, lambda t: t, augment_lib.AugmentConfig(False, 0, 0.0), (8, 8, 1),
                                jnp.float32)
  labeled = np.arange(48)
  first = trainer.fit(jax.random.key(0), jnp.asarray(inputs), labels, labeled, epochs=1)
  later = trainer.fit(jax.random.key(0), jnp.asarray(inputs), labels, labeled, epochs=30)
  # Seeds 0-3 end at 0.28-0.48 loss (from 1.1-1.4) and 0.91-0.98 train accuracy.
  assert np.isfinite(first.train_loss) and later.train_loss < 0.6 * first.train_loss
  assert later.train_accuracy > 0.8
  r = dd.readout(later.state.params)
  assert len(r["pi"]) == 3 and 1 <= r["depth"] <= 3


def test_plain_readout_network_equals_the_masked_network(fast_compiles):
  """plain_cnn with per-layer widths is the Depth-Dropout net with binary masks on those filters."""
  m = _model(truncation=4, width=6)
  v = _init(m, jax.random.key(0), (1, 8, 8, 1))
  # non-trivial BN statistics so that slicing them is exercised
  nudge = lambda v: jax.tree_util.tree_map(lambda t: t + 0.1 * jax.random.uniform(jax.random.key(8), t.shape), v)
  v = jax.jit(nudge)(v)
  widths = [4, 0, 2]
  plain = models.create("plain_cnn", 3, layers=3, width=6, widths="4,0,2")
  pv = _init(plain, jax.random.key(1), (1, 8, 8, 1))
  src = lambda col: v[col]["backbone"]
  sliced = lambda tree, w: jax.tree_util.tree_map(lambda t: t[..., :w], tree)
  for col in ("params", "batch_stats"):
    dst = dict(pv[col]["backbone"])
    dst["layer0"] = sliced(src(col)["layer0"], 4)
    dst["layer2"] = sliced(src(col)["blocks_1"], 2)
    dst["out"] = src(col)["out"]
    pv[col]["backbone"] = dst
  assert set(pv["params"]["backbone"]) == {"layer0", "layer2", "out"}
  z = np.zeros((1, 4, 6), np.float32)
  for l, w in enumerate(widths):
    z[0, l, :w] = 1.0
  x = jax.random.normal(jax.random.key(2), (5, 8, 8, 1))
  for train in (False, True):
    masked = _forward(m, v, x, jnp.asarray(z), 4, train)
    fixed = jax.jit(lambda variables, x: plain.backbone.apply(variables, x, train=train,
                                                              mutable=["batch_stats"] if train else False))(
        {"params": pv["params"]["backbone"], "batch_stats": pv["batch_stats"]["backbone"]}, x)
    if train:
      masked, fixed = masked[0], fixed[0]
    np.testing.assert_allclose(np.asarray(masked)[0], np.asarray(fixed), rtol=1e-4, atol=1e-5)
  assert plain.depth == 2 and models.describe(plain, (1, 8, 8, 1))["depth"] == 2


@pytest.mark.parametrize("layers", [1, 5, 9])
def test_fixed_baselines_build(layers):
  m = models.create("plain_cnn", 10, layers=layers, width=8)
  d = models.describe(m, (1, 28, 28, 1))
  assert d["depth"] == layers and d["architecture"] == f"plain_cnn(l{layers},w8)"
  with pytest.raises(ValueError):
    models.create("plain_cnn", 10, layers=layers, width=8, widths="9" + ",8" * (layers - 1))
