"""Cluster-Margin at scale and stochastic top-k timing (issue 29).

Cluster-Margin on a 1M x 128 pool with a 100k batch: the one-time clustering (k-means
centroids, then HAC over them), one round's selection, and the process's peak RSS; then the
exact HAC path at its default cap (50,000 x 128: a 4.7 GiB float32 condensed matrix), with its
own peak RSS growth. Stochastic top-k (power, softmax, softrank) and class-balanced selection
on the 1M pool.

  python benchmarks/acq_cluster_margin.py [--quick] [--json FILE] [--exact-n N] [--exact-only]
  python benchmarks/selection.py --section cluster_margin --json FILE   # the same rows

`--quick`: 100k x 128 with a 10k batch, exact HAC on 4096 points. The embeddings are Gaussian
blobs (64 centers). `peak_rss_gib`: the process's peak RSS (ru_maxrss) when the row was
measured; `peak_growth_gib`: the largest RSS growth during that stage (sampled every 2 ms).
"""

import argparse
import json
import os
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from jaxal.acquisition import class_balance, cluster_margin, stochastic  # noqa: E402
from selection import PeakMemory  # noqa: E402


def peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def timed(fn, repeats=1):
  """(last output, best seconds, largest RSS growth in GiB)."""
  best, growth = np.inf, 0.0
  for _ in range(repeats):
    with PeakMemory() as mem:
      start = time.perf_counter()
      out = fn()
      best = min(best, time.perf_counter() - start)
    growth = max(growth, mem.growth / 1024)
  return out, best, growth


def blobs(n, dim, rng):
  centers = rng.normal(size=(64, dim)).astype(np.float32) * 4
  return centers[rng.integers(0, 64, n)] + rng.normal(size=(n, dim)).astype(np.float32)


def bench(quick: bool = False, exact_n: int | None = None, large: bool = True) -> list:
  """The rows (see the module doc); `large=False` skips the 1M pool, `exact_n=0` the exact HAC."""
  n, dim, budget = (100_000, 128, 10_000) if quick else (1_000_000, 128, 100_000)
  exact_n = (4096 if quick else 50_000) if exact_n is None else exact_n
  rng = np.random.default_rng(0)
  rows = []

  def add(method, size, stage, secs, growth, objective):
    rows.append(dict(method=method, implementation="jaxal", size=size, stage=stage, seconds=round(secs, 3),
                     peak_growth_gib=round(growth, 3), peak_rss_gib=round(peak_rss_gib(), 3), objective=objective))

  if large:
    emb = jax.device_put(blobs(n, dim, rng))
    margins = jnp.asarray(-rng.random(n).astype(np.float32))  # jaxal's margin score, -(p1 - p2)
    selectable = rng.random(n) < 0.95
    classes = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
    size = f"{n}x{dim}, batch {budget}"
    clustering, secs, growth = timed(lambda: cluster_margin.cluster_pool(emb, key=jax.random.key(0)))
    add("cluster_margin", size, "clustering (once)", secs, growth,
        f"{clustering.num_clusters} clusters, exact={clustering.exact}")
    picks, secs, growth = timed(lambda: cluster_margin.cluster_margin_select(
        margins, clustering, selectable, budget, jax.random.key(1)), repeats=2)
    assert len(set(picks.tolist())) == budget and selectable[picks].all()
    add("cluster_margin", size, "selection (per round)", secs, growth,
        f"{len(set(clustering.labels[picks].tolist()))} clusters hit")
    for mode in stochastic.MODES:
      picks, secs, growth = timed(lambda: stochastic.stochastic_top_k(margins + 1.0, selectable, budget,
                                                                      jax.random.key(2), mode=mode), repeats=2)
      add(f"stochastic_{mode}", size, "selection", secs, growth, f"{len(picks)} picks")
    picks, secs, growth = timed(lambda: class_balance.class_balanced_top_k(margins, classes, selectable, budget, 10),
                                repeats=2)
    add("class_balanced", size, "selection", secs, growth,
        f"per-class {np.bincount(np.asarray(classes)[picks], minlength=10).tolist()}")
    del emb, clustering
  if exact_n:
    x = blobs(exact_n, dim, rng)
    exact, secs, growth = timed(lambda: cluster_margin.cluster_pool(x, exact_max_points=exact_n))
    add("cluster_margin", f"{exact_n}x{dim}", "exact HAC (once)", secs, growth,
        f"{exact.num_clusters} clusters, exact={exact.exact}, condensed matrix "
        f"{exact_n * (exact_n - 1) * 2 / 2**30:.2f} GiB")
  return rows


def print_rows(rows):
  print(f"{'method':<22} {'size':<26} {'stage':<24} {'seconds':>8} {'growth GiB':>10} {'peak GiB':>9}  result")
  for row in rows:
    print(f"{row['method']:<22} {row['size']:<26} {row['stage']:<24} {row['seconds']:8.2f} "
          f"{row['peak_growth_gib']:10.2f} {row['peak_rss_gib']:9.2f}  {row['objective']}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--json", default="")
  parser.add_argument("--exact-n", type=int, default=None, help="points for the exact HAC row (0: skip)")
  parser.add_argument("--exact-only", action="store_true", help="only the exact HAC row")
  args = parser.parse_args()
  rows = bench(args.quick, args.exact_n, large=not args.exact_only)
  print_rows(rows)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
