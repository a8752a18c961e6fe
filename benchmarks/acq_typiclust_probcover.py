"""TypiClust and ProbCover: jaxal against scikit-activeml on the same input.

    python benchmarks/acq_typiclust_probcover.py --json bench_out/typiclust_probcover.json
    python benchmarks/acq_typiclust_probcover.py --quick
    python benchmarks/selection.py --section typiclust --section probcover --json FILE  # the same rows

scikit-activeml runs in its own venv (`--peer-python`, default /work/peervenv_typiprob/bin/python:
`pip install scikit-activeml`), in a subprocess; inputs and picks go through .npz files.
Inputs: L2-normalised clustered embeddings (`embeddings`, d = 512), 100 labeled points, budget 100.

* TypiClust, n = 50k: both get jaxal's k-means clusters (scikit-activeml through a
  cluster_algo that returns them), knn 20; jaxal's `typiclust_select` (selection only) and
  `typiclust` (its own k-means included) against scikit-activeml's query.
* ProbCover, n = 15k: both get jaxal's k-means clusters and jaxal's delta grid; jaxal's
  `purity_radius` + `probcover` against scikit-activeml's query (dense n x n).
* ProbCover, n = 50k: jaxal alone, in a subprocess, with its peak RSS.

scikit-activeml breaks ties at random (`rand_argmax`); the peer script replaces that by the
lowest index (jaxal's rule; `np.nanargmax`, no measurable cost), so the picks can be compared.
Agreement: `same_picks` (TypiClust: as sets; ProbCover: in order), and `objective_gap`: TypiClust's objective is each pick's
mean 20-NN distance within its cluster (float64, sorted), ProbCover's is the number of
points covered by labeled + picked (relative gap). JSON rows: method, implementation, size,
seconds, and the agreement fields. jaxal's times are warm (a first call compiles: `compile_s`).
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PEER = r'''
import sys, time, numpy as np
from skactiveml.pool import TypiClust, ProbCover

class Fixed:  # a cluster_algo that returns the clusters it was given
  def __init__(self, n_clusters, labels):
    self.labels = labels
  def fit_predict(self, X):
    return self.labels

d = np.load(sys.argv[1])
if str(d["ties"]) == "lowest":  # scikit-activeml breaks ties at random; jaxal takes the lowest index
  import skactiveml.pool._typi_clust as _t, skactiveml.pool._prob_cover as _p
  _t.rand_argmax = _p.rand_argmax = lambda a, random_state=None, **kw: np.array([np.nanargmax(a)])
x, labeled, clusters, budget = d["x"], d["labeled"], d["clusters"], int(d["budget"])
y = np.full(len(x), np.nan)
y[labeled] = 0.0
out = {}
t = time.perf_counter()
if d["method"] == "typiclust":
  q = TypiClust(cluster_algo=Fixed, cluster_algo_dict={"labels": clusters}, k=20, random_state=0)
  out["picks"] = q.query(x, y, batch_size=budget)
else:
  q = ProbCover(n_classes=int(clusters.max()) + 1, deltas=d["deltas"], alpha=float(d["alpha"]), cluster_algo=Fixed,
                cluster_algo_dict={"labels": clusters}, random_state=0)
  out["picks"] = q.query(x, y, batch_size=budget)
  out["delta"] = q.delta_max_
out["seconds"] = time.perf_counter() - t
np.savez(sys.argv[2], **out)
'''

SOLO = r'''
import sys, time, resource, json
sys.path.insert(0, sys.argv[1])
import numpy as np, jax
import importlib
pc = importlib.import_module("jaxal.acquisition.probcover")
n = int(sys.argv[2])
x = np.load(sys.argv[3])["x"]
labeled = np.zeros(n, bool); labeled[:100] = True
t = time.perf_counter()
picks, delta = pc.probcover_full(x, labeled, 100, jax.random.key(0), num_clusters=10, normalize=False)
sec = time.perf_counter() - t
print(json.dumps({"seconds": sec, "delta": delta, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def embeddings(n: int, seed: int, d: int = 512, classes: int = 10, intrinsic: int = 16,
               noise: float = 0.05) -> np.ndarray:
  """`classes` Gaussian blobs in a 16-dimensional subspace, lifted to `d` dims with a little
  noise, L2-normalised: nearest-neighbour distances spread as real embeddings' do."""
  rng = np.random.default_rng(seed)
  c = rng.integers(0, classes, n)
  z = rng.normal(size=(classes, intrinsic))[c] * 1.5 + rng.normal(size=(n, intrinsic))
  x = z @ rng.normal(size=(intrinsic, d)) / np.sqrt(intrinsic) + rng.normal(size=(n, d)) * noise * np.sqrt(intrinsic / d)
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def run_peer(python: str, ties: str = "lowest", **arrays) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    inp, out, script = (os.path.join(tmp, f) for f in ("in.npz", "out.npz", "peer.py"))
    np.savez(inp, ties=ties, **arrays)
    with open(script, "w") as f:
      f.write(PEER)
    subprocess.run([python, script, inp, out], check=True)
    return dict(np.load(out))


def timed(fn, repeats: int = 1):
  t = time.perf_counter()
  out = fn()
  first = time.perf_counter() - t
  best = min(_time(fn) for _ in range(repeats))
  return out, first, best


def _time(fn):
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def typiclust_objective(x, clusters, picks, knn=20):
  """Each pick's mean K-NN distance within its cluster (float64), sorted."""
  out = []
  for p in picks:
    idx = np.flatnonzero(clusters == clusters[p])
    d = np.sqrt(((x[idx].astype(np.float64) - x[p]) ** 2).sum(1))
    d = np.sort(d)[1:]
    out.append(d[:max(1, min(knn, idx.size - 1))].mean())
  return np.sort(out)


def coverage(x, labeled, picks, delta, block=2048):
  centers = np.concatenate([np.flatnonzero(labeled), picks])
  c = x[centers].astype(np.float64)
  covered = np.zeros(len(x), bool)
  for s in range(0, len(x), block):
    r = x[s:s + block].astype(np.float64)
    d2 = (r * r).sum(1)[:, None] + (c * c).sum(1)[None] - 2 * r @ c.T
    covered[s:s + block] = (d2 <= delta * delta).any(1)
  return int(covered.sum())


def bench_typiclust(n: int, peer: str, rows: list):
  import jax
  tc = importlib.import_module("jaxal.acquisition.typiclust")
  x = embeddings(n, 0)
  labeled = np.zeros(n, bool)
  labeled[np.random.default_rng(1).choice(n, 100, replace=False)] = True
  budget = 100
  xd = jax.device_put(x)
  (picks_full, clusters), first, full_s = timed(lambda: tc.typiclust(xd, labeled, budget, jax.random.key(0),
                                                                       normalize=False, with_clusters=True))
  sizes = np.bincount(clusters)
  select = lambda: tc.typiclust_select(xd, labeled, clusters, budget, min_cluster_size=0, num_clusters=sizes.size)
  picks, sel_first, sel_s = timed(select)
  peer_out = run_peer(peer, method="typiclust", x=x, labeled=labeled, clusters=clusters, budget=budget)
  same = set(picks.tolist()) == set(peer_out["picks"].tolist())
  gap = float(np.abs(typiclust_objective(x, clusters, picks) - typiclust_objective(x, clusters, peer_out["picks"])).max())
  note = f"{sizes.size} clusters, sizes {sizes.min()}..{sizes.max()}; scikit-activeml with lowest-index ties"
  rows += [dict(method="typiclust", implementation="scikit-activeml (same clusters)", size=n, seconds=float(peer_out["seconds"])),
           dict(method="typiclust", implementation="jaxal select (same clusters)", size=n, seconds=sel_s,
                compile_s=sel_first - sel_s, same_picks=same, objective_gap=gap, note=note),
           dict(method="typiclust", implementation="jaxal k-means + select", size=n, seconds=full_s,
                compile_s=first - full_s, same_picks=set(picks_full.tolist()) == set(picks.tolist()))]


def bench_probcover(n: int, peer: str, rows: list, step: float = 0.05, alpha: float = 0.95):
  import jax
  pc = importlib.import_module("jaxal.acquisition.probcover")
  from jaxal.pretrain.deepcluster import kmeans
  x = embeddings(n, 2)
  labeled = np.zeros(n, bool)
  labeled[np.random.default_rng(3).choice(n, 100, replace=False)] = True
  budget = 100
  xd = jax.device_put(x)
  clusters = np.asarray(jax.device_get(kmeans(xd, 10, jax.random.key(0), iters=20).assignments))

  def jaxal_run():
    delta, _ = pc.purity_radius(xd, clusters, alpha=alpha, step=step)
    return pc.probcover(xd, labeled, budget, delta=delta), delta

  (picks, delta), first, sec = timed(jaxal_run)
  (picks2, _), _, full_s = timed(lambda: pc.probcover_full(xd, labeled, budget, jax.random.key(0), num_clusters=10,
                                                           normalize=False))
  grid = np.round(step * np.arange(1, int(2 / step) + 1), 12)
  peer_out = run_peer(peer, method="probcover", x=x, labeled=labeled, clusters=clusters, budget=budget, deltas=grid,
                      alpha=alpha)
  same = np.array_equal(picks, peer_out["picks"])
  ours, theirs = coverage(x, labeled, picks, delta), coverage(x, labeled, peer_out["picks"], float(peer_out["delta"]))
  rows += [dict(method="probcover", implementation="scikit-activeml (same clusters, grid)", size=n,
                seconds=float(peer_out["seconds"]), delta=float(peer_out["delta"]), covered=theirs),
           dict(method="probcover", implementation="jaxal purity + greedy (same clusters)", size=n, seconds=sec,
                compile_s=first - sec, delta=delta, covered=ours, same_picks=same,
                objective_gap=abs(ours - theirs) / n, same_delta=delta == float(peer_out["delta"])),
           dict(method="probcover", implementation="jaxal k-means + purity + greedy", size=n, seconds=full_s)]


def bench_probcover_solo(n: int, rows: list):
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "x.npz")
    np.savez(path, x=embeddings(n, 4))
    out = subprocess.run([sys.executable, "-c", SOLO, ROOT, str(n), path], check=True, capture_output=True, text=True)
  rec = json.loads(out.stdout.strip().splitlines()[-1])
  rows.append(dict(method="probcover", implementation="jaxal k-means + purity + greedy (cold, own process)", size=n,
                   **rec))


PEER_PYTHON = "/work/peervenv_typiprob/bin/python"
PARTS = ("typiclust", "probcover", "probcover50k")


def bench(quick: bool = False, peer_python: str = PEER_PYTHON, only=PARTS) -> list:
  """The JSON rows of the parts in `only` (see the module doc)."""
  sizes = dict(zip(PARTS, (5000, 3000, 10000) if quick else (50000, 15000, 50000)))
  rows = []
  if "typiclust" in only:
    bench_typiclust(sizes["typiclust"], peer_python, rows)
  if "probcover" in only:
    bench_probcover(sizes["probcover"], peer_python, rows)
  if "probcover50k" in only:
    bench_probcover_solo(sizes["probcover50k"], rows)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
  parser.add_argument("--json", help="write the records here")
  parser.add_argument("--peer-python", default=PEER_PYTHON)
  parser.add_argument("--only", choices=PARTS, action="append")
  args = parser.parse_args()
  rows = bench(args.quick, args.peer_python, set(args.only or PARTS))
  for r in rows:
    extra = {k: v for k, v in r.items() if k not in ("method", "implementation", "size", "seconds")}
    print(f"{r['method']:10s} {r['implementation']:52s} n={r['size']:6d} {r['seconds']:9.2f} s  {extra}")
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
