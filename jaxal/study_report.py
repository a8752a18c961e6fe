"""The study's report (`python -m jaxal.study ... --report_only`), from finished runs.

The report compares every acquisition with `random` on the same model, pretraining and
seeds: mean labeling efficiency and gain over random across rounds (ALGORITHMS.md §6), as a
markdown table (`ROOT/study.md`, `ROOT/study.csv`), bar charts (`ROOT/study.png`, pretrained
bars hatched; the paper's Figures 2-5), the ranking of acquisitions per architecture, test
accuracy curves per acquisition with one line per setting and pretraining
(`ROOT/curves_<model>.png`; Figures 6-7 when the settings are initial sizes or augmentation
on/off), and, with two or more architectures, the spread across acquisitions and across
architectures (`ROOT/spread_by_architecture.png`, `ROOT/spread_by_acquisition.png`;
Figures 8 and 10). Resolved ambiguity: the paper does not say which random curve the
pretrained bars are measured against; we hold everything but the acquisition fixed, so
`acq + pretraining` is compared with `random + pretraining`, and pretraining itself (the
"seventh strategy") is the row `random + pretraining` against plain `random`.
"""

import csv
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from jaxal import metrics  # pylint: disable=g-import-not-at-top
from jaxal import paths  # pylint: disable=g-import-not-at-top
from jaxal.checkpoint import artifacts  # pylint: disable=g-import-not-at-top
from jaxal.checkpoint import run_files  # pylint: disable=g-import-not-at-top


def collect(runs, root) -> dict:
  """`{(model, setting, pretrain, acquisition): (sizes, accuracies (seeds, rounds))}` of the
  finished `runs` (`study.StudyRun`s)."""
  out = {}
  for run in runs:
    rows = run_files.read_rounds(run.workdir(root))
    if rows:
      out.setdefault((run.model, run.setting, run.pretrain, run.acquisition), []).append(rows)
  curves = {}
  for key, runs in out.items():
    n = min(len(r) for r in runs)
    curves[key] = (np.array([r["num_labeled"] for r in runs[0][:n]]),
                   np.array([[r["test_accuracy"] for r in rows[:n]] for rows in runs]))
  return curves


def _arch(model: str, setting: str) -> str:
  return f"{model}/{setting}" if setting else model


def write(runs, root) -> list[dict]:
  """Writes the study's tables and figures for `runs` under `root`; returns the rows."""
  curves = collect(runs, root)
  rows = []
  for (model, setting, pre, acq), (sizes, acc) in curves.items():
    # Everything but the acquisition fixed; pretraining alone is random+pretraining vs random.
    ref = (model, setting, "none", "random") if acq == "random" else (model, setting, pre, "random")
    if (acq == "random" and pre == "none") or ref not in curves:
      continue
    r_sizes, r_acc = curves[ref]
    k = min(len(sizes), len(r_sizes), acc.shape[1], r_acc.shape[1])
    seeds = min(acc.shape[0], r_acc.shape[0])
    le = metrics.labeling_efficiency(sizes[:k], acc[:, :k], r_acc[:, :k])
    gain, gain_std = metrics.gain_over_random(acc[:seeds, :k], r_acc[:seeds, :k])
    rows.append({"model": model, "pretrain": pre, "acquisition": acq, "seeds": int(acc.shape[0]),
                 "reference": "random" if ref[2] == pre else "random (no pretraining)",
                 "labeling_efficiency": float(np.nanmean(le)) if np.isfinite(le).any() else float("nan"),
                 "gain_over_random": float(gain.mean()), "gain_std": float(gain_std.mean()),
                 "final_accuracy": float(acc[:, k - 1].mean()), "setting": setting})
  root = paths.of(root)
  root.mkdir(parents=True, exist_ok=True)
  table = io.StringIO(newline="")
  writer = csv.DictWriter(table, fieldnames=["model", "pretrain", "acquisition", "reference", "seeds",
                                             "labeling_efficiency", "gain_over_random", "gain_std", "final_accuracy",
                                             "setting"])
  writer.writeheader()
  writer.writerows(rows)
  paths.write_atomic(root / "study.csv", table.getvalue())
  with_settings = any(r["setting"] for r in rows)
  head = "| model | setting " if with_settings else "| model "
  lines = [head + "| pretraining | acquisition | reference | seeds | labeling efficiency | gain over random (pts) "
           "| final accuracy |", "|---" * (9 if with_settings else 8) + "|"]
  for r in rows:
    lines.append(f"| {r['model']} " + (f"| {r['setting']} " if with_settings else "")
                 + f"| {r['pretrain']} | {r['acquisition']} | {r['reference']} | {r['seeds']} "
                 f"| {r['labeling_efficiency']:.2f} "
                 f"| {100 * r['gain_over_random']:+.2f} ± {100 * r['gain_std']:.2f} | {r['final_accuracy']:.4f} |")
  lines += ["", "Acquisitions ranked by gain over random (best first):", ""] + _ranking_lines(rows)
  spreads = _spreads(curves, root)
  if spreads:
    lines += ["", "Final-round spread (max - min test accuracy, ALGORITHMS §6.4):", ""] + spreads
  paths.write_atomic(root / "study.md", "\n".join(lines) + "\n")
  if rows:
    _bars(rows, root / "study.png")
  _curves(curves, root)
  return rows


def _ranking_lines(rows) -> list[str]:
  """One line per (architecture, pretraining): acquisitions sorted by mean gain over random."""
  groups = {}
  for r in rows:
    if r["acquisition"] == "random":
      continue
    groups.setdefault((_arch(r["model"], r["setting"]), r["pretrain"]), []).append(r)
  out = []
  for (arch, pre), rs in groups.items():
    ranked = sorted(rs, key=lambda r: -r["gain_over_random"])
    out.append(f"- {arch}" + ("" if pre == "none" else f" + {pre}") + ": "
               + " > ".join(f"{r['acquisition']} ({100 * r['gain_over_random']:+.1f})" for r in ranked))
  # Does the ranking change with the architecture? Spearman's rho of the gains, per pair.
  keys = list(groups)
  pairs = []
  for i, (a, pre) in enumerate(keys):
    for b, pre_b in keys[i + 1:]:
      if pre_b != pre:
        continue
      gains_a = {r["acquisition"]: r["gain_over_random"] for r in groups[a, pre]}
      gains_b = {r["acquisition"]: r["gain_over_random"] for r in groups[b, pre]}
      common = [q for q in gains_a if q in gains_b]
      if len(common) >= 3:
        rho = metrics.spearman([gains_a[q] for q in common], [gains_b[q] for q in common])
        pairs.append(f"{a} vs {b}" + ("" if pre == "none" else f" (+ {pre})") + f": {rho:+.2f}")
  if pairs:
    out += ["", "Rank agreement of the acquisitions between architectures (Spearman's rho of the gains; "
            "1 = same order):", ""] + [f"- {p}" for p in pairs]
  return out


def _spreads(curves, root) -> list[str]:
  """Figures 8 and 10 per pretraining value, from seed-mean curves; returns markdown lines."""
  from jaxal import arch_report  # pylint: disable=import-outside-toplevel
  lines = []
  for pre in dict.fromkeys(k[2] for k in curves):
    archs = list(dict.fromkeys(_arch(m, g) for m, g, p, _ in curves if p == pre))
    acqs = list(dict.fromkeys(q for _, _, p, q in curves if p == pre))
    cells = {(_arch(m, g), q): v for (m, g, p, q), v in curves.items() if p == pre}
    if (len(archs) < 2 and len(acqs) < 2) or any((a, q) not in cells for a in archs for q in acqs):
      continue
    rounds = min(v[1].shape[1] for v in cells.values())
    acc = np.asarray([[cells[a, q][1][:, :rounds].mean(0) for q in acqs] for a in archs])
    labels = next(iter(cells.values()))[0][:rounds]
    suffix = "" if pre == "none" else f"_{pre}"
    arch_report.plot_spread_arrays(archs, acqs, labels, acc, root, suffix=suffix)
    over_acq = metrics.spread(acc, axis=1)[:, -1]
    over_arch = metrics.spread(acc, axis=0)[:, -1]
    tag = "" if pre == "none" else f" (pretraining: {pre})"
    if len(acqs) > 1:
      lines.append(f"- across acquisitions, per architecture{tag}: "
                   + ", ".join(f"{a} {v:.3f}" for a, v in zip(archs, over_acq)))
    if len(archs) > 1:
      lines.append(f"- across architectures, per acquisition{tag}: "
                   + ", ".join(f"{q} {v:.3f}" for q, v in zip(acqs, over_arch)))
  return lines


def _curves(curves, root):
  """`curves_<model>.png`: a panel per acquisition, a line (mean ± std over seeds) per setting and pretraining."""
  for model in dict.fromkeys(k[0] for k in curves):
    acqs = list(dict.fromkeys(k[3] for k in curves if k[0] == model))
    lines = list(dict.fromkeys((g, p) for m, g, p, _ in curves if m == model))
    cols = min(4, len(acqs))
    nrows = -(-len(acqs) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), dpi=110, squeeze=False, sharey=True)
    for ax, acq in zip(axes.flat, acqs):
      for i, (g, p) in enumerate(lines):
        if (model, g, p, acq) not in curves:
          continue
        sizes, acc = curves[model, g, p, acq]
        mean, std = acc.mean(0), acc.std(0)
        label = " + ".join(v for v in (g, "" if p == "none" else p) if v) or "default"
        ax.plot(sizes, mean, color=f"C{i % 10}", ls="-" if p == "none" else "--", marker=".", label=label)
        ax.fill_between(sizes, mean - std, mean + std, color=f"C{i % 10}", alpha=0.15)
      ax.set_title(acq, fontsize=9)
      ax.grid(alpha=0.3)
    for ax in axes.flat[len(acqs):]:
      ax.axis("off")
    for ax in axes[:, 0]:
      ax.set_ylabel("test accuracy")
    for ax in axes[-1]:
      ax.set_xlabel("labels")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(model)
    fig.tight_layout()
    artifacts.save_figure(fig, paths.of(root) / f"curves_{model}.png")


def _bars(rows, path):
  models = list(dict.fromkeys(_arch(r["model"], r["setting"]) for r in rows))
  acqs = list(dict.fromkeys(r["acquisition"] for r in rows))
  series = [(a, p) for a in acqs for p in dict.fromkeys(r["pretrain"] for r in rows)
            if any(r["acquisition"] == a and r["pretrain"] == p for r in rows)]
  colors = {a: f"C{i % 10}" for i, a in enumerate(acqs)}
  fig, axes = plt.subplots(1, 2, figsize=(max(11, 1.6 * len(models) + 5), 3.8), dpi=110)
  width = 0.8 / len(series)
  for ax, key, title in ((axes[0], "labeling_efficiency", "labeling efficiency"),
                         (axes[1], "gain_over_random", "gain over random (accuracy)")):
    for j, (a, p) in enumerate(series):
      vals = [next((r[key] for r in rows if _arch(r["model"], r["setting"]) == m and r["acquisition"] == a
                    and r["pretrain"] == p), np.nan) for m in models]
      ax.bar(np.arange(len(models)) + j * width, vals, width, color=colors[a], hatch=None if p == "none" else "//",
             edgecolor="k" if p != "none" else None, linewidth=0.4, label=a if p == "none" else f"{a} + {p}")
    ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2, models, fontsize=8)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
  axes[0].axhline(1.0, color="k", lw=0.8)
  axes[1].axhline(0.0, color="k", lw=0.8)
  axes[1].legend(fontsize=7, ncol=2)
  fig.tight_layout()
  artifacts.save_figure(fig, path)
