"""SVP's Table 1 from run directories: data-selection speed-up, final target accuracy, agreement.

    python -m jaxal.svp_report --baseline runs/base_s0 runs/base_s1 --proxy runs/proxy_s0 runs/proxy_s1

Each `--proxy` group (repeat the flag for several proxies) is compared with the baseline
(where the target selects its own data). Seeds of one setting go in one flag. The speed-up is
mean baseline selection runtime / mean proxy selection runtime (`metrics.selection_runtime`:
selection-model training plus scoring and ranking, final target training excluded). A final
error within one standard deviation of the baseline's is shown in bold, as in the paper.
"""

import argparse
import pathlib

import numpy as np

from jaxal import metrics
from jaxal.checkpoint import run_files


def final_target_accuracy(history: list[dict]) -> float:
  """The target's accuracy on the final labeled set (the model's own in baseline runs)."""
  last = history[-1]
  return float(last.get("target_test_accuracy", last["test_accuracy"]))


def summarize(workdirs: list[str]) -> dict:
  runs = [run_files.read_rounds(w) for w in workdirs]
  for w, h in zip(workdirs, runs):
    if not h:
      raise SystemExit(f"{w}: no rounds.jsonl (is the run finished?)")
  rho = [r["spearman"] for h in runs for r in h if r.get("spearman") is not None and np.isfinite(r["spearman"])]
  overlap = [r["topk_overlap"] for h in runs for r in h if r.get("topk_overlap") is not None]
  acc = np.array([final_target_accuracy(h) for h in runs])
  return {
      "name": pathlib.Path(workdirs[0]).name,
      "seeds": len(runs),
      "labels": runs[0][-1]["num_labeled"],
      "selection_seconds": float(np.mean([metrics.selection_runtime(h) for h in runs])),
      "target_accuracy": float(acc.mean()),
      "target_accuracy_std": float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
      "selection_architecture": runs[0][0]["architecture"],
      "target_architecture": runs[0][-1].get("target_architecture", runs[0][-1]["architecture"]),
      "mean_spearman": float(np.mean(rho)) if rho else float("nan"),
      "mean_topk_overlap": float(np.mean(overlap)) if overlap else float("nan"),
  }


def table(baseline: dict, proxies: list[dict]) -> str:
  rows = ["| run | selection model | target | labels | selection time (s) | speed-up | target error (%) "
          "| mean Spearman | top-b overlap |", "|---|---|---|---|---|---|---|---|---|"]
  for s in [baseline] + proxies:
    err = 100 * (1 - s["target_accuracy"])
    err_text = f"{err:.2f}" + (f" ± {100 * s['target_accuracy_std']:.2f}" if s["seeds"] > 1 else "")
    within = abs(s["target_accuracy"] - baseline["target_accuracy"]) <= max(baseline["target_accuracy_std"], 0.0)
    if s is not baseline and within and baseline["seeds"] > 1:
      err_text = f"**{err_text}**"
    speedup = baseline["selection_seconds"] / s["selection_seconds"]
    rows.append(f"| {s['name']} | {s['selection_architecture']} | {s['target_architecture']} | {s['labels']} "
                f"| {s['selection_seconds']:.1f} | {speedup:.2f}x | {err_text} | {s['mean_spearman']:.3f} "
                f"| {s['mean_topk_overlap']:.3f} |")
  return "\n".join(rows)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--baseline", nargs="+", required=True, help="baseline run dirs (one per seed)")
  parser.add_argument("--proxy", nargs="+", action="append", required=True, help="proxy run dirs (one per seed)")
  args = parser.parse_args(argv)
  print(table(summarize(args.baseline), [summarize(p) for p in args.proxy]))


if __name__ == "__main__":
  main()
