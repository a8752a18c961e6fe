"""P-DARTS search speed: one search step against the separate ops' forward + backward.

    python benchmarks/pdarts_step.py --json bench_out/pdarts_step.json        # 5 cells, batch 64
    python benchmarks/pdarts_step.py --layers 2 --repeats 3                    # quicker

Prints a table and writes JSON records: `what`, `seconds` (median of `--repeats` timed calls
after one untimed call, which compiles), `compile_seconds`, and the ratio to the baseline.

* `mixed_op`: one edge (16 channels, 28x28, batch 64, all 8 ops on), forward + backward
  (gradients for the weights, α-weights and input) against the sum of its 7 computed ops
  (`none` is free), each jitted and timed alone.
* `search_step`: one stage-1 step of the supernet (`--layers` cells, 16 channels, all ops
  on, batch 64 of 28x28x1): Adam on α with one batch, then SGD on the weights with another,
  i.e. two forward + backward passes. Baseline: twice the sum, over every edge of the
  network, of each of its ops' separate forward + backward at that edge's shape.
"""

import argparse
import collections
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxal.data import augment as augment_lib  # noqa: E402
from jaxal.models import darts  # noqa: E402
from jaxal.search import pdarts  # noqa: E402


def timed(fn, args, repeats):
  t = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - t
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times)), compile_s


def op_time(name, c, stride, h, batch, repeats, cache):
  """Median forward + backward seconds of one op alone (train-mode BN), cached by shape."""
  key = (name, c, stride, h)
  if key not in cache:
    x = jax.random.normal(jax.random.key(1), (batch, h, h, c))
    op = darts.Op(name, c, stride, affine=False, search=True)
    v = op.init({"params": jax.random.key(2)}, x, True)
    params = v.get("params", {})
    stats = v.get("batch_stats", {})

    def f(params, x):
      out, _ = op.apply({"params": params, "batch_stats": stats}, x, True, mutable=["batch_stats"])
      return jnp.sum(out * out)

    fn = jax.jit(jax.grad(f, argnums=(0, 1)))
    cache[key] = timed(fn, (params, x), repeats)[0]
  return cache[key]


def mixed_op_record(batch, repeats, cache):
  c, h = 16, 28
  x = jax.random.normal(jax.random.key(1), (batch, h, h, c))
  mixed = darts.MixedOp(c, 1, tuple(range(8)))
  w = jax.nn.softmax(jnp.zeros(8))
  v = mixed.init({"params": jax.random.key(2), "dropout": jax.random.key(3)}, x, w, train=True)
  stats = v["batch_stats"]

  def f(params, w, x):
    out, _ = mixed.apply({"params": params, "batch_stats": stats}, x, w, train=True, skip_p=0.1,
                         mutable=["batch_stats"], rngs={"dropout": jax.random.key(4)})
    return jnp.sum(out * out)

  seconds, compile_s = timed(jax.jit(jax.grad(f, argnums=(0, 1, 2))), (v["params"], w, x), repeats)
  parts = {n: op_time(n, c, 1, h, batch, repeats, cache) for n in darts.PRIMITIVES[1:]}
  base = sum(parts.values())
  return {"what": "mixed_op", "shape": [batch, h, h, c], "seconds": seconds, "compile_seconds": compile_s,
          "separate_ops_seconds": base, "ratio": seconds / base, "ops": parts}


def edge_shapes(layers, channels, h):
  """Counts of `(op, C, stride, input H)` over the computed ops of every edge of a stage-1 supernet."""
  out = collections.Counter()
  c = channels
  reductions = darts.reduction_positions(layers)
  for i in range(layers):
    reduction = i in reductions
    if reduction:
      c *= 2
    for _, j in darts.edge_inputs():
      stride = 2 if reduction and j < 2 else 1
      size = h if stride == 2 or not reduction else (h + 1) // 2
      for name in darts.PRIMITIVES[1:]:
        out[(name, c, stride, size)] += 1
    if reduction:
      h = (h + 1) // 2
  return out


def step_record(layers, batch, repeats, cache):
  s = pdarts.Settings(layers=(layers,), drop_ops=(7,), skip_dropout=(0.1,), channels=16, batch_size=batch)
  n = 4 * batch
  inputs = jax.random.normal(jax.random.key(0), (n, 28, 28, 1))
  labels = jnp.asarray(np.arange(n) % 10, jnp.int32)
  fns = pdarts.stage_functions(10, layers, darts.full_switches(), darts.full_switches(), s, lambda x: x,
                               augment_lib.AugmentConfig(False, 0, 0.0), (1, 28, 28, 1), inputs.dtype)
  state = fns.init(jax.random.key(1))
  t_idx, v_idx = np.arange(batch, dtype=np.int32), np.arange(batch, 2 * batch, dtype=np.int32)
  t = time.perf_counter()
  compiled = fns.step.lower(state, inputs, labels, t_idx, v_idx, jax.random.key(2), 0.025, 0.1).compile()
  compile_s = time.perf_counter() - t
  state, _ = compiled(state, inputs, labels, t_idx, v_idx, jax.random.key(2), 0.025, 0.1)
  jax.block_until_ready(state)
  times = []
  for i in range(repeats):
    t = time.perf_counter()
    state, m = compiled(state, inputs, labels, t_idx, v_idx, jax.random.key(3 + i), 0.025, 0.1)
    jax.block_until_ready((state, m))
    times.append(time.perf_counter() - t)
  seconds = float(np.median(times))
  shapes = edge_shapes(layers, 16, 28)
  base = 2 * sum(count * op_time(name, c, stride, h, batch, repeats, cache)
                 for (name, c, stride, h), count in shapes.items())
  return {"what": "search_step", "layers": layers, "batch": batch, "seconds": seconds, "compile_seconds": compile_s,
          "separate_ops_seconds": base, "ratio": seconds / base}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--layers", type=int, default=5)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--skip_step", action="store_true")
  parser.add_argument("--json", default="")
  args = parser.parse_args()
  cache = {}
  records = [mixed_op_record(args.batch, args.repeats, cache)]
  print(f"{'what':<14}{'seconds':>10}{'separate ops':>14}{'ratio':>8}{'compile s':>11}", flush=True)
  r = records[0]
  print(f"{'mixed_op':<14}{r['seconds']:>10.4f}{r['separate_ops_seconds']:>14.4f}{r['ratio']:>8.2f}"
        f"{r['compile_seconds']:>11.1f}", flush=True)
  if not args.skip_step:
    r = step_record(args.layers, args.batch, args.repeats, cache)
    records.append(r)
    print(f"{'search_step':<14}{r['seconds']:>10.4f}{r['separate_ops_seconds']:>14.4f}{r['ratio']:>8.2f}"
          f"{r['compile_seconds']:>11.1f}  ({args.layers} cells)", flush=True)
  for name, t in records[0]["ops"].items():
    print(f"  {name:<14}{t:>10.4f}")
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(records, f, indent=2)


if __name__ == "__main__":
  main()
