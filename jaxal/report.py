"""Figures and tables from run directories.

    python -m jaxal.report --out figs inas=runs/inas_s0 inas=runs/inas_s1 "A(1,2)"=runs/a12_s0 ...

Arguments are `LABEL=DIR` (or just `DIR`, labelled by its name); directories sharing a label
are seeds of one setting. Writes `curves.png` (test accuracy against labels, mean and
standard-error band over seeds), `trajectory.png` (parameters and depth of the chosen
architecture against labels, for runs whose architecture changes) and `times.png` (seconds per
round split into search, train and score+select), and prints a markdown table with the final
accuracy, and AUC-GAIN against `--passive LABEL` when given.
"""

import argparse
import collections
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from jaxal import metrics  # pylint: disable=g-import-not-at-top
from jaxal import workdir as workdir_lib  # pylint: disable=g-import-not-at-top


def _save(fig, path):
  path = pathlib.Path(path)
  tmp = path.with_suffix(".tmp.png")
  fig.tight_layout()
  fig.savefig(tmp)
  plt.close(fig)
  tmp.replace(path)


def plot_learning_curve(history: list[dict], path, title: str = "") -> None:
  """Writes test accuracy against the number of labels of one run to `path` (PNG)."""
  fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
  ax.plot([r["num_labeled"] for r in history], [r["test_accuracy"] for r in history], marker="o")
  ax.set_xlabel("number of labels")
  ax.set_ylabel("test accuracy")
  ax.grid(alpha=0.3)
  if title:
    ax.set_title(title)
  _save(fig, path)


def group_runs(specs: list[str]) -> dict[str, list[list[dict]]]:
  """`["label=dir", "dir", ...]` -> `{label: [history per seed]}` in argument order."""
  groups = collections.OrderedDict()
  for spec in specs:
    label, _, directory = spec.rpartition("=") if "=" in spec else ("", "", spec)
    label = label or pathlib.Path(directory).name
    history = workdir_lib.read_rounds(directory)
    if not history:
      raise SystemExit(f"{directory}: no rounds.jsonl")
    groups.setdefault(label, []).append(history)
  return groups


def mean_curve(histories: list[list[dict]], key: str = "test_accuracy"):
  """`(sizes, mean, standard error)` over seeds, on the rounds all seeds completed."""
  n = min(len(h) for h in histories)
  sizes = np.array([r["num_labeled"] for r in histories[0][:n]], float)
  values = np.array([[r[key] for r in h[:n]] for h in histories], float)
  se = values.std(0, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.zeros(n)
  return sizes, values.mean(0), se


def plot_curves(groups, path, title: str = "") -> None:
  fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
  for label, histories in groups.items():
    x, m, se = mean_curve(histories)
    ax.plot(x, m, marker="o", ms=3, label=f"{label} (n={len(histories)})")
    ax.fill_between(x, m - se, m + se, alpha=0.2)
  ax.set_xlabel("number of labels")
  ax.set_ylabel("test accuracy")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title)
  _save(fig, path)


def plot_trajectory(groups, path) -> None:
  """Parameters and depth of each round's architecture against labels (active-iNAS Fig. 7)."""
  fig, (ax_p, ax_d) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=110)
  for label, histories in groups.items():
    h = histories[0]
    x = [r["num_labeled"] for r in h]
    ax_p.plot(x, [r["num_params"] for r in h], marker="o", ms=3, label=label)
    ax_d.plot(x, [r["depth"] for r in h], marker="o", ms=3, label=label)
  ax_p.set_yscale("log")
  ax_p.set_ylabel("parameters")
  ax_d.set_ylabel("depth")
  for ax in (ax_p, ax_d):
    ax.set_xlabel("number of labels")
    ax.grid(alpha=0.3)
  ax_d.legend(fontsize=8)
  _save(fig, path)


def plot_times(groups, path) -> None:
  """Seconds per round (first seed of each group), stacked: search, train, score + select."""
  fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.2), dpi=110, squeeze=False)
  for ax, (label, histories) in zip(axes[0], groups.items()):
    h = histories[0]
    rounds = np.arange(len(h))
    bottom = np.zeros(len(h))
    for key, name in (("search_seconds", "search"), ("train_seconds", "train"), ("selection_seconds", "score+select")):
      v = np.array([r.get(key, 0.0) for r in h])
      ax.bar(rounds, v, bottom=bottom, label=name)
      bottom += v
    ax.set_title(label, fontsize=9)
    ax.set_xlabel("round")
    ax.set_ylabel("seconds")
  axes[0][0].legend(fontsize=8)
  _save(fig, path)


def summary_table(groups, passive: str | None = None) -> str:
  rows = ["| setting | seeds | final labels | final accuracy | AUC-GAIN vs " + (passive or "-") + " |",
          "|---|---|---|---|---|"]
  for label, histories in groups.items():
    x, m, se = mean_curve(histories)
    gain = ""
    if passive and label != passive:
      px, pm, _ = mean_curve(groups[passive])
      k = min(len(x), len(px))
      if np.array_equal(x[:k], px[:k]) and k >= 2:
        gain = f"{metrics.auc_gain(x[:k], 1 - pm[:k], 1 - m[:k]):+.3f}"
    rows.append(f"| {label} | {len(histories)} | {int(x[-1])} | {m[-1]:.4f} ± {se[-1]:.4f} | {gain} |")
  return "\n".join(rows)


def main(argv=None):
  parser = argparse.ArgumentParser(description="Figures and tables from jaxal run directories.")
  parser.add_argument("runs", nargs="+", help="LABEL=DIR or DIR; equal labels are seeds")
  parser.add_argument("--out", required=True, help="folder for the PNG figures")
  parser.add_argument("--passive", default=None, help="label of the passive (random) runs for AUC-GAIN")
  parser.add_argument("--title", default="")
  args = parser.parse_args(argv)
  groups = group_runs(args.runs)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  plot_curves(groups, out / "curves.png", args.title)
  plot_trajectory(groups, out / "trajectory.png")
  plot_times(groups, out / "times.png")
  print(summary_table(groups, args.passive))
  print(f"\nfigures in {out}: curves.png, trajectory.png, times.png")


if __name__ == "__main__":
  main()
