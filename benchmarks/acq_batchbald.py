"""BatchBALD and EPIG: jaxal against BaaL on the same MC probabilities.

  python benchmarks/acq_batchbald.py [--quick] [--json FILE] [--peer-python PATH] [--peer-candidates N]
      [--only batchbald|epig]
  python benchmarks/selection.py --section batchbald --section epig --json FILE   # the same rows

Inputs: random (T, n, C) MC-dropout-like probabilities (per-point base logits plus per-pass noise
of a per-point scale). BaaL runs in its own venv (`--peer-python`, default
/work/peervenv_bbald/bin/python: `pip install torch==2.13.0 baal`), in a subprocess, through
.npz files in /tmp.

BatchBALD: both sample joint entropies with M = T * num_draw configurations (BaaL's estimator,
which BaaL uses from the second pick on; jaxal's is exact while C^k <= M). BaaL's picks are not
ours (its samples differ), so agreement is the joint mutual information of each batch under one
estimator (`joint_mi_estimate`: the same 20000 stratified draws for both, float64). BaaL's run on
the full pool can be limited to the `--peer-candidates` highest-BALD points (the table says so).
EPIG: scores against the same 100 target points; agreement = max |score difference| and
whether the top-`budget` picks are equal.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

PEER_PYTHON = "/work/peervenv_bbald/bin/python"

PEER = textwrap.dedent("""
  import sys, time, numpy as np, torch
  from baal.active.heuristics import BatchBALD, EPIG
  data = np.load(sys.argv[1])
  out = {}
  probs = np.ascontiguousarray(data["probs"].transpose(1, 2, 0)).astype(np.float64)  # BaaL: [n, C, T]
  rows = data["peer_rows"]
  if data["run_batchbald"]:
    h = BatchBALD(num_samples=int(data["budget"]) - 1, num_draw=int(data["num_draw"]))  # it adds 1 pick
    t0 = time.perf_counter()
    u = h.compute_score(probs[rows])
    out["batchbald_seconds"] = time.perf_counter() - t0
    out["batchbald_picks"] = rows[np.flatnonzero(u)]
  if data["run_epig"]:
    target = probs[data["targets"]]
    t0 = time.perf_counter()
    out["epig_scores"] = EPIG().compute_score(probs, target)
    out["epig_seconds"] = time.perf_counter() - t0
  np.savez(sys.argv[2], **out)
""")


def make_probs(t, n, c, seed=0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(n, c)) * 3 + rng.normal(size=(t, n, c)) * rng.uniform(0.2, 2.0, size=(n, 1))
  p = np.exp(logits - logits.max(-1, keepdims=True))
  return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def joint_mi_estimate(probs, picks, num_draws=20000, seed=123):
  """I(y_S; w) = H(y_S) - sum E_w H(y_i|w), H(y_S) ~ -mean log p(y_S) over stratified draws (float64)."""
  p = np.asarray(probs, np.float64)[:, np.asarray(picks)]  # (T, k, C)
  t, k, c = p.shape
  rng = np.random.default_rng(seed)
  per_w = num_draws // t
  owner = np.repeat(np.arange(t), per_w)
  logp = np.zeros((t, owner.size))
  for i in range(k):
    u = rng.random(owner.size)
    y = (np.cumsum(p[owner, i], -1) < u[:, None]).sum(-1).clip(max=c - 1)
    logp += np.log(p[:, i, y])
  log_joint = np.logaddexp.reduce(logp, axis=0) - np.log(t)
  cond = -np.sum(p * np.log(np.maximum(p, 1e-300))) / t
  return float(-log_joint.mean() - cond), float(log_joint.std() / np.sqrt(owner.size))


def run_jaxal(probs, budget, num_samples, targets, methods=("batchbald", "epig")):
  import jax
  import jax.numpy as jnp
  import importlib
  bb = importlib.import_module("jaxal.acquisition.batchbald")  # the package exports the function
  from jaxal.acquisition import epig
  p = jnp.asarray(probs)
  picks = scores = None
  times = {}
  for label in ("cold", "warm") if "batchbald" in methods else ():
    t0 = time.perf_counter()
    picks = np.asarray(jax.device_get(bb.batchbald(p, budget, num_samples=num_samples, key=jax.random.key(0))))
    times[f"batchbald_{label}"] = time.perf_counter() - t0
  for label in ("cold", "warm", "warm") if "epig" in methods else ():  # best of two warm calls
    t0 = time.perf_counter()
    scores = np.asarray(jax.device_get(epig.epig_scores(p, p[:, targets])))
    times[f"epig_{label}"] = min(times.get(f"epig_{label}", np.inf), time.perf_counter() - t0)
  return picks, scores, times


def run_peer(python, probs, budget, num_draw, targets, peer_rows, run_batchbald=True, run_epig=True):
  with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
    inp, out, script = (os.path.join(tmp, f) for f in ("in.npz", "out.npz", "peer.py"))
    np.savez(inp, probs=probs, budget=budget, num_draw=num_draw, targets=targets, peer_rows=peer_rows,
             run_batchbald=run_batchbald, run_epig=run_epig)
    with open(script, "w") as f:
      f.write(PEER)
    subprocess.run([python, script, inp, out], check=True)
    return dict(np.load(out))


def bench(quick=False, peer_python=PEER_PYTHON, peer_candidates=0, num_draw=10, methods=("batchbald", "epig")):
  """The JSON rows for `methods` (see the module doc); BaaL runs only what is asked."""
  t, n, c, budget = (20, 1000, 10, 10) if quick else (100, 10000, 10, 100)
  probs = make_probs(t, n, c)
  targets = np.random.default_rng(1).choice(n, 100, replace=False)
  m = t * num_draw
  picks, scores, times = run_jaxal(probs, budget, m, targets, methods)
  p64 = probs.astype(np.float64)
  bald = -(p64.mean(0) * np.log(p64.mean(0))).sum(-1) + (p64 * np.log(p64)).sum(-1).mean(0)
  peer_rows = np.sort(np.argsort(-bald)[:peer_candidates]) if peer_candidates else np.arange(n)
  peer = run_peer(peer_python, probs, budget, num_draw, targets, peer_rows, run_batchbald="batchbald" in methods,
                  run_epig="epig" in methods)
  rows = []
  if "batchbald" in methods:
    size = f"T={t} n={n} C={c} b={budget} M={m}"
    peer_size = size if not peer_candidates else f"{size} (BaaL on top-{peer_candidates} BALD)"
    ours_mi, ours_se = joint_mi_estimate(probs, picks)
    peer_picks = peer["batchbald_picks"]
    peer_mi, peer_se = joint_mi_estimate(probs, peer_picks)
    rows += [
        dict(method="batchbald", implementation="jaxal (warm)", size=size, seconds=times["batchbald_warm"],
             objective=ours_mi, objective_se=ours_se, picks=len(picks),
             speedup_vs_baal=float(peer["batchbald_seconds"]) / times["batchbald_warm"]),
        dict(method="batchbald", implementation="jaxal (cold, incl. compile)", size=size,
             seconds=times["batchbald_cold"], objective=ours_mi, objective_se=ours_se, picks=len(picks)),
        dict(method="batchbald", implementation="baal", size=peer_size, seconds=float(peer["batchbald_seconds"]),
             objective=peer_mi, objective_se=peer_se, picks=len(peer_picks))]
  if "epig" in methods:
    size = f"T={t} n={n} C={c} targets=100"
    top_ours = set(np.argsort(-scores, kind="stable")[:budget].tolist())
    top_peer = set(np.argsort(-peer["epig_scores"], kind="stable")[:budget].tolist())
    rows += [
        dict(method="epig", implementation="jaxal (warm)", size=size, seconds=times["epig_warm"],
             agreement=float(np.abs(scores - peer["epig_scores"]).max()), same_top_picks=top_ours == top_peer,
             speedup_vs_baal=float(peer["epig_seconds"]) / times["epig_warm"]),
        dict(method="epig", implementation="jaxal (cold, incl. compile)", size=size, seconds=times["epig_cold"]),
        dict(method="epig", implementation="baal", size=size, seconds=float(peer["epig_seconds"]))]
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="T=20, n=1000, batch 10")
  parser.add_argument("--json", help="write the rows here")
  parser.add_argument("--peer-python", default=PEER_PYTHON)
  parser.add_argument("--peer-candidates", type=int, default=0, help="BaaL's BatchBALD on the top-N BALD points")
  parser.add_argument("--num-draw", type=int, default=10, help="BaaL's num_draw; M = T * num_draw for both")
  parser.add_argument("--only", choices=("batchbald", "epig"), action="append")
  args = parser.parse_args(argv)
  rows = bench(args.quick, args.peer_python, args.peer_candidates, args.num_draw, tuple(args.only or ("batchbald", "epig")))
  print(f"{'method':10} {'implementation':28} {'seconds':>9}  size / agreement")
  for r in rows:
    extra = {k: v for k, v in r.items() if k not in ("method", "implementation", "seconds")}
    print(f"{r['method']:10} {r['implementation']:28} {r['seconds']:9.3f}  {extra}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))


if __name__ == "__main__":
  main()
