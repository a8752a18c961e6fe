"""Figures and tables from run directories.

    python -m jaxal.report --out figs runs/bald_s0 runs/bald_s1 runs/random_s0 runs/random_s1
    jaxal report --out figs inas=runs/inas_s0 inas=runs/inas_s1 "A(1,2)"=runs/a12_s0 --passive "A(1,2)"

Arguments are `LABEL=DIR` or just `DIR`. Directories sharing a label are seeds of one setting;
unlabeled directories are grouped by their `config.json` minus the seed, and named by the
config fields where the settings differ. Writes `curves.png` (test accuracy against labels,
mean and standard-error band over seeds), `trajectory.png` (parameters and depth of the
chosen architecture against labels), `times.png` (seconds per round split into search, train
and score+select) and `summary.md` (final accuracy, and AUC-GAIN against `--passive LABEL`),
and prints the table. `render(runs, out)` does the same from Python.
"""

import argparse
import collections
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from jaxal import metrics  # pylint: disable=g-import-not-at-top
from jaxal import paths as paths_lib  # pylint: disable=g-import-not-at-top
from jaxal.checkpoint import artifacts  # pylint: disable=g-import-not-at-top
from jaxal.checkpoint import run_files  # pylint: disable=g-import-not-at-top


def _save(fig, path):
  fig.tight_layout()
  artifacts.save_figure(fig, path)


def plot_learning_curve(history: list[dict], path, title: str = "") -> None:
  """Writes test accuracy against the number of labels of one run to `path` (PNG)."""
  fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
  ax.plot([r["num_labeled"] for r in history], [r["test_accuracy"] for r in history], marker="o")
  ax.set_xlabel("number of labels")
  ax.set_ylabel("test accuracy")
  ax.grid(alpha=0.3)
  fired = [r for r in history if (r.get("stop") or {}).get("fired")]
  if fired:  # where the stopping rule ended the run
    ax.axvline(fired[0]["num_labeled"], color="tab:red", linestyle="--", label=f"stop: {fired[0]['stop']['rule']}")
    ax.legend(loc="lower right", fontsize=8)
  if title:
    ax.set_title(title)
  _save(fig, path)


def _setting(directory) -> dict | None:
  """The flattened config of a run minus its seed and result-neutral fields, or None."""
  path = paths_lib.of(directory) / "config.json"
  if not path.exists():
    return None
  flat = {}

  def walk(node, prefix):
    for key, value in node.items():
      if isinstance(value, dict):
        walk(value, f"{prefix}{key}.")
      else:
        flat[prefix + key] = json.dumps(value, sort_keys=True)

  walk(json.loads(path.read_text()), "")
  return {k: v for k, v in flat.items() if k != "seed" and not k.startswith(run_files.IGNORED_PREFIXES)}


def _name_settings(settings: list[dict]) -> list[str]:
  """Short names for distinct settings: the fields where they differ."""
  if len(settings) == 1:
    s = settings[0]
    return [json.loads(s.get("acquisition.name", '"run"'))]
  keys = sorted({k for s in settings for k in s if len({t.get(k) for t in settings}) > 1})
  value = lambda s, k: str(json.loads(s[k])) if k in s else "-"
  if len(keys) == 1:
    return [value(s, keys[0]) for s in settings]
  short = lambda k: k.removesuffix(".name").rsplit(".", 1)[-1]  # acquisition.name -> acquisition
  return [", ".join(f"{short(k)}={value(s, k)}" for k in keys[:3]) + (", ..." if len(keys) > 3 else "")
          for s in settings]


def group_runs(specs: list[str]) -> dict[str, list[list[dict]]]:
  """`["label=dir", "dir", ...]` -> `{label: [history per seed]}` in argument order.

  Directories given without a label are grouped by their `config.json` minus `seed` (and
  minus `output.*`, `parallel.*`): runs that differ only in their seed are one setting, named
  by the config fields where settings differ. Without a `config.json` a run is its own group.
  """
  entries = []  # (label or None, setting key or dir, directory)
  for spec in specs:
    label, _, directory = spec.rpartition("=") if "=" in spec else ("", "", spec)
    if not run_files.read_rounds(directory):
      raise SystemExit(f"{directory}: no rounds.jsonl")
    entries.append((label or None, directory))
  unlabeled = {}
  for label, directory in entries:
    if label is None:
      setting = _setting(directory)
      key = json.dumps(setting, sort_keys=True) if setting is not None else f"dir:{directory}"
      unlabeled.setdefault(key, (setting, []))[1].append(directory)
  names = {}
  with_config = [(k, s) for k, (s, _) in unlabeled.items() if s is not None]
  for (key, _), name in zip(with_config, _name_settings([s for _, s in with_config])):
    names[key] = name
  for key, (setting, dirs) in unlabeled.items():
    if setting is None:
      names[key] = paths_lib.of(key[4:]).name
    if list(names.values()).count(names[key]) > 1:  # never merge two settings under one name
      names[key] += f" ({paths_lib.of(dirs[0]).name})"
  label_of_dir = {d: names[k] for k, (_, dirs) in unlabeled.items() for d in dirs}
  groups = collections.OrderedDict()
  for label, directory in entries:
    label = label or label_of_dir[directory]
    groups.setdefault(label, []).append(run_files.read_rounds(directory))
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
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  fig, (ax_p, ax_d) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=110)
  styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-.")]
  for k, (label, histories) in enumerate(groups.items()):
    h = histories[0]
    x = [r["num_labeled"] for r in h]
    marker, line = styles[k % len(styles)]
    ax_p.plot(x, [r["num_params"] for r in h], marker=marker, ls=line, ms=4, label=label)
    ax_d.plot(x, [r["depth"] for r in h], marker=marker, ls=line, ms=4, label=label)
  ax_p.set_yscale("log")
  ax_p.set_ylabel("parameters")
  ax_d.set_ylabel("depth")
  ax_d.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  for ax in (ax_p, ax_d):
    ax.set_xlabel("number of labels")
    ax.grid(alpha=0.3)
  ax_d.legend(fontsize=8)
  fig.suptitle("architecture per round (first seed)", fontsize=10)
  _save(fig, path)


def plot_times(groups, path) -> None:
  """Seconds per round (mean over seeds), stacked: search, train, score + select.

  Round 0 also compiles; when it dwarfs the other rounds its bar is cut and labelled.
  """
  parts = (("search_seconds", "search"), ("train_seconds", "train"), ("selection_seconds", "score+select"))
  fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.2), dpi=110, squeeze=False)
  for ax, (label, histories) in zip(axes[0], groups.items()):
    n = min(len(h) for h in histories)
    rounds = np.arange(n)
    bottom = np.zeros(n)
    for key, name in parts:
      v = np.mean([[r.get(key, 0.0) for r in h[:n]] for h in histories], axis=0)
      ax.bar(rounds, v, bottom=bottom, label=name)
      bottom += v
    if n > 1 and bottom[0] > 3 * bottom[1:].max():
      top = 1.4 * bottom[1:].max()
      ax.set_ylim(0, top)
      ax.annotate(f"{bottom[0]:.1f} s\n(compiles)", (0, top), xytext=(0, -4), textcoords="offset points",
                  ha="center", va="top", fontsize=7)
    ax.set_title(f"{label} (mean of {len(histories)})", fontsize=9)
    ax.set_xlabel("round")
    ax.set_ylabel("seconds")
  axes[0][0].legend(fontsize=8, loc="upper right")
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


def render(runs: list[str], out, *, passive: str | None = None, title: str = "") -> dict:
  """Writes the standard figures of `runs` (`LABEL=DIR` or `DIR`) to the folder `out`.

  Args:
    runs: run directories, optionally `LABEL=DIR`; see `group_runs` for how they are grouped.
    out: the folder for the figures (created).
    passive: the label of the passive runs for the AUC-GAIN column of the table.
    title: the learning-curve title.

  Returns:
    `{"curves": path, "trajectory": path, "times": path, "table": path}` (the table is markdown).
  """
  groups = group_runs(runs)
  out = paths_lib.of(out)
  out.mkdir(parents=True, exist_ok=True)
  paths = {name: out / f"{name}.png" for name in ("curves", "trajectory", "times")}
  plot_curves(groups, paths["curves"], title)
  plot_trajectory(groups, paths["trajectory"])
  plot_times(groups, paths["times"])
  paths["table"] = out / "summary.md"
  run_files.atomic_write_text(paths["table"], summary_table(groups, passive) + "\n")
  return paths


def main(argv=None):
  parser = argparse.ArgumentParser(prog="jaxal report", description="Figures and tables from jaxal run directories.")
  parser.add_argument("runs", nargs="+", help="LABEL=DIR or DIR; runs with one label (or, unlabeled, one config "
                      "but for the seed) are seeds of one setting")
  parser.add_argument("--out", required=True, help="folder for the PNG figures and summary.md")
  parser.add_argument("--passive", default=None, help="label of the passive (random) runs for AUC-GAIN")
  parser.add_argument("--title", default="")
  args = parser.parse_args(argv)
  paths = render(args.runs, args.out, passive=args.passive, title=args.title)
  print(paths["table"].read_text(), end="")
  print(f"\nfigures in {args.out}: curves.png, trajectory.png, times.png, summary.md")


if __name__ == "__main__":
  main()
