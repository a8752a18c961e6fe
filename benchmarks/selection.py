"""Selection kernels: jaxal against numpy references, timed in the same run.

    python benchmarks/selection.py --json bench_out/selection.json        # the issue's sizes
    python benchmarks/selection.py --quick                                # a smoke run

Prints a table and writes JSON records (`kernel`, `implementation`, `size`, `seconds`
(median of `--repeats`), `peak_rss_mb` of the process after the kernel).
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxal import acquisition, models  # noqa: E402
from jaxal.acquisition.scoring import Predictor  # noqa: E402


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeats):
  fn()  # warm-up (compilation)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out) if isinstance(out, jax.Array) else None
    times.append(time.perf_counter() - t0)
  return float(np.median(times)), out


def numpy_kcenter(x, labeled, budget, block=1024):
  """Well-written numpy greedy k-center: block GEMM init, then one GEMV per pick, in place."""
  xx = np.einsum("ij,ij->i", x, x)
  min_d2 = np.full(x.shape[0], np.inf, np.float32)
  idx = np.flatnonzero(labeled)
  for s in range(0, idx.size, block):
    c = x[idx[s:s + block]]
    d2 = xx[:, None] + np.einsum("ij,ij->i", c, c)[None, :] - 2 * (x @ c.T)
    np.minimum(min_d2, d2.min(1), out=min_d2)
  min_d2[labeled] = -np.inf
  picks = np.empty(budget, np.int64)
  for i in range(budget):
    u = int(np.argmax(min_d2))
    picks[i] = u
    d = x @ x[u]
    d *= -2
    d += xx
    d += xx[u]
    np.minimum(min_d2, d, out=min_d2)
    min_d2[u] = -np.inf
  return picks


def numpy_badge(p, h, labeled, budget, seed=0):
  """Factorized numpy BADGE (k-means++ with D^2 sampling)."""
  rng = np.random.default_rng(seed)
  a = p - np.eye(p.shape[1], dtype=p.dtype)[p.argmax(1)]
  na, nh = (a * a).sum(1), (h * h).sum(1)
  cand = ~labeled
  first = int(np.argmax(np.where(cand, na * nh, -np.inf)))
  d2 = np.maximum(na * nh + na[first] * nh[first] - 2 * (a @ a[first]) * (h @ h[first]), 0)
  chosen = np.zeros(len(p), bool)
  chosen[first] = True
  picks = [first]
  for _ in range(budget - 1):
    w = np.where(cand & ~chosen, d2, 0)
    j = int(rng.choice(len(p), p=w / w.sum()))
    picks.append(j)
    chosen[j] = True
    np.minimum(d2, np.maximum(na * nh + na[j] * nh[j] - 2 * (a @ a[j]) * (h @ h[j]), 0), out=d2)
  return np.array(picks)


def clustered(n, d, clusters, rng):
  centers = rng.normal(size=(clusters, d)).astype(np.float32) * 10
  return (centers[rng.integers(0, clusters, n)] + rng.normal(size=(n, d)).astype(np.float32) * 0.1)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--json", default="")
  parser.add_argument("--skip", default="", help="comma list of: kcenter,kcenter_1m,bald,badge")
  args = parser.parse_args()
  skip = set(filter(None, args.skip.split(",")))
  q = args.quick
  rng = np.random.default_rng(0)
  records = []

  def add(kernel, impl, size, seconds, **extra):
    records.append({"kernel": kernel, "implementation": impl, "size": size, "seconds": round(seconds, 4),
                    "peak_rss_mb": round(peak_rss_mb(), 1), **extra})
    print(f"{kernel:<22} {impl:<26} {size:<34} {seconds:>9.3f} s", flush=True)

  print(f"{'kernel':<22} {'implementation':<26} {'size':<34} {'time':>11}")
  if "kcenter" not in skip:
    n, d, num_labeled, b = (5000, 64, 100, 100) if q else (50000, 512, 1000, 1000)
    for kind in ("gaussian", "clustered"):
      x = rng.normal(size=(n, d)).astype(np.float32) if kind == "gaussian" else clustered(n, d, 100, rng)
      labeled = np.zeros(n, bool)
      labeled[rng.choice(n, num_labeled, replace=False)] = True
      size = f"n={n} d={d} L={num_labeled} b={b} {kind}"
      t_np, p_np = timed(lambda: numpy_kcenter(x, labeled, b), args.repeats)
      add("kcenter", "numpy (GEMV per pick)", size, t_np)
      t_jx, p_jx = timed(lambda: acquisition.kcenter_greedy(x, labeled, b), args.repeats)
      add("kcenter", "jaxal f32", size, t_jx, ratio_to_numpy=round(t_jx / t_np, 3),
          same_picks_as_numpy=float(np.mean(p_np == p_jx)))
      t_bf, p_bf = timed(lambda: acquisition.kcenter_greedy(x, labeled, b, storage_dtype=jnp.bfloat16), args.repeats)
      add("kcenter", "jaxal bf16 storage", size, t_bf, picks_differing_from_f32=float(np.mean(~np.isin(p_bf, p_jx))))
  if "kcenter_1m" not in skip:
    n, d, b = (100000, 128, 100) if q else (1000000, 128, 1000)
    x = rng.normal(size=(n, d)).astype(np.float32)
    labeled = np.zeros(n, bool)
    labeled[:1000] = True
    t, _ = timed(lambda: acquisition.kcenter_greedy(x, labeled, b), 1)
    add("kcenter", "jaxal f32", f"n={n} d={d} L=1000 b={b}", t)
    del x
  if "bald" not in skip:
    n, t_passes = (1000, 20) if q else (10000, 100)
    images = jnp.asarray(rng.normal(size=(n, 28, 28, 1)).astype(np.float32))
    size = f"n={n} 28x28 T={t_passes} small_cnn"
    # Full: dropout inside the network (after each conv block), so every pass reruns it all.
    # Head-only: dropout before the classifier only; the embedding is computed once.
    for impl, head, block_dropout in (("jaxal full MC-dropout", False, 0.25), ("jaxal head-only", True, 0.0)):
      model = models.create("small_cnn", 10, dropout=0.5, block_dropout=block_dropout)
      variables = models.init_variables(model, jax.random.key(0), (1, 28, 28, 1))
      def run():
        pred = Predictor(model, variables, images, lambda v: v, chunk_size=500)
        return pred.mc_statistics(t_passes, jax.random.key(1), head_only=head)["mean_probs"]
      secs, _ = timed(run, 1 if not head else args.repeats)
      add("bald", impl, size, secs)
  if "badge" not in skip:
    n, c, d, b = (2000, 10, 128, 200) if q else (10000, 10, 512, 1000)
    logits = rng.normal(size=(n, c)).astype(np.float32) * 3
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    h = rng.normal(size=(n, d)).astype(np.float32)
    labeled = np.zeros(n, bool)
    labeled[:100] = True
    size = f"n={n} C={c} d={d} b={b}"
    t_np, _ = timed(lambda: numpy_badge(p, h, labeled, b), args.repeats)
    add("badge", "numpy factorized", size, t_np)
    t_jx, _ = timed(lambda: acquisition.badge(p, h, labeled, b, jax.random.key(0)), args.repeats)
    add("badge", "jaxal", size, t_jx, ratio_to_numpy=round(t_jx / t_np, 3))
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(records, f, indent=2)


if __name__ == "__main__":
  main()
