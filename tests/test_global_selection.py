"""Selection on pool arrays spread over cooperating processes equals one process's selection.

Each of N CPU processes (JAX's multi-controller runtime, one device each) builds the global
scores, logits and embeddings from its own share of the rows (`global_arrays.global_rows`,
the pool padded to a multiple of N), runs jaxal's top-k, stochastic and class-balanced
top-k, k-center and BADGE kernels and the registry's least confidence, coreset and BADGE on
them, and writes its picks (TypiClust and Cluster-Margin, which cluster on the host, must
refuse). The parent compares them with numpy references (BADGE: with the kernel run here
in one process on the whole arrays). The scores hold ties across the shards' boundaries
(small integers, -0.0 beside 0.0, repeated logit and embedding rows), so the tie rule (the
lower global index wins) is checked across processes.

Run as a script (`python tests/test_global_selection.py PROCESS_ID NUM_PROCESSES PORT OUT`),
this file is one of the cooperating processes.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
N = 203  # not a multiple of 2 or 4: the last share holds padding rows
BUDGET = 20
KCENTER_BUDGET, BADGE_BUDGET = 25, 15


def problem(n: int = N):
  """The same random pool in every process: scores with ties, a selectable mask, logits
  and embeddings with repeated rows in different shards."""
  rng = np.random.default_rng(7)
  scores = rng.integers(0, 6, n).astype(np.float32)
  scores[rng.random(n) < 0.2] = -0.0  # -0.0 ties with 0.0
  selectable = rng.random(n) > 0.2
  logits = rng.normal(size=(n, 5)).astype(np.float32)
  logits[150:170] = logits[10:30]  # equal least-confidence scores in both halves
  embeddings = rng.normal(size=(n, 12)).astype(np.float32)
  embeddings[160:175] = embeddings[40:55]  # equal distances in both halves
  labeled = np.zeros(n, bool)
  labeled[rng.choice(n, 6, replace=False)] = True
  return dict(scores=scores, selectable=selectable, logits=logits, embeddings=embeddings, labeled=labeled)


class ArrayPredictor:
  """A predictor over fixed arrays: what the registry's acquisitions read."""

  def __init__(self, logits, embeddings, probs):
    self._outputs, self._probs = (logits, embeddings), probs

  def outputs(self):
    return self._outputs

  def probs(self):
    return self._probs


def selections(p, scores, logits, embeddings, probs, key, only_top_k: bool = False):
  """Every selection under test, on host or global arrays; `{name: picks}`."""
  import jax  # pylint: disable=import-outside-toplevel
  from jaxal import acquisition  # pylint: disable=import-outside-toplevel
  from jaxal.acquisition import base, class_balance, stochastic  # pylint: disable=import-outside-toplevel
  out = {"top_k": base.top_k_selectable(scores, p["selectable"], BUDGET),
         "top_k_all": base.top_k_selectable(scores, p["selectable"], int(p["selectable"].sum()))}
  if only_top_k:
    return out
  labeled = p["labeled"]
  view = acquisition.PoolView(labeled, ~labeled, ArrayPredictor(logits, embeddings, probs))
  predicted = jax.numpy.argmax(probs, axis=-1)
  out.update(
      stochastic=stochastic.stochastic_top_k(scores, p["selectable"], BUDGET, key, mode="softmax"),
      class_balanced=class_balance.class_balanced_top_k(scores, predicted, p["selectable"], BUDGET, 5),
      kcenter=acquisition.kcenter_greedy(embeddings, labeled, KCENTER_BUDGET),
      kcenter_no_labels=acquisition.kcenter_greedy(embeddings, np.zeros_like(labeled), KCENTER_BUDGET),
      badge=acquisition.badge(probs, embeddings, labeled, BADGE_BUDGET, key),
      least_confidence=acquisition.acquire("least_confidence", view, BUDGET, key),
      coreset=acquisition.acquire("coreset", view, KCENTER_BUDGET, key),
      badge_acquire=acquisition.acquire("badge", view, BADGE_BUDGET, key))
  from jaxal.config import ConfigError  # pylint: disable=import-outside-toplevel
  for name in ("typiclust", "cluster_margin"):  # k-means / HAC on the host: refused, not wrong
    try:
      acquisition.acquire(name, view, BUDGET, key)
    except ConfigError as e:
      out[name] = str(e).split(";")[0]
  return out


def worker(process_id: int, num_processes: int, port: int, out: str) -> None:
  """One cooperating process: global arrays from its own shares, then every selection."""
  import jax  # pylint: disable=import-outside-toplevel
  jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=num_processes,
                             process_id=process_id)
  from jaxal import global_arrays, parallel  # pylint: disable=import-outside-toplevel
  mesh = parallel.make_mesh()
  p = problem()
  start, stop, padded = global_arrays.process_rows(N, mesh)
  assert (start, stop) == (process_id * padded // num_processes, (process_id + 1) * padded // num_processes)
  share = lambda x: global_arrays.global_rows(x[start:min(stop, N)], N, mesh)
  scores, logits, embeddings = share(p["scores"]), share(p["logits"]), share(p["embeddings"])
  assert scores.shape == (padded,) and not scores.is_fully_addressable
  probs = jax.nn.softmax(logits, axis=-1)  # global, computed where the rows are
  key = jax.random.key(3)
  with jax.transfer_guard("disallow"):  # as in the loop's selection: explicit transfers only
    picks = selections(p, scores, logits, embeddings, probs, key, only_top_k=num_processes > 2)
  pathlib.Path(out).write_text(json.dumps({k: np.asarray(v).tolist() for k, v in picks.items()}))
  jax.distributed.shutdown()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def run_processes(num_processes: int, tmp_path) -> list[dict]:
  port = _free_port()
  # Most XLA passes off (as the `fast_compiles` fixture): compiling is most of a worker's time,
  # and the partitioning over processes, which is under test, runs all the same.
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), JAX_DISABLE_MOST_OPTIMIZATIONS="1",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  env.pop("JAXAL_DISTRIBUTED", None)
  outs = [tmp_path / f"picks_{num_processes}_{i}.json" for i in range(num_processes)]
  procs = [subprocess.Popen([sys.executable, __file__, str(i), str(num_processes), str(port), str(outs[i])],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(num_processes)]
  try:
    logs = [proc.communicate(timeout=240)[0] for proc in procs]
  finally:  # one process failing leaves the others waiting in a collective
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  for proc, log in zip(procs, logs):
    assert proc.returncode == 0, log[-4000:]
  return [json.loads(out.read_text()) for out in outs]


def numpy_top_k(scores, selectable, budget):
  return np.argsort(-np.where(selectable, scores.astype(np.float64), -np.inf), kind="stable")[:budget]


def numpy_kcenter(x, labeled, budget):
  """Farthest-first traversal in float64 (without labels the first pick is the point farthest
  from the mean, which is no center)."""
  x = x.astype(np.float64)
  d = (np.min(((x[:, None] - x[labeled][None]) ** 2).sum(-1), axis=1) if labeled.any()
       else ((x - x.mean(0)) ** 2).sum(-1))
  d[labeled] = -np.inf
  picks = []
  for _ in range(budget):
    j = int(np.argmax(d))
    picks.append(j)
    to_j = ((x - x[j]) ** 2).sum(-1)
    d = np.minimum(d, to_j) if labeled.any() or len(picks) > 1 else to_j
    d[picks] = -np.inf
  return np.array(picks)


def numpy_class_balanced(scores, predicted, selectable, budget):
  """Round robin over the predicted classes, each ranked by (score desc, index asc)."""
  scores = np.where(scores == 0, 0.0, scores).astype(np.float64)
  ranked = {c: [int(i) for i in np.argsort(-scores, kind="stable") if selectable[i] and predicted[i] == c]
            for c in np.unique(predicted)}
  picks = []
  for r in range(len(scores)):
    row = sorted((-scores[v[r]], v[r]) for v in ranked.values() if len(v) > r)
    picks += [i for _, i in row]
    if len(picks) >= budget:
      return picks[:budget]
  return picks


def test_two_processes_select_as_one(tmp_path):
  # pylint: disable=import-outside-toplevel  (this file is also a worker, which imports after initialize)
  import jax
  from jaxal.acquisition import badge, least_confidence_from_logits, stochastic
  results = run_processes(2, tmp_path)
  assert results[0] == results[1]  # every process has the picks
  p = problem()
  key, unlabeled = jax.random.key(3), ~p["labeled"]
  probs = jax.nn.softmax(p["logits"], axis=-1)
  perturbed = stochastic.perturbed_scores(p["scores"], p["selectable"], key, mode="softmax")[0]
  kcenter = numpy_kcenter(p["embeddings"], p["labeled"], KCENTER_BUDGET).tolist()
  one_process_badge = badge(probs, p["embeddings"], p["labeled"], BADGE_BUDGET, key).tolist()
  assert results[0] == {
      "top_k": numpy_top_k(p["scores"], p["selectable"], BUDGET).tolist(),
      "top_k_all": numpy_top_k(p["scores"], p["selectable"], int(p["selectable"].sum())).tolist(),
      "stochastic": numpy_top_k(np.asarray(perturbed), p["selectable"], BUDGET).tolist(),
      "class_balanced": numpy_class_balanced(p["scores"], np.argmax(p["logits"], 1), p["selectable"], BUDGET),
      "kcenter": kcenter,
      "kcenter_no_labels": numpy_kcenter(p["embeddings"], np.zeros(N, bool), KCENTER_BUDGET).tolist(),
      "badge": one_process_badge,
      "least_confidence": numpy_top_k(np.asarray(least_confidence_from_logits(p["logits"])), unlabeled,
                                      BUDGET).tolist(),
      "coreset": kcenter,
      "badge_acquire": one_process_badge,
      "typiclust": "acquisition.name: 'typiclust' needs the whole pool in one process and does not run on a pool "
                   "spread over processes",
      "cluster_margin": "acquisition.name: 'cluster_margin' needs the whole pool in one process and does not run "
                        "on a pool spread over processes"}
  # the ties do cross the shards' boundary (rows 0-101 | 102-203)
  top = np.array(results[0]["top_k_all"])
  assert len({(p["scores"][i], i < 102) for i in top}) > len({p["scores"][i] for i in top})


def test_four_processes_top_k(tmp_path):
  results = run_processes(4, tmp_path)
  p = problem()
  want = {"top_k": numpy_top_k(p["scores"], p["selectable"], BUDGET).tolist(),
          "top_k_all": numpy_top_k(p["scores"], p["selectable"], int(p["selectable"].sum())).tolist()}
  assert all(r == want for r in results)


if __name__ == "__main__":
  worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
