"""The acquisition x architecture study (feature_space_complexity_dal.md, Focus 1).

    python -m jaxal.study --config=configs/study_mnist_cpu.py --root=runs/study
    python -m jaxal.study --config=configs/study_mnist_cpu.py --root=runs/study --report_only

A study config is a run config plus a `study` section: `models` (name -> model options),
`acquisitions`, `seeds` and optionally `pretrain` (comma lists; pretrain names are
`pretrain.name` values, "none" or "deepcluster", default "none"). The grid expands into one
run per (model, pretrain, acquisition, seed) with its own workdir
`ROOT/<model>/<acquisition>[+<pretrain>]/seed<k>` (no suffix without pretraining); a run
that already finished is skipped and an interrupted one resumes, so rerunning the command
resumes the study. Runs go one after another; with several processes (`--process_index`,
`--num_processes`, or JAX_PROCESS_ID / JAX_NUM_PROCESSES) each takes every N-th run.
The report compares every acquisition with `random` on the same model, pretraining and
seeds: mean labeling efficiency and gain over random across rounds (ALGORITHMS.md §6), as a
markdown table (`ROOT/study.md`, `ROOT/study.csv`) and bar charts (`ROOT/study.png`,
pretrained bars hatched). Resolved ambiguity: the paper does not say which random curve the
pretrained bars are measured against; we hold everything but the acquisition fixed, so
`acq + pretraining` is compared with `random + pretraining`, and pretraining itself (the
"seventh strategy") is the row `random + pretraining` against plain `random`.
"""

import copy
import csv
import dataclasses
import itertools
import os
import pathlib
import sys

from absl import app
from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import ml_collections  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from jaxal import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
from jaxal import config as config_lib  # pylint: disable=g-import-not-at-top
from jaxal import loop  # pylint: disable=g-import-not-at-top
from jaxal import metrics  # pylint: disable=g-import-not-at-top
from jaxal import workdir as workdir_lib  # pylint: disable=g-import-not-at-top


PRETRAINS = ("none", "deepcluster")


@dataclasses.dataclass(frozen=True)
class StudyRun:
  model: str
  acquisition: str
  seed: int
  pretrain: str = "none"

  def workdir(self, root) -> pathlib.Path:
    cell = self.acquisition if self.pretrain == "none" else f"{self.acquisition}+{self.pretrain}"
    return pathlib.Path(root) / self.model / cell / f"seed{self.seed}"


def pretrain_axis(config) -> list[str]:
  """The `study.pretrain` comma list (default "none"); unknown names raise `ConfigError`."""
  names = [p.strip() for p in str(config.study.get("pretrain", "none")).split(",") if p.strip()]
  for p in names:
    if p not in PRETRAINS:
      raise config_lib.ConfigError(f"study.pretrain: unknown pretraining {p!r}; known: {list(PRETRAINS)}")
  if not names:
    raise config_lib.ConfigError("study.pretrain: empty; use 'none', 'deepcluster' or 'none,deepcluster'")
  return names


def expand(config) -> list[StudyRun]:
  """Every (model, pretrain, acquisition, seed) of the grid, in a fixed order."""
  s = config.study
  acquisitions = [a.strip() for a in s.acquisitions.split(",") if a.strip()]
  seeds = [int(v) for v in str(s.seeds).split(",") if v.strip()]
  if "random" not in acquisitions:
    acquisitions = ["random"] + acquisitions  # the reference of every metric
  return [StudyRun(m, a, k, p) for m, p, a, k in
          itertools.product(list(s.models), pretrain_axis(config), acquisitions, seeds)]


def run_config(config, run: StudyRun, root=None):
  """The base run config with this run's model, pretraining, acquisition and seed.

  With `root`, pretrained runs share backbones through `ROOT/pretrained` (one per model and
  seed, not per acquisition) unless the config names its own `pretrain.cache_dir`.
  """
  c = copy.deepcopy(config)
  with c.unlocked():
    del c["study"]
    c.model.name = run.model
    c.model.options = ml_collections.ConfigDict(dict(config.study.models[run.model]))
    c.acquisition.name = run.acquisition
    c.pretrain.name = run.pretrain
    if root is not None and run.pretrain != "none" and not c.pretrain.cache_dir:
      c.pretrain.cache_dir = str(pathlib.Path(root).absolute() / "pretrained")
    c.seed = run.seed
  return c


def is_finished(workdir: pathlib.Path) -> bool:
  if not (workdir / "checkpoints").exists():
    return False
  ckpts = checkpoint_lib.RunCheckpoints(workdir)
  try:
    restored = ckpts.restore()
    return restored is not None and bool(restored[2].get("finished"))
  finally:
    ckpts.close()


def run_study(config, root, *, process_index: int = 0, num_processes: int = 1) -> list[StudyRun]:
  """Runs this process's share of the grid; returns the runs it ran (skipping finished ones)."""
  for run in expand(config):
    config_lib.validate(run_config(config, run))  # every cell is checked before any compute
  ran = []
  for i, run in enumerate(expand(config)):
    if i % num_processes != process_index:
      continue
    workdir = run.workdir(root)
    if is_finished(workdir):
      print(f"[study] {run}: finished, skipped", flush=True)
      continue
    print(f"[study] {run}: running in {workdir}", flush=True)
    loop.run(run_config(config, run, root), workdir)
    ran.append(run)
  return ran


def collect(config, root) -> dict:
  """`{(model, pretrain, acquisition): (sizes, accuracies (seeds, rounds))}` of the finished runs."""
  out = {}
  for run in expand(config):
    rows = workdir_lib.read_rounds(run.workdir(root))
    if rows:
      out.setdefault((run.model, run.pretrain, run.acquisition), []).append(rows)
  curves = {}
  for key, runs in out.items():
    n = min(len(r) for r in runs)
    curves[key] = (np.array([r["num_labeled"] for r in runs[0][:n]]),
                   np.array([[r["test_accuracy"] for r in rows[:n]] for rows in runs]))
  return curves


def report(config, root) -> list[dict]:
  """Writes `study.md`, `study.csv` and `study.png` under `root`; returns the table rows."""
  curves = collect(config, root)
  rows = []
  for (model, pre, acq), (sizes, acc) in curves.items():
    # Everything but the acquisition fixed; pretraining alone is random+pretraining vs random.
    ref = (model, "none", "random") if acq == "random" else (model, pre, "random")
    if (acq == "random" and pre == "none") or ref not in curves:
      continue
    r_sizes, r_acc = curves[ref]
    k = min(len(sizes), len(r_sizes), acc.shape[1], r_acc.shape[1])
    seeds = min(acc.shape[0], r_acc.shape[0])
    le = metrics.labeling_efficiency(sizes[:k], acc[:, :k], r_acc[:, :k])
    gain, gain_std = metrics.gain_over_random(acc[:seeds, :k], r_acc[:seeds, :k])
    rows.append({"model": model, "pretrain": pre, "acquisition": acq, "seeds": int(acc.shape[0]),
                 "reference": "random" if ref[1] == pre else "random (no pretraining)",
                 "labeling_efficiency": float(np.nanmean(le)) if np.isfinite(le).any() else float("nan"),
                 "gain_over_random": float(gain.mean()), "gain_std": float(gain_std.mean()),
                 "final_accuracy": float(acc[:, k - 1].mean())})
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  with open(root / "study.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=["model", "pretrain", "acquisition", "reference", "seeds",
                                           "labeling_efficiency", "gain_over_random", "gain_std", "final_accuracy"])
    writer.writeheader()
    writer.writerows(rows)
  lines = ["| model | pretraining | acquisition | reference | seeds | labeling efficiency | gain over random (pts) "
           "| final accuracy |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['model']} | {r['pretrain']} | {r['acquisition']} | {r['reference']} | {r['seeds']} "
                 f"| {r['labeling_efficiency']:.2f} "
                 f"| {100 * r['gain_over_random']:+.2f} ± {100 * r['gain_std']:.2f} | {r['final_accuracy']:.4f} |")
  (root / "study.md").write_text("\n".join(lines) + "\n")
  if rows:
    _bars(rows, root / "study.png")
  return rows


def _bars(rows, path):
  models = list(dict.fromkeys(r["model"] for r in rows))
  acqs = list(dict.fromkeys(r["acquisition"] for r in rows))
  series = [(a, p) for a in acqs for p in dict.fromkeys(r["pretrain"] for r in rows)
            if any(r["acquisition"] == a and r["pretrain"] == p for r in rows)]
  colors = {a: f"C{i % 10}" for i, a in enumerate(acqs)}
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=110)
  width = 0.8 / len(series)
  for ax, key, title in ((axes[0], "labeling_efficiency", "labeling efficiency"),
                         (axes[1], "gain_over_random", "gain over random (accuracy)")):
    for j, (a, p) in enumerate(series):
      vals = [next((r[key] for r in rows if r["model"] == m and r["acquisition"] == a and r["pretrain"] == p),
                   np.nan) for m in models]
      ax.bar(np.arange(len(models)) + j * width, vals, width, color=colors[a], hatch=None if p == "none" else "//",
             edgecolor="k" if p != "none" else None, linewidth=0.4, label=a if p == "none" else f"{a} + {p}")
    ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2, models)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
  axes[0].axhline(1.0, color="k", lw=0.8)
  axes[1].axhline(0.0, color="k", lw=0.8)
  axes[1].legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _define_flags():
  """Flags live here, not at import, so `jaxal.study` imports beside `jaxal.main`."""
  config_flags.DEFINE_config_file("config", None, "Study config file.", lock_config=False)
  flags.DEFINE_string("root", None, "Folder that holds one workdir per run.")
  flags.DEFINE_bool("report_only", False, "Only write the report of finished runs.")
  flags.DEFINE_integer("process_index", int(os.environ.get("JAX_PROCESS_ID", 0)), "This process's share.")
  flags.DEFINE_integer("num_processes", int(os.environ.get("JAX_NUM_PROCESSES", 1)), "Processes sharing the grid.")
  flags.mark_flags_as_required(["config", "root"])


def main(argv):
  del argv
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  try:
    if not f.report_only:
      run_study(f.config, f.root, process_index=f.process_index, num_processes=f.num_processes)
  except config_lib.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  report(f.config, f.root)
  print((pathlib.Path(f.root) / "study.md").read_text())


if __name__ == "__main__":
  _define_flags()
  app.run(main)
