"""The discrete DARTS network of a genotype (`darts_net`), built from the cells' ops in `darts.py`.

The genotype is a JSON-able dict (or its JSON text) `{"normal": [[op, input], ...],
"normal_concat": [2, 3, 4, 5], "reduce": ..., "reduce_concat": ...}`, as P-DARTS' `Genotype`.
"""

import json
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxal.models import darts
from jaxal.models.base import global_avg_pool

Array = Any


def parse_genotype(genotype) -> dict:
  """A genotype dict from a dict or its JSON text, checked; lists, not tuples."""
  if isinstance(genotype, str):
    try:
      genotype = json.loads(genotype)
    except json.JSONDecodeError as e:
      raise ValueError(f"genotype is not valid JSON: {e}") from None
  if not isinstance(genotype, dict):
    raise ValueError(f"genotype must be a dict or its JSON text, got {type(genotype).__name__}")
  out = {}
  for cell in ("normal", "reduce"):
    if cell not in genotype or f"{cell}_concat" not in genotype:
      raise ValueError(f"genotype needs '{cell}' and '{cell}_concat'")
    edges = [[str(op), int(i)] for op, i in genotype[cell]]
    if not edges or len(edges) % 2:
      raise ValueError(f"genotype '{cell}' needs two [op, input] pairs per node, got {len(edges)} pairs")
    for e, (op, i) in enumerate(edges):
      if op not in darts.PRIMITIVES or op == "none":
        raise ValueError(f"genotype '{cell}': unknown or 'none' op {op!r}")
      if not 0 <= i < 2 + e // 2:
        raise ValueError(f"genotype '{cell}': node {e // 2} cannot take input {i}")
    concat = [int(i) for i in genotype[f"{cell}_concat"]]
    if not concat or not all(0 <= i < 2 + len(edges) // 2 for i in concat):
      raise ValueError(f"genotype '{cell}_concat' {concat} names a missing node")
    out[cell], out[f"{cell}_concat"] = edges, concat
  return out


def genotype_json(genotype) -> str:
  """Canonical compact JSON text of a genotype (hashable, stable across round trips)."""
  g = parse_genotype(genotype)
  return json.dumps({k: g[k] for k in ("normal", "normal_concat", "reduce", "reduce_concat")},
                    separators=(",", ":"))


def drop_path(module: nn.Module, x: Array, rate: float) -> Array:
  keep = 1.0 - rate
  mask = jax.random.bernoulli(module.make_rng("dropout"), keep, (x.shape[0], 1, 1, 1))
  return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


class DiscreteCell(nn.Module):
  features: int
  reduction: bool
  reduction_prev: bool
  edges: tuple[tuple[str, int], ...]
  concat: tuple[int, ...]
  drop_path: float = 0.0

  @nn.compact
  def __call__(self, s0, s1, *, train: bool):
    if self.reduction_prev:
      s0 = darts.FactorizedReduce(self.features, True, name="pre0")(s0, train)
    else:
      s0 = darts.ReLUConvBN(self.features, True, name="pre0")(s0, train)
    s1 = darts.ReLUConvBN(self.features, True, name="pre1")(s1, train)
    states = [s0, s1]
    for k in range(len(self.edges) // 2):
      total = None
      for e in (2 * k, 2 * k + 1):
        name, i = self.edges[e]
        stride = 2 if self.reduction and i < 2 else 1
        y = darts.Op(name, self.features, stride, affine=True, name=f"edge{e}")(states[i], train)
        if train and self.drop_path > 0 and not (name == "skip_connect" and stride == 1):
          y = drop_path(self, y, self.drop_path)
        total = y if total is None else total + y
      states.append(total)
    return jnp.concatenate([states[i] for i in self.concat], -1)


class DartsNet(nn.Module):
  """The evaluation network of a genotype (no auxiliary head); a `Classifier` backbone.

  `drop_path` is a constant rate in train mode (the reference raises it linearly over the
  epochs); identities are never dropped, as in the reference.
  """

  normal: tuple[tuple[str, int], ...]
  normal_concat: tuple[int, ...]
  reduce: tuple[tuple[str, int], ...]
  reduce_concat: tuple[int, ...]
  channels: int = 16
  layers: int = 8
  drop_path: float = 0.0
  stem_multiplier: int = 3

  @property
  def depth(self) -> int:
    return self.layers

  @property
  def label(self) -> str:
    return f"darts_net(C{self.channels},L{self.layers})"

  @nn.compact
  def __call__(self, x, *, train: bool = False, mc_dropout: bool = False):
    del mc_dropout  # dropout lives in the Classifier head
    c = self.channels
    s0 = s1 = darts.stem(x, self.stem_multiplier * c, train)
    reductions = darts.reduction_positions(self.layers)
    reduction_prev = False
    for i in range(self.layers):
      reduction = i in reductions
      if reduction:
        c *= 2
      edges, concat = (self.reduce, self.reduce_concat) if reduction else (self.normal, self.normal_concat)
      cell = DiscreteCell(c, reduction, reduction_prev, edges, concat, self.drop_path, name=f"cell{i}")
      s0, s1 = s1, cell(s0, s1, train=train)
      reduction_prev = reduction
    return global_avg_pool(s1)


def darts_net(genotype=None, channels: int = 16, layers: int = 8, drop_path: float = 0.0) -> DartsNet:
  """The `darts_net` backbone; `genotype` is a dict or JSON text (default: P-DARTS' CIFAR-10 cell)."""
  g = parse_genotype(darts.PDARTS_GENOTYPE if genotype is None or genotype == "" else genotype)
  if int(channels) < 1 or int(layers) < 1:
    raise ValueError(f"channels and layers must be >= 1, got {channels}, {layers}")
  if not 0 <= float(drop_path) < 1:
    raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
  edges = lambda cell: tuple((op, i) for op, i in g[cell])
  return DartsNet(edges("normal"), tuple(g["normal_concat"]), edges("reduce"), tuple(g["reduce_concat"]),
                  int(channels), int(layers), float(drop_path))
