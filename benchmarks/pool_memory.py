"""Peak resident memory of loading an in-memory pool, each mode in a fresh process.

    python benchmarks/pool_memory.py --pool-size 200000 --json bench_out/pool_memory.json
    python benchmarks/pool_memory.py --pool-size 20000                   # a smoke run

Writes (once, then reuses) a synthetic npz pool of N random 32x32x3 uint8 images with a
1,000-image test split under `--data`, then runs each mode in its own subprocess of this
tree, so that the peak RSS (`VmHWM` in /proc/self/status) is that mode's alone:

* `runtime`: imports jax and jaxal.loop and runs one jitted op: the runtime's own memory;
* `load`: `datasets.load` (reading the npz, checks);
* `load_data`: `loop.load_data`, the run's whole load path: `datasets.load`, the
  normalization statistics (`pipeline.make_preprocess`) and the pool put on the device.

Prints a table and writes JSON rows `mode`, `pool_size`, `pool_bytes`, `peak_rss_bytes`,
`seconds`, `tree`. The script only imports jaxal in its subprocesses, from the tree it sits in,
so a copy of it measures an older checkout (e.g. `git worktree add /tmp/base HEAD`).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODES = ("runtime", "load", "load_data")
SHAPE = (32, 32, 3)
TEST_SIZE = 1000


def pool_file(data_dir: pathlib.Path, pool_size: int) -> pathlib.Path:
  """The synthetic pool of `pool_size` images, written on first use."""
  path = data_dir / f"pool_{pool_size}.npz"
  if path.exists():
    return path
  data_dir.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (pool_size,) + SHAPE, dtype=np.uint8)
  y = (np.arange(pool_size) % 10).astype(np.int32)
  x_test = rng.integers(0, 256, (TEST_SIZE,) + SHAPE, dtype=np.uint8)
  y_test = (np.arange(TEST_SIZE) % 10).astype(np.int32)
  tmp = path.with_suffix(".tmp.npz")
  np.savez(tmp, x=x, y=y, x_test=x_test, y_test=y_test)
  tmp.replace(path)
  return path


def peak_rss_bytes() -> int:
  for line in pathlib.Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
      return int(line.split()[1]) * 1024
  raise RuntimeError("no VmHWM in /proc/self/status")


def child(mode: str, npz: str) -> dict:
  """Runs `mode` in this (fresh) process; returns its peak RSS and time."""
  sys.path.insert(0, str(ROOT))
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from jaxal import config as config_lib  # pylint: disable=import-outside-toplevel
  from jaxal import loop  # pylint: disable=import-outside-toplevel
  from jaxal.data import datasets  # pylint: disable=import-outside-toplevel
  config = config_lib.base_config()
  config.data.source, config.data.name, config.data.path = "npz", "synthetic", npz
  config.data.test_x_key, config.data.test_y_key = "x_test", "y_test"
  start = time.perf_counter()
  if mode == "runtime":
    jnp.ones(3).sum().block_until_ready()
  elif mode == "load":
    datasets.load(config.data)
  elif mode == "load_data":
    data = loop.load_data(config)
    data.pool_inputs.block_until_ready()
  else:
    raise SystemExit(f"unknown mode {mode!r}")
  return {"seconds": time.perf_counter() - start, "peak_rss_bytes": peak_rss_bytes()}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pool-size", type=int, default=200_000)
  parser.add_argument("--json", default="")
  parser.add_argument("--data", default="/tmp/jaxal_pool_memory", help="where the synthetic pools are kept")
  parser.add_argument("--modes", default=",".join(MODES))
  parser.add_argument("--child", default="", help=argparse.SUPPRESS)
  parser.add_argument("--npz", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(child(args.child, args.npz)))
    return
  npz = pool_file(pathlib.Path(args.data), args.pool_size)
  pool_bytes = args.pool_size * int(np.prod(SHAPE))
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
  rows = []
  print(f"{'mode':<10} {'pool_size':>9} {'pool MB':>8} {'peak RSS MB':>12} {'x pool':>7} {'seconds':>8}  tree")
  for mode in args.modes.split(","):
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--npz", str(npz)], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    row = {"mode": mode, "pool_size": args.pool_size, "pool_bytes": pool_bytes, "tree": str(ROOT), **measured}
    rows.append(row)
    print(f"{mode:<10} {args.pool_size:>9} {pool_bytes / 1e6:>8.0f} {row['peak_rss_bytes'] / 1e6:>12.0f} "
          f"{row['peak_rss_bytes'] / pool_bytes:>7.2f} {row['seconds']:>8.2f}  {ROOT}", flush=True)
  if args.json:
    pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
  main()
