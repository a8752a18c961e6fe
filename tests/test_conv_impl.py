"""layers.Conv and jaxal.cpu.convs: im2col, per-pixel matmuls and fenced inputs equal XLA's
convolution and nn.Conv, values and gradients; the policy picks the algorithm."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxal import models
from jaxal import runtime
from jaxal.cpu import convs
from jaxal.models import layers

DN = ("NHWC", "HWIO", "NHWC")


def _ref(x, k, s, padding):
  return lax.conv_general_dilated(x, k, (s, s), padding, dimension_numbers=DN, precision="highest")


def _ours(x, k, s, padding):
  dn = lax.conv_dimension_numbers(x.shape, k.shape, DN)
  return layers.conv("im2col", x, k, (s, s), padding, dimension_numbers=dn, precision="highest")


@pytest.mark.parametrize("size,cin,cout,ksize,stride,padding", [
    (2, 16, 8, 3, 1, "SAME"),  # kernel larger than the map, stride 1
    (4, 8, 16, 3, 2, "VALID"),  # stride 2, no padding
    (7, 3, 5, 5, 2, ((1, 0), (2, 1))),  # odd map, 5x5, stride 2, explicit uneven padding
    (3, 5, 7, 3, 2, "SAME"),  # odd map, stride 2: SAME pads both sides
    (5, 3, 6, 1, 2, "SAME"),  # 1x1 kernel, stride 2
    (4, 4, 4, 2, 1, "SAME"),  # even kernel: SAME pads one side more
])
def test_im2col_matches_lax_forward_and_gradients(size, cin, cout, ksize, stride, padding):
  kx, kk, kc = jax.random.split(jax.random.key(size * 100 + cin), 3)
  x = jax.random.normal(kx, (3, size, size, cin))
  k = jax.random.normal(kk, (ksize, ksize, cin, cout)) / np.sqrt(ksize * ksize * cin)
  want = _ref(x, k, stride, padding)
  got = _ours(x, k, stride, padding)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  ct = jax.random.normal(kc, want.shape)
  loss = lambda f: lambda x, k: jnp.sum(f(x, k, stride, padding) * ct)
  gw = jax.grad(loss(_ref), (0, 1))(x, k)
  gg = jax.grad(loss(_ours), (0, 1))(x, k)
  for a, b in zip(gg, gw):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


# Under the CPU policy "auto" is "per_shape" (the same programs): each implementation once
# per stride, the bias on in half of them.
@pytest.mark.parametrize("impl,stride,use_bias", [
    ("auto", 1, True), ("per_shape", 2, True), ("im2col", 1, False), ("im2col", 2, True), ("xla", 1, False),
    ("xla", 2, True)])
def test_conv_module_matches_nn_conv(impl, stride, use_bias):
  x = jax.random.normal(jax.random.key(0), (4, 2, 2, 32))
  ref = nn.Conv(24, (3, 3), strides=stride, padding="SAME", use_bias=use_bias)
  ours = layers.Conv(24, (3, 3), strides=stride, padding="SAME", use_bias=use_bias, conv_impl=impl, runtime=runtime.CPU)
  v_ref = ref.init(jax.random.key(1), x)
  v_ours = ours.init(jax.random.key(1), x)
  # Same parameter tree, shapes and (same-seed) values: checkpoints carry over.
  assert jax.tree_util.tree_structure(v_ours) == jax.tree_util.tree_structure(v_ref)
  jax.tree_util.tree_map(np.testing.assert_array_equal, v_ours, v_ref)
  if use_bias:  # a non-zero bias, to check it is added
    v_ref = jax.tree_util.tree_map(lambda a: a + 0.5, v_ref)
  np.testing.assert_allclose(ours.apply(v_ref, x), ref.apply(v_ref, x), rtol=1e-5, atol=1e-5)
  grad = lambda m: jax.grad(lambda v, x: jnp.sum(jnp.sin(m.apply(v, x))), (0, 1))(v_ref, x)
  (gv_o, gx_o), (gv_r, gx_r) = grad(ours), grad(ref)
  np.testing.assert_allclose(gx_o, gx_r, rtol=1e-4, atol=1e-4)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), gv_o, gv_r)


def test_auto_rule():
  assert convs.use_im2col((2, 2), (3, 3), (1, 1), "SAME")
  assert convs.use_im2col((4, 4), (3, 3), (2, 2), "SAME")  # output 2x2
  assert not convs.use_im2col((4, 4), (3, 3), (1, 1), "SAME")
  assert not convs.use_im2col((16, 16), (3, 3), (1, 1), "SAME")
  assert convs.use_im2col((16, 16), (1, 1), (2, 2), "SAME")


def _numpy_conv(x, k, strides, pads):
  """Brute force: every output pixel, every kernel tap that lands inside the input (float64)."""
  x, k = np.asarray(x, np.float64), np.asarray(k, np.float64)
  in_sp, k_sp = x.shape[1:-1], k.shape[:-2]
  out_sp = [(n + lo + hi - kk) // s + 1 for n, kk, s, (lo, hi) in zip(in_sp, k_sp, strides, pads)]
  y = np.zeros((x.shape[0], *out_sp, k.shape[-1]))
  for o in np.ndindex(*out_sp):
    for t in np.ndindex(*k_sp):
      src = tuple(q * s - lo + tt for q, s, (lo, _), tt in zip(o, strides, pads, t))
      if all(0 <= v < n for v, n in zip(src, in_sp)):
        y[(slice(None),) + o] += x[(slice(None),) + src] @ k[t]
  return y


@pytest.mark.parametrize("in_sp,k_sp,strides,padding", [
    ((2, 2), (3, 3), (1, 1), "SAME"), ((1, 1), (3, 3), (1, 1), "SAME"), ((2, 3), (3, 3), (2, 1), ((1, 0), (2, 1))),
    ((2, 2), (2, 2), (1, 1), "VALID"), ((3,), (3,), (1,), "SAME"), ((4, 4), (3, 3), (2, 2), "SAME")])
def test_dense_conv_matches_numpy_and_lax_gradients(in_sp, k_sp, strides, padding):
  kx, kk, kc = jax.random.split(jax.random.key(len(in_sp) * 10 + in_sp[0]), 3)
  x = jax.random.normal(kx, (3, *in_sp, 5))
  k = jax.random.normal(kk, (*k_sp, 5, 4))
  pads = padding if not isinstance(padding, str) else lax.padtype_to_pads(in_sp, k_sp, strides, padding)
  got = convs.dense_conv(x, k, strides, padding, precision="highest")
  np.testing.assert_allclose(got, _numpy_conv(x, k, strides, pads), rtol=1e-5, atol=1e-5)
  _, pairs = convs.pixel_pairs(in_sp, k_sp, strides, padding)
  assert len(set(pairs)) == len(pairs) <= int(np.prod(got.shape[1:-1])) * int(np.prod(k_sp))
  dn = lax.conv_dimension_numbers(x.shape, k.shape, ("NHWC", "HWIO", "NHWC") if len(in_sp) == 2 else
                                  ("NWC", "WIO", "NWC"))
  ref = lambda x, k: lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=dn, precision="highest")
  ct = jax.random.normal(kc, got.shape)
  loss = lambda f: lambda x, k: jnp.sum(f(x, k) * ct)
  ours = lambda x, k: convs.dense_conv(x, k, strides, padding, precision="highest")
  for a, b in zip(jax.grad(loss(ours), (0, 1))(x, k), jax.grad(loss(ref), (0, 1))(x, k)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_dense_conv_gradient_concatenates_instead_of_padding():
  """Its operands are split, not indexed: XLA:CPU took 160 ms a step padding each use's
  gradient to the kernel's full shape (NOTES §6h)."""
  x, k = jnp.ones((2, 2, 2, 3)), jnp.ones((3, 3, 3, 4))
  grad = jax.make_jaxpr(jax.grad(lambda x, k: jnp.sum(convs.dense_conv(x, k, (1, 1), "SAME")), (0, 1)))(x, k)
  names = [e.primitive.name for e in grad.eqns]
  assert names.count("dot_general") == 3 * 16  # forward, input and kernel gradients: one per pixel pair
  assert "pad" not in names and "concatenate" in names


def test_dense_conv_keeps_bfloat16_and_accumulates_in_float32():
  x = jax.random.normal(jax.random.key(0), (4, 2, 2, 64))
  k = jax.random.normal(jax.random.key(1), (3, 3, 64, 8)) / 24
  got = convs.dense_conv(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16), (1, 1), "SAME")
  assert got.dtype == jnp.bfloat16
  want = _numpy_conv(x.astype(jnp.bfloat16).astype(jnp.float32), k.astype(jnp.bfloat16).astype(jnp.float32),
                     (1, 1), ((1, 1), (1, 1)))
  np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=1e-2, atol=1e-2)


def test_dense_rule(monkeypatch):
  assert convs.use_dense((2, 2), (3, 3), (1, 1), "SAME")  # 16 pairs against im2col's 36 rows
  assert convs.use_dense((1, 1), (3, 3), (1, 1), "SAME")  # only the centre tap
  assert not convs.use_dense((4, 4), (3, 3), (2, 2), "SAME")  # 25 pairs: lost to im2col
  assert not convs.use_dense((4, 4), (3, 3), (1, 1), "SAME")
  assert not convs.use_dense((2, 2), (1, 1), (1, 1), "SAME")  # 1x1 kernels stay one matmul
  assert not convs.use_dense((2, 2), (2, 2), (1, 1), "VALID")  # no padding to skip
  monkeypatch.setattr(convs, "DENSE_MAX_PAIRS", 0)
  assert not convs.use_dense((2, 2), (3, 3), (1, 1), "SAME")


def _dots(impl, size):
  conv = lambda x, k: layers.conv(impl, x, k, (1, 1), "SAME", dimension_numbers=lax.conv_dimension_numbers(
      x.shape, k.shape, DN))
  eqns = jax.make_jaxpr(conv)(jnp.ones((2, size, size, 3)), jnp.ones((3, 3, 3, 4))).eqns
  return [e.primitive.name for e in eqns].count("dot_general")


def test_per_shape_runs_dense_conv_on_tiny_maps_and_xla_never():
  assert _dots("per_shape", 2) == 16 and _dots("per_shape", 1) == 1 and _dots("per_shape", 8) == 0
  assert _dots("xla", 2) == 0 and _dots("xla", 1) == 0  # the stock policy: XLA's convolution


def test_the_policy_picks_the_algorithm():
  """A layer's "auto" follows the nearest `runtime` up its module tree: the model's policy."""
  x = jnp.ones((2, 2, 2, 3))
  counts = {}
  for name, policy in (("cpu", runtime.CPU), ("stock", runtime.STOCK)):
    model = models.create("small_cnn", 3, width=4, embed=8, runtime=policy)
    variables = model.init(jax.random.key(0), x, train=False)
    names = [e.primitive.name for e in jax.make_jaxpr(lambda v: model.apply(v, x, train=False))(variables).eqns]
    counts[name] = names.count("dot_general"), names.count("conv_general_dilated")
  # Two 3x3 convs on 2x2 maps: per-pixel matmuls (16 each) under the CPU policy, XLA's
  # convolution under the stock one; the two dense layers are matmuls under both.
  assert counts == {"cpu": (34, 0), "stock": (2, 2)}, counts
  for policy, dots in ((runtime.CPU, 16), (runtime.STOCK, 0)):
    layer = layers.Conv(4, (3, 3), runtime=policy)
    lv = layer.init(jax.random.key(0), x)
    eqns = jax.make_jaxpr(lambda v: layer.apply(v, x))(lv).eqns
    assert str(eqns).count("dot_general") == dots


def test_unsupported_falls_back_to_xla():
  x = jax.random.normal(jax.random.key(0), (2, 3, 3, 4))
  for kwargs in (dict(kernel_dilation=2), dict(feature_group_count=2)):
    ref = nn.Conv(4, (3, 3), **kwargs)
    v = ref.init(jax.random.key(1), x)
    got = layers.Conv(4, (3, 3), conv_impl="im2col", **kwargs).apply(v, x)
    np.testing.assert_allclose(got, ref.apply(v, x), rtol=1e-5, atol=1e-5)


def test_bad_impl():
  with pytest.raises(ValueError):
    layers.Conv(4, (3, 3), conv_impl="winograd")
  with pytest.raises(ValueError):
    runtime.Runtime(conv_impl="winograd")


@pytest.mark.parametrize("name,options", [
    ("resnet_grid", dict(blocks=1, stacks=4, width=4, block="bottleneck")),  # 1x1 and 3x3, maps down to 2x2
    ("preact_resnet20", dict(width=4)),
    ("vgg11", dict(width=4, fc_width=16, embed=8)),
])
def test_model_unchanged_across_impls(name, options, fast_compiles):
  """Forward (train and eval) and parameter gradients agree between the implementations."""
  model = models.create(name, 10, **options)
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  variables = model.init({"params": jax.random.key(1), "dropout": jax.random.key(1)}, x, train=False)

  def run():
    def loss(params):
      logits, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"],
                              rngs={"dropout": jax.random.key(2)})[0]
      return jnp.sum(logits ** 2)
    eval_logits = model.apply(variables, x, train=False)[0]
    return eval_logits, jax.grad(loss)(variables["params"])

  outs = {}
  for impl in ("xla", "im2col", "per_shape"):
    model = model.clone(runtime=runtime.Runtime(kernels="cpu", conv_impl=impl, unroll_steps=True))
    outs[impl] = jax.jit(run)()  # a fresh jit per policy
  for impl in ("im2col", "per_shape"):
    np.testing.assert_allclose(outs[impl][0], outs["xla"][0], rtol=2e-4, atol=2e-4)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3),
                           outs[impl][1], outs["xla"][1])


@pytest.mark.parametrize("witness", [0.0, -0.0, 1.0, -3.5, float("inf"), float("nan"), 1e-45])
def test_fence_returns_its_input_for_every_witness(witness):
  # The fence's predicate must be true for every bit pattern of the witness: a false one
  # would return -x.
  x = jax.random.normal(jax.random.key(0), (2, 3, 3, 4))
  for dtype in (jnp.float32, jnp.bfloat16):
    out = jax.jit(convs._fence)(x.astype(dtype), jnp.asarray(witness, dtype))
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(x.astype(dtype), np.float32))


def test_fence_input_is_the_identity_with_its_gradient():
  x = jax.random.normal(jax.random.key(1), (3, 4, 4, 2))
  w = jnp.float32(0.7)
  g = jax.random.normal(jax.random.key(2), x.shape)
  out, vjp = jax.vjp(lambda x, w: convs.fence_input(x, w) * g, x, w)
  dx, dw = vjp(jnp.ones_like(x))
  np.testing.assert_array_equal(out, x * g)
  np.testing.assert_array_equal(dx, g)
  assert dw == 0


_per_shape = lambda *a, **k: layers.conv("per_shape", *a, **k)
_xla = lambda *a, **k: layers.conv("xla", *a, **k)


def _block(conv):
  """A BatchNorm-like affine map, a residual add and a ReLU feeding a 3x3 conv."""
  def loss(a, r, s, k):
    x = jnp.maximum(a * s + r, 0.0)
    y = conv(x, k, (1, 1), "SAME", dimension_numbers=lax.conv_dimension_numbers(x.shape, k.shape, DN))
    return jnp.sum(jnp.sin(y))
  return loss


def _block_args():
  keys = jax.random.split(jax.random.key(3), 4)
  a = jax.random.normal(keys[0], (4, 8, 8, 16))
  r = jax.random.normal(keys[1], a.shape)
  s = jax.random.normal(keys[2], (16,))
  k = 0.1 * jax.random.normal(keys[3], (3, 3, 16, 16))
  return a, r, s, k


def test_fenced_conv_matches_plain_conv_values_and_gradients():
  args = _block_args()
  ours = jax.jit(jax.value_and_grad(_block(_per_shape), argnums=(0, 1, 2, 3)))(*args)
  ref = jax.jit(jax.value_and_grad(_block(_xla), argnums=(0, 1, 2, 3)))(*args)
  np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5)
  for got, want in zip(ours[1], ref[1]):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _fusion_bodies(hlo_text):
  """{fused computation name: its text} of a compiled HLO module."""
  bodies, name, lines = {}, None, []
  for line in hlo_text.splitlines():
    if line.startswith("%") and line.rstrip().endswith("{") and "fused" in line.split(" ")[0]:
      name, lines = line.split(" ")[0], []
    elif name and line.startswith("}"):
      bodies[name], name = "\n".join(lines), None
    elif name:
      lines.append(line)
  return bodies


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the fence is for XLA:CPU")
def test_fence_keeps_the_producers_out_of_the_kernel_gradient_transpose():
  # Without the fence, XLA:CPU fuses max(a * s + r, 0) into the transposed copy of x that
  # the kernel gradient reads (NOTES §6f). With it (the CPU policy's 8x8 maps), no fused
  # computation both transposes and computes the ReLU, and only the differentiated program
  # holds the conditional.
  args = _block_args()
  options = runtime.for_backend("cpu").jit_compiler_options() or {}
  grad_hlo = lambda fn: jax.jit(jax.grad(fn, argnums=(0, 1, 2, 3))).lower(*args).compile(
      compiler_options=options).as_text()
  assert "conditional(" not in grad_hlo(_block(_xla))  # the stock policy never fences
  text = grad_hlo(_block(_per_shape))
  assert "conditional(" in text
  bodies = _fusion_bodies(text)
  assert bodies, "no fused computations found: the HLO text format changed"
  mixed = [n for n, b in bodies.items() if " transpose(" in b and " maximum(" in b]
  assert not mixed, mixed
  forward = jax.jit(_block(_per_shape)).lower(*args).compile().as_text()
  assert "conditional(" not in forward
