"""MC-dropout scores and the chunked MC-dropout predictor (ALGORITHMS.md §2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import acquisition
from jaxal import models
from jaxal import runtime as runtime_lib
from jaxal.inference import Predictor, _mc_chunk


def softmax64(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def random_probs(n, c, seed, temperature=3.0):
  z = np.random.default_rng(seed).normal(size=(n, c)) * temperature
  return softmax64(z)


# ----------------------------------------------------------------------------- MC-dropout scores


def ref_mc(mc, pred_class):
  t, n, _ = mc.shape
  out = {k: [] for k in ("bald", "pe", "vr", "vrm", "var")}
  for i in range(n):
    mean = mc[:, i].mean(0)
    h_mean = -sum(v * np.log(v) for v in mean if v > 0)
    e_h = np.mean([-sum(v * np.log(v) for v in mc[s, i] if v > 0) for s in range(t)])
    out["bald"].append(max(h_mean - e_h, 0.0))
    out["pe"].append(h_mean)
    out["vr"].append(1 - mean.max())
    votes = np.bincount([int(np.argmax(mc[s, i])) for s in range(t)], minlength=mc.shape[2])
    out["vrm"].append(1 - votes.max() / t)
    col = [mc[s, i, pred_class[i]] for s in range(t)]
    out["var"].append(np.mean((np.array(col) - np.mean(col)) ** 2))
  return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("seed", range(3))
def test_mc_scores_match_loops_and_bounds(seed):
  rng = np.random.default_rng(seed)
  t, n, c = 8, 40, 5
  mc = softmax64(rng.normal(size=(t, n, c)) * 2)
  pred = rng.integers(0, c, n)
  ref = ref_mc(mc, pred)
  mcf = jnp.asarray(mc, jnp.float32)
  np.testing.assert_allclose(acquisition.bald(mcf), ref["bald"], atol=2e-5)
  np.testing.assert_allclose(acquisition.predictive_entropy(mcf), ref["pe"], atol=2e-5)
  np.testing.assert_allclose(acquisition.variation_ratio(mcf), ref["vr"], atol=1e-6)
  np.testing.assert_allclose(acquisition.variation_ratio_mode(mcf), ref["vrm"], atol=1e-6)
  np.testing.assert_allclose(acquisition.mc_pred_class_variance(mcf, jnp.asarray(pred)), ref["var"], atol=1e-6)
  i = np.asarray(acquisition.bald(mcf))
  h = np.asarray(acquisition.predictive_entropy(mcf))
  assert (i >= 0).all() and (i <= h + 1e-6).all() and (h <= np.log(c) + 1e-6).all()


def test_single_pass_has_zero_bald():
  mc = jnp.asarray(random_probs(10, 4, 0))[None]
  np.testing.assert_allclose(acquisition.bald(mc), 0.0, atol=1e-6)
  np.testing.assert_allclose(acquisition.variation_ratio_mode(mc), 0.0)
  np.testing.assert_allclose(acquisition.predictive_entropy(mc), acquisition.entropy(mc[0]), atol=1e-6)


# ----------------------------------------------------------------------------- MC-dropout predictor


@pytest.fixture(scope="module")
def small_predictor_parts():
  model = models.create("resnet_grid", 4, blocks=1, stacks=1, width=4, dropout=0.5)
  x = np.random.default_rng(0).normal(size=(23, 6, 6, 1)).astype(np.float32)
  variables = models.init_variables(model, jax.random.key(0), (1, 6, 6, 1))
  return model, variables, jnp.asarray(x)


def _predictor(parts, chunk):
  model, variables, x = parts
  return Predictor(model, variables, x, _identity, chunk_size=chunk)


def _identity(x):
  return x


def test_mc_statistics_match_an_explicit_loop(small_predictor_parts):
  model, variables, x = small_predictor_parts
  key, t = jax.random.key(3), 6
  stats = _predictor(small_predictor_parts, 8).mc_statistics(t, key, head_only=False)
  det = np.asarray(model.apply(variables, x)[0]).argmax(-1)
  mc = np.zeros((t, x.shape[0], 4))
  for i in range(x.shape[0]):
    for s in range(t):
      k = jax.random.fold_in(jax.random.fold_in(key, i), s)
      logits, _ = model.apply(variables, x[i:i + 1], mc_dropout=True, rngs={"dropout": k})
      mc[s, i] = softmax64(np.asarray(logits[0], np.float64))
  ref = ref_mc(mc, det)
  np.testing.assert_allclose(stats["mean_probs"], mc.mean(0), atol=1e-5)
  np.testing.assert_allclose(np.asarray(acquisition.bald_from_stats(stats["mean_probs"], stats["mean_entropy"])),
                             ref["bald"], atol=1e-4)
  np.testing.assert_allclose(stats["pred_class_variance"], ref["var"], atol=1e-5)
  np.testing.assert_array_equal(stats["pred_class"], det)
  assert not np.allclose(mc[0], mc[1])  # dropout really was active


def test_head_only_path_equals_full_path_and_chunking_does_not_matter(small_predictor_parts):
  key = jax.random.key(7)
  full = _predictor(small_predictor_parts, 8).mc_statistics(10, key, head_only=False)
  head = _predictor(small_predictor_parts, 8).mc_statistics(10, key, head_only=True)
  other_chunks = _predictor(small_predictor_parts, 5).mc_statistics(10, key, head_only=True, group=5)
  for name in ("mean_probs", "mean_entropy", "votes", "pred_class_variance"):
    np.testing.assert_allclose(head[name], full[name], atol=1e-5)
    np.testing.assert_allclose(other_chunks[name], head[name], atol=1e-5)




def test_without_dropout_the_mc_statistics_are_deterministic():
  model = models.create("resnet_grid", 3, blocks=1, stacks=1, width=4, dropout=0.0)
  variables = models.init_variables(model, jax.random.key(1), (1, 6, 6, 1))
  x = jnp.asarray(np.random.default_rng(1).normal(size=(9, 6, 6, 1)).astype(np.float32))
  stats = Predictor(model, variables, x, _identity, chunk_size=4).mc_statistics(5, jax.random.key(0), head_only=True)
  probs = np.asarray(jax.nn.softmax(model.apply(variables, x)[0]))
  np.testing.assert_allclose(acquisition.bald_from_stats(stats["mean_probs"], stats["mean_entropy"]), 0.0, atol=1e-6)
  np.testing.assert_allclose(stats["mean_probs"], probs, atol=1e-6)
  np.testing.assert_allclose(acquisition.entropy(jnp.asarray(stats["mean_probs"])), acquisition.entropy(probs),
                             atol=1e-6)
  assert (stats["votes"].max(1) == 5).all()  # mode-count variation ratio 0
  np.testing.assert_allclose(stats["pred_class_variance"], 0.0, atol=1e-10)


def test_full_path_is_chunk_size_independent(small_predictor_parts):
  key = jax.random.key(11)
  a = _predictor(small_predictor_parts, 8).mc_statistics(4, key, head_only=False)
  b = _predictor(small_predictor_parts, 3).mc_statistics(4, key, head_only=False, group=2)
  for name in ("mean_probs", "mean_entropy", "pred_class_variance"):
    np.testing.assert_allclose(a[name], b[name], atol=1e-5)


@pytest.mark.parametrize("head_only", [True, False])
def test_scan_over_pass_groups_matches_the_unrolled_loop(small_predictor_parts, head_only):
  """The accelerator policy's `lax.scan` over groups of passes, forced on the CPU, gives the
  unrolled loop's statistics (same keys, same order of accumulation)."""
  model, variables, x = small_predictor_parts
  stats = {}
  for unroll in (True, False):
    policy = runtime_lib.Runtime(kernels="cpu", conv_impl="per_shape", unroll_steps=unroll,
                                 init_prng="non_partitionable")
    predictor = Predictor(model, variables, x, _identity, chunk_size=8, runtime=policy)
    stats[unroll] = predictor.mc_statistics(4, jax.random.key(5), head_only=head_only, group=2)  # 2 groups
  for name in ("mean_probs", "mean_entropy", "pred_class_variance"):
    np.testing.assert_allclose(stats[False][name], stats[True][name], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(stats[False]["votes"], stats[True]["votes"])
  np.testing.assert_array_equal(stats[False]["pred_class"], stats[True]["pred_class"])
  assert (np.asarray(stats[True]["pred_class_variance"]) > 1e-4).all()  # the passes differ: a real comparison
  # The scan path really is a loop in the compiled program, and the unrolled one is not.
  idx = jnp.arange(8, dtype=jnp.int32)
  texts = {unroll: str(jax.make_jaxpr(lambda v, rows, i, k, unroll=unroll: _mc_chunk(
      model, _identity, v, rows, i, k, num_samples=4, group=2, head_only=head_only, unroll=unroll))(
          variables, x[:8], idx, jax.random.key(5))) for unroll in (True, False)}
  assert " scan[" in texts[False] and " scan[" not in texts[True]
