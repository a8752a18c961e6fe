"""Cluster-Margin at scale and stochastic top-k timing (issue 29).

Cluster-Margin on a 1M x 128 pool with a 100k batch: the one-time clustering (k-means
centroids, then HAC over them), one round's selection, and the process's peak RSS; also the
exact HAC path at its default cap (16384 points). Stochastic
top-k (power, softmax, softrank) and class-balanced selection on the same pool size.

  python benchmarks/acq_cluster_margin.py [--quick] [--json FILE]

`--quick`: 100k x 128 with a 10k batch. The embeddings are Gaussian blobs (64 centers).
"""

import argparse
import json
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxal.acquisition import class_balance, cluster_margin, stochastic


def peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def timed(fn, repeats=1):
  best = np.inf
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - start)
  return out, best


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--json", default="")
  args = parser.parse_args()
  n, dim, budget = (100_000, 128, 10_000) if args.quick else (1_000_000, 128, 100_000)
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(64, dim)).astype(np.float32) * 4
  emb = centers[rng.integers(0, 64, n)] + rng.normal(size=(n, dim)).astype(np.float32)
  emb = jax.device_put(emb)
  margins = jnp.asarray(-rng.random(n).astype(np.float32))  # jaxal's margin score, -(p1 - p2)
  selectable = rng.random(n) < 0.95
  classes = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
  rows = []
  size = f"{n}x{dim}, batch {budget}"

  exact_n = 4096 if args.quick else 16384  # the exact path's default cap
  exact, secs = timed(lambda: cluster_margin.cluster_pool(emb[:exact_n]))
  rows.append(dict(method="cluster_margin", implementation="jaxal", size=f"{exact_n}x{dim}",
                   stage="exact HAC (once)", seconds=secs,
                   objective=f"{exact.num_clusters} clusters, exact={exact.exact}"))
  clustering, secs = timed(lambda: cluster_margin.cluster_pool(emb, key=jax.random.key(0)))
  rows.append(dict(method="cluster_margin", implementation="jaxal", size=size, stage="clustering (once)",
                   seconds=secs, objective=f"{clustering.num_clusters} clusters, exact={clustering.exact}"))
  picks, secs = timed(lambda: cluster_margin.cluster_margin_select(margins, clustering, selectable, budget,
                                                                   jax.random.key(1)), repeats=2)
  assert len(set(picks.tolist())) == budget and selectable[picks].all()
  rows.append(dict(method="cluster_margin", implementation="jaxal", size=size, stage="selection (per round)",
                   seconds=secs, objective=f"{len(set(clustering.labels[picks].tolist()))} clusters hit"))
  for mode in stochastic.MODES:
    picks, secs = timed(lambda: stochastic.stochastic_top_k(margins + 1.0, selectable, budget, jax.random.key(2),
                                                            mode=mode), repeats=2)
    rows.append(dict(method=f"stochastic_{mode}", implementation="jaxal", size=size, stage="selection",
                     seconds=secs, objective=f"{len(picks)} picks"))
  picks, secs = timed(lambda: class_balance.class_balanced_top_k(margins, classes, selectable, budget, 10), repeats=2)
  rows.append(dict(method="class_balanced", implementation="jaxal", size=size, stage="selection", seconds=secs,
                   objective=f"per-class {np.bincount(np.asarray(classes)[picks], minlength=10).tolist()}"))
  rss = peak_rss_gib()
  for row in rows:
    row["peak_rss_gib"] = round(rss, 2)

  print(f"{'method':<22} {'stage':<24} {'seconds':>8}  result")
  for row in rows:
    print(f"{row['method']:<22} {row['stage']:<24} {row['seconds']:8.2f}  {row['objective']}")
  print(f"peak RSS of the whole process: {rss:.2f} GiB ({size}; embeddings alone {n * dim * 4 / 2**30:.2f} GiB)")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
