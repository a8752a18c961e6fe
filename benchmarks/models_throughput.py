"""Forward and forward+backward throughput of zoo models (images per second).

    python benchmarks/models_throughput.py --json models_throughput.json
    python benchmarks/models_throughput.py --models vgg11,small_cnn --batch 64 --repeats 5

Defaults: batch 128 of 32x32x3 float32 images (28x28x1 for `small_cnn`), 10 classes, the
issue-3 set A(1,2) and A(2,4) (ResNet grid, width 64), VGG-11 and pre-activation ResNet-20,
all at full width. A model spec is a registered name or `resnet_grid:BLOCKS:STACKS`.

* forward: `model.apply(..., train=False)`, the inference pass (logits and embedding);
* forward+backward: the cross-entropy gradient with respect to the parameters in training
  mode (batch statistics, BatchNorm statistics updated, dropout on), without the optimizer.

Each is jitted and compiled first (compile time reported apart), run once to warm up, then
timed `--repeats` times; the median is reported. The JSON is a list of records with
`model`, `architecture`, `num_params`, `depth`, `batch`, `input_shape`, `pass`
("forward" or "forward_backward"), `images_per_second`, `seconds_per_batch`,
`compile_seconds` and `device`.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from jaxal import models  # noqa: E402

DEFAULT_MODELS = "resnet_grid:1:2,resnet_grid:2:4,vgg11,preact_resnet20"


def parse_model(spec: str):
  """`name` or `resnet_grid:BLOCKS:STACKS` -> (name, options, display name)."""
  parts = spec.split(":")
  if parts[0] == "resnet_grid":
    blocks, stacks = (int(parts[1]), int(parts[2])) if len(parts) == 3 else (1, 1)
    return "resnet_grid", {"blocks": blocks, "stacks": stacks, "width": 64}, f"A({blocks},{stacks})"
  return parts[0], {}, parts[0]


def _time(fn, args, repeats):
  """Median wall time of `fn(*args)` over `repeats` calls after one warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def bench(spec: str, batch: int, repeats: int, num_classes: int = 10):
  """Times one model's forward and forward+backward passes.

  Args:
    spec: model spec (see `parse_model`).
    batch: images per call.
    repeats: timed calls per pass (after a warm-up call).
    num_classes: output classes.
  Returns:
    Two records (dicts), one per pass.
  """
  name, options, display = parse_model(spec)
  shape = (28, 28, 1) if name == "small_cnn" else (32, 32, 3)
  model = models.create(name, num_classes, **options)
  info = models.describe(model, (1,) + shape)
  variables = models.init_variables(model, jax.random.key(0), (1,) + shape)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch,) + shape), jnp.float32)
  y = jnp.asarray(np.arange(batch) % num_classes, jnp.int32)

  def forward(v, xb):
    return model.apply(v, xb, train=False)

  def forward_backward(v, xb, yb, key):
    def loss_fn(params):
      (logits, _), new = model.apply({"params": params, "batch_stats": v["batch_stats"]}, xb, train=True,
                                     mutable=["batch_stats"], rngs={"dropout": key})
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), new
    (loss, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(v["params"])
    return loss, grads, new

  records = []
  for pass_name, fn, args in (("forward", forward, (variables, x)),
                              ("forward_backward", forward_backward, (variables, x, y, jax.random.key(1)))):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    seconds = _time(compiled, args, repeats)
    records.append(dict(model=display, architecture=info["architecture"], num_params=info["num_params"],
                        depth=info["depth"], batch=batch, input_shape=list(shape), dtype="float32",
                        images_per_second=batch / seconds, seconds_per_batch=seconds,
                        compile_seconds=compile_s, repeats=repeats, **{"pass": pass_name},
                        device=str(jax.devices()[0].device_kind)))
  return records


def table(records) -> str:
  """A markdown table: one row per model, forward and forward+backward images/s."""
  rows = {}
  for r in records:
    rows.setdefault(r["model"], {"params": r["num_params"], "depth": r["depth"]})[r["pass"]] = r
  lines = ["| model | params | depth | forward img/s | fwd+bwd img/s | compile s (fwd / fwd+bwd) |",
           "|---|---:|---:|---:|---:|---:|"]
  for model, row in rows.items():
    f, b = row.get("forward"), row.get("forward_backward")
    lines.append(f"| {model} | {row['params']:,} | {row['depth']} | {f['images_per_second']:.1f} | "
                 f"{b['images_per_second']:.1f} | {f['compile_seconds']:.1f} / {b['compile_seconds']:.1f} |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model specs")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--json", default="models_throughput.json", help="where to write the records")
  args = parser.parse_args(argv)
  records = []
  for spec in args.models.split(","):
    for r in bench(spec.strip(), args.batch, args.repeats):
      records.append(r)
      print(f"{r['model']:>16s} {r['pass']:>16s}: {r['images_per_second']:8.1f} img/s "
            f"({r['seconds_per_batch']:.3f} s/batch, compile {r['compile_seconds']:.1f} s)", flush=True)
  print()
  print(f"{jax.devices()[0].platform} ({os.cpu_count()} cores visible), batch {args.batch}, median of {args.repeats}")
  print(table(records))
  with open(args.json, "w") as f:
    json.dump(records, f, indent=1)
  print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
