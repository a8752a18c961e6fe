"""Selection kernels: jaxal against numpy references, timed in the same run.

    python benchmarks/selection.py --json bench_out/selection.json        # the issue's sizes
    python benchmarks/selection.py --quick                                # a smoke run

Prints a table and writes JSON records: `kernel`, `implementation`, `size`, `seconds`
(median of `--repeats` timed calls after one untimed warm-up call, which compiles; k-center's
numpy, plain and pruned rows, and BADGE's numpy and jaxal, run in turn call by call; each timed
call starts after a `SETTLE` pause, so that no other thread pool is still spinning), and
`peak_mb`, the largest resident-memory growth seen during a timed call (a sampling thread
reads /proc/self/statm every 2 ms; this covers numpy and XLA:CPU buffers alike). Sections:

* `kcenter`: n=50k, d=512, 1k labeled, budget 1k, on Gaussian and on clustered embeddings
  (100 tight clusters): numpy (one GEMV per pick), jaxal plain with one pick per step and
  with the default lookahead, pruned, bf16 storage.
* `kcenter_mnist`: the same on the 512-wide penultimate features of a small CNN trained one
  epoch on the MNIST test set (`../shared/data/mnist_test`; skipped when absent): n=10,000
  (the whole test set), d=512, 1k labeled, budget 1k.
* `kcenter_1m`: n=1M, d=128, budget 1k.
* `bald`: T=100 MC-dropout on 10k 28x28 images with `small_cnn`: the full path on a model
  with dropout after every block (T whole forward passes, as BaaL runs them) against the
  head-only path on the same network with dropout only before the classifier.
* `badge`: n=10k, C=10, d=512, budget 1k: factorized numpy against jaxal.

Issue 29's acquisitions, against their peers on the same input (the peers run in their own
venvs, `--bbald-python` and `--typiprob-python`, in subprocesses); these sections call the
functions of `acq_batchbald.py`, `acq_typiclust_probcover.py` and `acq_cluster_margin.py`, whose
module docs say what is measured and what agreement means. Their rows keep their own fields
(`method`, `objective`/`agreement`, `same_picks`, ...) with `kernel` = `method`:

* `batchbald`: T=100, n=10k, C=10, batch 100, against BaaL (compare objectives, not picks);
* `epig`: T=100, n=10k, C=10, 100 targets, against BaaL;
* `typiclust`: 50k x 512 against scikit-activeml;
* `probcover`: 15k x 512 against scikit-activeml, and jaxal alone at 50k x 512 (peak RSS);
* `cluster_margin`: 1M x 128 with a 100k batch (clustering, selection, peak RSS), stochastic
  and class-balanced top-k on that pool, and exact HAC on 50k x 128 (time, peak RSS growth).

    python benchmarks/selection.py --section all --json bench_out/selection.json   # everything
    python benchmarks/selection.py --section epig --section cluster_margin --json FILE
"""

import argparse
import gzip
import json
import os
import resource
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from jaxal import acquisition, models  # noqa: E402
from jaxal.inference import Predictor  # noqa: E402

MNIST = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "data",
                     "mnist_test")


SECTIONS = ("kcenter", "kcenter_mnist", "kcenter_1m", "bald", "badge", "batchbald", "epig", "typiclust", "probcover",
            "cluster_margin")


def rss_mb() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakMemory:
  """Largest RSS growth over the value at entry, sampled every 2 ms."""

  def __enter__(self):
    self.base = self.peak = rss_mb()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()
    return self

  def _run(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, rss_mb())
      time.sleep(0.002)

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, rss_mb())

  @property
  def growth(self) -> float:
    return self.peak - self.base


# Seconds to wait before each timed call. numpy's OpenBLAS worker threads keep spinning for
# about 0.1 s after a BLAS call (and XLA's for a shorter while), so a call started at once
# shares the two cores with them: jaxal's MNIST k-center took 0.10-0.12 s right after the
# numpy reference against 0.06-0.08 s after a pause. The pause busy-waits: after a sleep the
# first milliseconds of the next call ran slower on this VM (NOTES §7g).
SETTLE = 0.25


def settle():
  end = time.perf_counter() + SETTLE
  while time.perf_counter() < end:
    pass


def timed(fn, repeats, warmup=True):
  """(median seconds, peak RSS growth MB, last output)."""
  if warmup:
    fn()
  times, peaks = [], []
  for _ in range(repeats):
    settle()
    with PeakMemory() as mem:
      t0 = time.perf_counter()
      out = jax.block_until_ready(fn())
      times.append(time.perf_counter() - t0)
    peaks.append(mem.growth)
  return float(np.median(times)), float(max(peaks)), out


def timed_alternating(fns, repeats):
  """`timed` for several callables run in turn, repeat by repeat (each warmed up first), so
  that a machine whose speed drifts during the run affects them alike. A list of
  (median seconds, peak RSS growth MB, last output)."""
  for fn in fns:
    fn()
  times, peaks, outs = [[] for _ in fns], [[] for _ in fns], [None] * len(fns)
  for _ in range(repeats):
    for i, fn in enumerate(fns):
      settle()
      with PeakMemory() as mem:
        t0 = time.perf_counter()
        outs[i] = jax.block_until_ready(fn())
        times[i].append(time.perf_counter() - t0)
      peaks[i].append(mem.growth)
  return [(float(np.median(t)), float(max(m)), o) for t, m, o in zip(times, peaks, outs)]


# ----------------------------------------------------------------------------- references


def numpy_kcenter(x, labeled, budget, block=1024, rows=16384):
  """Well-written numpy greedy k-center: blocked GEMM init (`rows` x `block` tiles, so
  memory stays bounded), then one GEMV per pick with in-place updates."""
  xx = np.einsum("ij,ij->i", x, x)
  min_d2 = np.full(x.shape[0], np.inf, np.float32)
  idx = np.flatnonzero(labeled)
  for s in range(0, idx.size, block):
    c = x[idx[s:s + block]]
    cc = np.einsum("ij,ij->i", c, c)
    for r in range(0, x.shape[0], rows):
      d2 = x[r:r + rows] @ c.T
      d2 *= -2
      d2 += xx[r:r + rows, None]
      d2 += cc[None, :]
      np.minimum(min_d2[r:r + rows], d2.min(1), out=min_d2[r:r + rows])
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
  """Factorized numpy BADGE: k-means++ D^2 sampling with two GEMVs per center."""
  rng = np.random.default_rng(seed)
  a = p - np.eye(p.shape[1], dtype=p.dtype)[p.argmax(1)]
  na, nh = (a * a).sum(1), (h * h).sum(1)
  nanh = na * nh
  cand = ~labeled
  first = int(np.argmax(np.where(cand, nanh, -np.inf)))
  d2 = np.maximum(nanh + nanh[first] - 2 * (a @ a[first]) * (h @ h[first]), 0)
  chosen = np.zeros(len(p), bool)
  chosen[first] = True
  picks = [first]
  for _ in range(budget - 1):
    w = np.where(cand & ~chosen, d2, 0)
    cdf = np.cumsum(w, dtype=np.float64)
    j = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    picks.append(j)
    chosen[j] = True
    np.minimum(d2, np.maximum(nanh + nanh[j] - 2 * (a @ a[j]) * (h @ h[j]), 0), out=d2)
  return np.array(picks)


# ----------------------------------------------------------------------------- data


def clustered(n, d, clusters, rng):
  """A mixture of tight Gaussian clusters: centers N(0, 10^2), spread 0.1 per coordinate."""
  centers = rng.normal(size=(clusters, d)).astype(np.float32) * 10
  return centers[rng.integers(0, clusters, n)] + rng.normal(size=(n, d)).astype(np.float32) * 0.1


def mnist_features(epochs, rng, embed=512):
  """Penultimate `small_cnn` features (width `embed`) of the MNIST test set after `epochs`
  of Adam on it."""
  with gzip.open(os.path.join(MNIST, "t10k-images-idx3-ubyte.gz")) as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
  with gzip.open(os.path.join(MNIST, "t10k-labels-idx1-ubyte.gz")) as f:
    labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int32)
  x = images.astype(np.float32) / 255.0
  model = models.create("small_cnn", 10, embed=embed)
  variables = models.init_variables(model, jax.random.key(0), (1, 28, 28, 1))
  tx = optax.adam(1e-3)
  opt = tx.init(variables["params"])

  @jax.jit
  def step(variables, opt, xb, yb):
    def loss_fn(params):
      (logits, _), new = model.apply({**variables, "params": params}, xb, train=True, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), new
    (loss, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    updates, opt = tx.update(grads, opt, variables["params"])
    return {"params": optax.apply_updates(variables["params"], updates), **new}, opt, loss

  for _ in range(epochs):
    order = rng.permutation(len(x))
    for s in range(0, len(x) - 127, 128):
      b = order[s:s + 128]
      variables, opt, loss = step(variables, opt, x[b], labels[b])
  embed = jax.jit(lambda v, xb: model.apply(v, xb)[1])
  feats = np.concatenate([np.asarray(embed(variables, x[s:s + 500])) for s in range(0, len(x), 500)])
  return feats, float(loss)


def identity(v):
  return v


# ----------------------------------------------------------------------------- main


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--json", default="")
  parser.add_argument("--skip", default="", help="comma list of sections not to run")
  parser.add_argument("--section", action="append", choices=SECTIONS + ("all",),
                      help="run only these sections (repeatable; default: all)")
  parser.add_argument("--bbald-python", default="/work/peervenv_bbald/bin/python", help="BaaL's venv")
  parser.add_argument("--typiprob-python", default="/work/peervenv_typiprob/bin/python", help="scikit-activeml's venv")
  args = parser.parse_args()
  chosen = set(SECTIONS) if not args.section or "all" in args.section else set(args.section)
  skip = set(SECTIONS) - chosen | set(filter(None, args.skip.split(",")))
  q = args.quick
  rng = np.random.default_rng(0)
  records = []

  def add(kernel, impl, size, seconds, peak_mb, **extra):
    records.append({"kernel": kernel, "implementation": impl, "size": size, "seconds": round(seconds, 4),
                    "peak_mb": round(peak_mb, 1), **extra})
    notes = " ".join(f"{k}={v}" for k, v in extra.items())
    print(f"{kernel:<14} {impl:<26} {size:<36} {seconds:>9.3f} s {peak_mb:>8.1f} MB  {notes}", flush=True)

  print(f"{'kernel':<14} {'implementation':<26} {'size':<36} {'time':>11} {'peak':>11}  notes")

  def kcenter_suite(kernel, x, labeled, b, size, repeats):
    # numpy, plain and pruned run in turn, repeat by repeat: their ratios are the targets, and
    # this machine's speed drifted between back-to-back sections (numpy's MNIST time ranged
    # 0.27-0.46 s between runs).
    (t_np, m_np, p_np), (t_f, m_f, (p_f, st_f)), (t_p, m_p, (p_p, st)) = timed_alternating(
        [lambda: numpy_kcenter(x, labeled, b), lambda: acquisition.kcenter_greedy(x, labeled, b, with_stats=True),
         lambda: acquisition.kcenter_greedy(x, labeled, b, prune=True, with_stats=True)], repeats)
    add(kernel, "numpy (GEMV per pick)", size, t_np, m_np)
    t_1, m_1, p_1 = timed(lambda: acquisition.kcenter_greedy(x, labeled, b, lookahead=1), repeats)
    add(kernel, "jaxal f32, one pick/step", size, t_1, m_1, vs_numpy=round(t_1 / t_np, 3),
        same_picks_as_numpy=round(float(np.mean(p_np == p_1)), 3))
    add(kernel, "jaxal f32", size, t_f, m_f, vs_numpy=round(t_f / t_np, 3), identical_to_one_pick=bool((p_f == p_1).all()),
        steps=st_f["steps"])
    add(kernel, "jaxal f32 pruned", size, t_p, m_p, vs_numpy=round(t_p / t_np, 3), vs_plain=round(t_p / t_f, 3),
        identical_to_plain=bool((p_p == p_f).all()), rows_read=round(st["fraction_read"], 4), screened=st["screened"])
    if not st["screened"]:  # the probe chose the plain update: also time the screened steps
      t_t, m_t, (p_t, st_t) = timed(
          lambda: acquisition.kcenter_greedy(x, labeled, b, prune=True, probes=0, with_stats=True), repeats)
      add(kernel, "jaxal f32 pruned, screen forced", size, t_t, m_t, vs_numpy=round(t_t / t_np, 3),
          vs_plain=round(t_t / t_f, 3), identical_to_plain=bool((p_t == p_f).all()),
          rows_read=round(st_t["fraction_read"], 4))
    bf = jnp.bfloat16
    t_b, m_b, p_b = timed(lambda: acquisition.kcenter_greedy(x, labeled, b, storage_dtype=bf), repeats)
    add(kernel, "jaxal bf16", size, t_b, m_b, vs_numpy=round(t_b / t_np, 3),
        picks_not_in_f32_set=round(float(np.mean(~np.isin(p_b, p_f))), 4),
        picks_differing_in_order=round(float(np.mean(p_b != p_f)), 4))
    t_bp, m_bp, (p_bp, st) = timed(
        lambda: acquisition.kcenter_greedy(x, labeled, b, storage_dtype=bf, prune=True, with_stats=True), repeats)
    add(kernel, "jaxal bf16 pruned", size, t_bp, m_bp, vs_numpy=round(t_bp / t_np, 3),
        identical_to_bf16_plain=bool((p_bp == p_b).all()), rows_read=round(st["fraction_read"], 4),
        screened=st["screened"])

  if "kcenter" not in skip:
    n, d, num_labeled, b = (5000, 64, 100, 100) if q else (50000, 512, 1000, 1000)
    for kind in ("gaussian", "clustered"):
      x = rng.normal(size=(n, d)).astype(np.float32) if kind == "gaussian" else clustered(n, d, 100, rng)
      labeled = np.zeros(n, bool)
      labeled[rng.choice(n, num_labeled, replace=False)] = True
      kcenter_suite("kcenter", x, labeled, b, f"n={n} d={d} L={num_labeled} b={b} {kind}", args.repeats)
      del x
  if "kcenter_mnist" not in skip and os.path.isdir(MNIST):
    t0 = time.perf_counter()
    feats, loss = mnist_features(1, rng)
    print(f"(mnist small_cnn: 1 epoch, last loss {loss:.3f}, {time.perf_counter() - t0:.0f} s)", flush=True)
    # The k-center setting (d=512, 1,000 labeled, budget 1,000) on all 10,000 points.
    n, num_labeled, b = (2000, 100, 100) if q else (len(feats), 1000, 1000)
    labeled = np.zeros(n, bool)
    labeled[rng.choice(n, num_labeled, replace=False)] = True
    kcenter_suite("kcenter", feats[:n], labeled, b, f"n={n} d={feats.shape[1]} L={num_labeled} b={b} mnist",
                  args.repeats)
  if "kcenter_1m" not in skip:
    n, d, b = (100000, 128, 100) if q else (1000000, 128, 1000)
    x = rng.normal(size=(n, d)).astype(np.float32)
    labeled = np.zeros(n, bool)
    labeled[rng.choice(n, 1000, replace=False)] = True
    size = f"n={n} d={d} L=1000 b={b} gaussian"
    t_np, m_np, p_np = timed(lambda: numpy_kcenter(x, labeled, b), 1, warmup=False)
    add("kcenter", "numpy (GEMV per pick)", size, t_np, m_np)
    t, m, p = timed(lambda: acquisition.kcenter_greedy(x, labeled, b), 1)
    add("kcenter", "jaxal f32", size, t, m, vs_numpy=round(t / t_np, 3), input_mb=round(x.nbytes / 2**20, 1))
    del x
  if "bald" not in skip:
    n, t_passes = (500, 20) if q else (10000, 100)
    images = jnp.asarray(rng.normal(size=(n, 28, 28, 1)).astype(np.float32))
    size = f"n={n} 28x28 T={t_passes} small_cnn"
    variants = (("full (dropout every block)", 0.25, False, 100, 1),
                ("head-only", 0.0, True, 1000, args.repeats),
                ("full path, head dropout only", 0.0, False, 1000, 1))
    full_seconds = None
    for impl, block_dropout, head, chunk, repeats in variants:
      model = models.create("small_cnn", 10, dropout=0.5, block_dropout=block_dropout)
      variables = models.init_variables(model, jax.random.key(0), (1, 28, 28, 1))

      def run(model=model, variables=variables, head=head, chunk=chunk, rows=n):
        pred = Predictor(model, variables, images[:rows], identity, chunk_size=chunk)
        return pred.mc_statistics(t_passes, jax.random.key(1), head_only=head)["mean_probs"]

      run(rows=chunk)  # compiles (one chunk shape whatever the pool size)
      secs, mem, _ = timed(run, repeats, warmup=False)
      full_seconds = full_seconds or secs
      add("bald", impl, size, secs, mem, full_over_this=round(full_seconds / secs, 1),
          image_passes_per_s=round(n * t_passes / secs))
  if "badge" not in skip:
    n, c, d, b = (2000, 10, 128, 200) if q else (10000, 10, 512, 1000)
    logits = rng.normal(size=(n, c)).astype(np.float32) * 3
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    h = rng.normal(size=(n, d)).astype(np.float32)
    labeled = np.zeros(n, bool)
    labeled[:100] = True
    size = f"n={n} C={c} d={d} b={b}"
    (t_np, m_np, _), (t_jx, m_jx, _) = timed_alternating(
        [lambda: numpy_badge(p, h, labeled, b), lambda: acquisition.badge(p, h, labeled, b, jax.random.key(0))],
        args.repeats)
    add("badge", "numpy factorized", size, t_np, m_np)
    add("badge", "jaxal", size, t_jx, m_jx, vs_numpy=round(t_jx / t_np, 3),
        materialized_gradients_mb=round(n * c * d * 4 / 2**20, 1))
  acquisition_sections(q, skip, args, records)
  print(f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(records, f, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def acquisition_sections(quick, skip, args, records):
  """Issue 29's sections (see the module doc): each acq_*.py script's rows, `kernel` = `method`."""
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  rows = []
  methods = tuple(m for m in ("batchbald", "epig") if m not in skip)
  if methods:
    import acq_batchbald
    rows += acq_batchbald.bench(quick, args.bbald_python, methods=methods)
  parts = {"typiclust"} - skip | ({"probcover", "probcover50k"} if "probcover" not in skip else set())
  if parts:
    import acq_typiclust_probcover
    rows += acq_typiclust_probcover.bench(quick, args.typiprob_python, parts)
  if "cluster_margin" not in skip:
    import acq_cluster_margin
    rows += acq_cluster_margin.bench(quick)
  for row in rows:
    records.append({"kernel": row["method"], **row})
    notes = " ".join(f"{k}={v}" for k, v in row.items() if k not in ("method", "implementation", "size", "seconds"))
    print(f"{row['method']:<14} {row['implementation']:<26} {str(row['size']):<36} {row['seconds']:>9.3f} s  {notes}",
          flush=True)


if __name__ == "__main__":
  main()
