"""DARTS cells (Liu et al. 2019) as used by P-DARTS (Chen et al. 2019; ALGORITHMS.md §8).

Two networks share the operations here:

* `SuperNet`, the search network: every edge of a cell is a mixed op, the softmax over
  α of the ops still switched on, `ō(x) = Σ_o softmax(α_e)_o · o(x)`. α lives in its own
  variable collection `"arch"` (`{"normal": (14, k), "reduce": (14, k)}`), so the search
  differentiates and updates it apart from `"params"`. The op subset of each edge is
  static (`switches_normal` / `switches_reduce`), so switched-off ops are never built or
  computed and one stage compiles to one function.
* `DartsNet`, the discrete network of a genotype, registered as `darts_net`, lives in
  `darts_net.py`; the genotype is a JSON-able dict (or its JSON text) `{"normal": [[op,
  input], ...], "normal_concat": [2, 3, 4, 5], "reduce": ..., "reduce_concat": ...}` as
  P-DARTS' `Genotype`.

Resolved details:
* Depthwise convolutions are grouped convolutions; under the CPU policy those of up to 64
  channels run as dense convolutions with diagonal kernels (`jaxal.cpu.depthwise`). Same maths.
* `none` contributes exactly zero, so the mixed op skips computing it; its α slot still
  takes part in the softmax.
* FactorizedReduce pads odd maps by one row and column before the shifted path, so both
  halves have `ceil(H/2)` rows (the reference assumes even maps; 28 -> 14 -> 7 never hits
  this with two reductions).
* The skip-connect dropout rate `skip_p` is a traced call argument, so the per-epoch
  schedule does not recompile; it applies to stride-1 identities only, in train mode.
* BatchNorm momentum 0.9 and epsilon 1e-5 (PyTorch's 0.1 / 1e-5).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxal import runtime as runtime_lib
from jaxal.cpu import depthwise as cpu_depthwise
from jaxal.models import layers
from jaxal.models.base import global_avg_pool
from jaxal.models.batch_norm import BatchNorm

Array = Any

PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
              "dil_conv_3x3", "dil_conv_5x5")
NONE, SKIP = 0, 3

# The P-DARTS CIFAR-10 cell (chenxin061/pdarts genotypes.py), the default of `darts_net`.
PDARTS_GENOTYPE = {
    "normal": [["skip_connect", 0], ["dil_conv_3x3", 1], ["skip_connect", 0], ["sep_conv_3x3", 1],
               ["sep_conv_3x3", 1], ["sep_conv_3x3", 3], ["sep_conv_3x3", 0], ["dil_conv_5x5", 4]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["avg_pool_3x3", 0], ["sep_conv_5x5", 1], ["sep_conv_3x3", 0], ["dil_conv_5x5", 2],
               ["max_pool_3x3", 0], ["dil_conv_3x3", 1], ["dil_conv_3x3", 1], ["dil_conv_5x5", 3]],
    "reduce_concat": [2, 3, 4, 5],
}


def num_edges(nodes: int = 4) -> int:
  """Mixed-op edges of a cell: node k has 2 + k inputs (14 for 4 nodes)."""
  return sum(2 + k for k in range(nodes))


def edge_inputs(nodes: int = 4) -> list[tuple[int, int]]:
  """`[(node, input), ...]` per edge, in the order of α's rows (intermediate nodes from 0)."""
  return [(k, j) for k in range(nodes) for j in range(2 + k)]


def _bn(train: bool, affine: bool, name=None):
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, use_scale=affine,
                      use_bias=affine, name=name)


def depthwise_conv(x: Array, taps: Array, stride: int = 1, dilation: int = 1,
                   runtime: runtime_lib.Runtime = runtime_lib.STOCK) -> Array:
  """Depthwise cross-correlation of NHWC `x` with `(k, k, C)` taps, PyTorch padding `d (k - 1) / 2`:
  a grouped convolution (`feature_group_count = C`), or under the CPU policy the diagonal
  dense form of `jaxal.cpu.depthwise` for narrow maps."""
  if runtime.cpu_kernels and cpu_depthwise.prefers_dense(x.shape[-1]):
    return cpu_depthwise.diagonal_depthwise_conv(x, taps, stride, dilation)
  k, c = taps.shape[0], x.shape[-1]
  pad = dilation * (k - 1) // 2
  return jax.lax.conv_general_dilated(x, taps[:, :, None, :], (stride, stride), [(pad, pad), (pad, pad)],
                                      rhs_dilation=(dilation, dilation),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)


class DepthwiseConv(nn.Module):
  kernel: int
  stride: int = 1
  dilation: int = 1

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    # PyTorch's default conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = k * k.
    bound = 1.0 / self.kernel
    init = lambda key, shape: jax.random.uniform(key, shape, minval=-bound, maxval=bound)
    # HWIO with I = 1, named `kernel` like every conv (weight-decay masks pick 4-D kernels).
    kernel = self.param("kernel", init, (self.kernel, self.kernel, 1, c))
    return depthwise_conv(x, kernel[:, :, 0, :].astype(x.dtype), self.stride, self.dilation,
                          layers.runtime_of(self))


def _pointwise(features: int, stride: int = 1, name=None):
  return nn.Conv(features, (1, 1), strides=(stride, stride), use_bias=False, name=name)


class ReLUConvBN(nn.Module):
  features: int
  affine: bool

  @nn.compact
  def __call__(self, x, train: bool):
    return _bn(train, self.affine)(_pointwise(self.features)(nn.relu(x)))


class FactorizedReduce(nn.Module):
  """ReLU, two stride-2 1x1 convs (the second shifted by one pixel), concat, BN."""

  features: int
  affine: bool

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(x)
    shifted = x[:, 1:, 1:, :]
    if x.shape[1] % 2 or x.shape[2] % 2:
      shifted = jnp.pad(shifted, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)))
    a = _pointwise(self.features // 2, 2)(x)
    b = _pointwise(self.features - self.features // 2, 2)(shifted)
    return _bn(train, self.affine)(jnp.concatenate([a, b], -1))


class SepConv(nn.Module):
  """(ReLU, depthwise k x k, pointwise, BN) twice; only the first is strided."""

  kernel: int
  stride: int
  affine: bool

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    for stride in (self.stride, 1):
      x = DepthwiseConv(self.kernel, stride)(nn.relu(x))
      x = _bn(train, self.affine)(_pointwise(c)(x))
    return x


class DilConv(nn.Module):
  """ReLU, depthwise k x k with dilation 2, pointwise, BN."""

  kernel: int
  stride: int
  affine: bool

  @nn.compact
  def __call__(self, x, train: bool):
    x = DepthwiseConv(self.kernel, self.stride, 2)(nn.relu(x))
    return _bn(train, self.affine)(_pointwise(x.shape[-1])(x))


def pool(x: Array, kind: str, stride: int) -> Array:
  window, strides, padding = (3, 3), (stride, stride), ((1, 1), (1, 1))
  if kind == "max":
    return nn.max_pool(x, window, strides, padding)
  return nn.avg_pool(x, window, strides, padding, count_include_pad=False)


class Op(nn.Module):
  """One primitive on `features` channels; `search` adds the non-affine BN after pools."""

  name_: str
  features: int
  stride: int
  affine: bool
  search: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    n, s = self.name_, self.stride
    if n == "none":
      return jnp.zeros_like(x[:, ::s, ::s, :])
    if n in ("max_pool_3x3", "avg_pool_3x3"):
      y = pool(x, n[:3], s)
      return _bn(train, False)(y) if self.search else y
    if n == "skip_connect":
      return x if s == 1 else FactorizedReduce(self.features, self.affine)(x, train)
    kernel = int(n[-1])
    if n.startswith("sep_conv"):
      return SepConv(kernel, s, self.affine)(x, train)
    if n.startswith("dil_conv"):
      return DilConv(kernel, s, self.affine)(x, train)
    raise ValueError(f"unknown DARTS op {n!r}; known: {PRIMITIVES}")


def skip_dropout(module: nn.Module, x: Array, rate: Array) -> Array:
  """Inverted dropout with a traced rate (rate 0 keeps everything)."""
  keep = 1.0 - rate
  mask = jax.random.bernoulli(module.make_rng("dropout"), keep, x.shape)
  return jnp.where(mask, x / jnp.maximum(keep, 1e-6), 0.0).astype(x.dtype)


class MixedOp(nn.Module):
  """`Σ_i weights[i] · op_i(x)` over the switched-on ops `ops` (indices into PRIMITIVES)."""

  features: int
  stride: int
  ops: tuple[int, ...]

  @nn.compact
  def __call__(self, x, weights, *, train: bool, skip_p=0.0):
    out = None
    for slot, o in enumerate(self.ops):
      if o == NONE:
        continue
      y = Op(PRIMITIVES[o], self.features, self.stride, affine=False, search=True, name=f"op{o}")(x, train)
      if o == SKIP and self.stride == 1 and train:
        y = skip_dropout(self, y, skip_p)
      y = weights[slot].astype(y.dtype) * y
      out = y if out is None else out + y
    if out is None:  # only `none` is on
      out = jnp.zeros_like(x[:, ::self.stride, ::self.stride, :])
    return out


class SearchCell(nn.Module):
  features: int
  reduction: bool
  reduction_prev: bool
  switches: tuple[tuple[int, ...], ...]
  nodes: int = 4

  @nn.compact
  def __call__(self, s0, s1, weights, *, train: bool, skip_p=0.0):
    if self.reduction_prev:
      s0 = FactorizedReduce(self.features, False, name="pre0")(s0, train)
    else:
      s0 = ReLUConvBN(self.features, False, name="pre0")(s0, train)
    s1 = ReLUConvBN(self.features, False, name="pre1")(s1, train)
    states = [s0, s1]
    e = 0
    for _ in range(self.nodes):
      total = None
      for j, h in enumerate(states):
        stride = 2 if self.reduction and j < 2 else 1
        y = MixedOp(self.features, stride, self.switches[e], name=f"edge{e}")(h, weights[e], train=train,
                                                                               skip_p=skip_p)
        total = y if total is None else total + y
        e += 1
      states.append(total)
    return jnp.concatenate(states[2:], -1)


def stem(x: Array, features: int, train: bool) -> Array:
  """The 3x3 conv + BN stem shared by the supernet and the discrete network (call inside `compact`)."""
  x = nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name="stem")(x)
  return _bn(train, True, name="stem_bn")(x)


def reduction_positions(layers: int) -> tuple[int, ...]:
  """Cells at `layers // 3` and `2 * layers // 3` reduce (one cell when they coincide)."""
  return tuple(sorted({layers // 3, 2 * layers // 3}))


def full_switches(nodes: int = 4) -> tuple[tuple[int, ...], ...]:
  return tuple(tuple(range(len(PRIMITIVES))) for _ in range(num_edges(nodes)))


class SuperNet(nn.Module):
  """The P-DARTS search network; `__call__` returns `(logits, embedding)`.

  α: collection `"arch"`, entries `normal` and `reduce` of shape `(edges, ops on per edge)`,
  initialised `1e-3 * N(0, 1)`. Every edge must have the same number of ops on.
  """

  num_classes: int
  channels: int = 16
  layers: int = 5
  switches_normal: tuple[tuple[int, ...], ...] = full_switches()
  switches_reduce: tuple[tuple[int, ...], ...] = full_switches()
  nodes: int = 4
  stem_multiplier: int = 3
  runtime: runtime_lib.Runtime = runtime_lib.STOCK  # read by the layers (`layers.runtime_of`)

  @nn.compact
  def __call__(self, x, *, train: bool = False, skip_p=0.0):
    k = len(self.switches_normal[0])
    shape = (num_edges(self.nodes), k)
    init = lambda: 1e-3 * jax.random.normal(self.make_rng("params"), shape)
    alphas = {"normal": self.variable("arch", "normal", init).value,
              "reduce": self.variable("arch", "reduce", init).value}
    weights = {name: jax.nn.softmax(a.astype(jnp.float32), axis=-1) for name, a in alphas.items()}
    c = self.channels
    s0 = s1 = stem(x, self.stem_multiplier * c, train)
    reductions = reduction_positions(self.layers)
    reduction_prev = False
    for i in range(self.layers):
      reduction = i in reductions
      if reduction:
        c *= 2
      switches = self.switches_reduce if reduction else self.switches_normal
      cell = SearchCell(c, reduction, reduction_prev, switches, self.nodes, name=f"cell{i}")
      s0, s1 = s1, cell(s0, s1, weights["reduce" if reduction else "normal"], train=train, skip_p=skip_p)
      reduction_prev = reduction
    h = global_avg_pool(s1)
    return nn.Dense(self.num_classes, name="classifier")(h), h
