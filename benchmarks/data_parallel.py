"""Training throughput on 1 device against a data-parallel mesh of N devices.

    python benchmarks/data_parallel.py --devices 1,8 --json out.json

On CPU the N devices are fake host devices (`--xla_force_host_platform_device_count`), so
each count runs in its own subprocess. Prints a table and writes JSON records with
`devices`, `model`, `batch`, `images_per_second` and `compile_seconds`.
"""

import argparse
import json
import os
import subprocess
import sys
import time


def measure(model_name, options, batch, steps, input_shape):
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jaxal import config as config_lib, models, parallel
  from jaxal.data import augment, pipeline
  from jaxal.train import trainer as trainer_lib

  mesh = parallel.make_mesh(0)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (4 * batch,) + input_shape, dtype=np.uint8)
  y = (np.arange(4 * batch) % 10).astype(np.int32)
  c = config_lib.base_config().train
  c.batch_size, c.epochs, c.epoch_size, c.steps_per_call, c.lr_schedule = batch, 1, batch * steps, steps, "0:0.01"
  model = models.create(model_name, 10, **options)
  t = trainer_lib.Trainer(model, c, pipeline.make_preprocess(x, "image", "per_channel"), augment.AugmentConfig(),
                          input_shape, np.uint8, mesh=mesh)
  inputs = parallel.replicate(jnp.asarray(x), mesh)
  t0 = time.perf_counter()
  jax.block_until_ready(t.fit(jax.random.key(0), inputs, y, np.arange(x.shape[0])).state)  # compile + 1 epoch
  compile_seconds = time.perf_counter() - t0
  times = []
  for i in range(3):
    t0 = time.perf_counter()
    jax.block_until_ready(t.fit(jax.random.key(i), inputs, y, np.arange(x.shape[0])).state)
    times.append(time.perf_counter() - t0)
  return {"devices": jax.device_count(), "platform": jax.devices()[0].platform, "model": model_name,
          "options": options, "batch": batch, "images_per_second": batch * steps / sorted(times)[1],
          "compile_seconds": compile_seconds}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--devices", default="1,8")
  parser.add_argument("--model", default="resnet_grid")
  parser.add_argument("--options", default='{"blocks": 1, "stacks": 2, "width": 16}')
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--input-shape", default="32,32,3")
  parser.add_argument("--json", default="")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  shape = tuple(int(v) for v in args.input_shape.split(","))
  if args.child:
    print(json.dumps(measure(args.model, json.loads(args.options), args.batch, args.steps, shape)))
    return
  records = []
  for n in [int(v) for v in args.devices.split(",")]:
    env = dict(os.environ)
    if env.get("JAX_PLATFORMS", "cpu") == "cpu":
      env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n} " + env.get("XLA_FLAGS", "")
    argv = [sys.executable, __file__, "--child", "--model", args.model, "--options", args.options,
            "--batch", str(args.batch), "--steps", str(args.steps), "--input-shape", args.input_shape]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    records.append(json.loads(out.stdout.strip().splitlines()[-1]))
  print(f"{'devices':>8} {'platform':>8} {'model':>12} {'batch':>6} {'img/s':>10} {'compile s':>10}")
  for r in records:
    print(f"{r['devices']:>8} {r['platform']:>8} {r['model']:>12} {r['batch']:>6} "
          f"{r['images_per_second']:>10.1f} {r['compile_seconds']:>10.1f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(records, f, indent=2)


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  main()
