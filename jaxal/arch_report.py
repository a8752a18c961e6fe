"""The learned architecture by round (paper Figure 9), from a run's `rounds.jsonl`.

    python -m jaxal.arch_report RUN_DIR [--out arch.png]

For a `depth_dropout_*` search the top panel shows the layer activation probabilities
E_q[π_l] and the bottom panel the active filters per layer (mean over the read-out's
structure samples), one column per round, with the effective depth marked. For a
`bbdropout_*` search the top panel shows each layer's mean E[π_k] and the bottom its pruned
width. `architecture_by_round(history)` returns the arrays behind the figure.

`plot_spreads(table, out_dir)` draws the paper's Figures 8 and 10 from runs indexed by
(architecture setting, acquisition): the band between the best and worst acquisition per
architecture, and between the best and worst architecture per acquisition
(`jaxal.metrics.spread`, max − min of test accuracy at each labeled-set size).
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from jaxal import metrics  # pylint: disable=g-import-not-at-top
from jaxal import paths  # pylint: disable=g-import-not-at-top
from jaxal.checkpoint import artifacts  # pylint: disable=g-import-not-at-top
from jaxal.checkpoint import run_files  # pylint: disable=g-import-not-at-top


def architecture_by_round(history: list[dict]) -> dict:
  """`{method, rounds, num_labeled, layer_prob (R, K), filters (R, K), depth (R,), width}`.

  Rounds without a Bayesian read-out in their `search` record are skipped.
  """
  rows = [r for r in history if (r.get("search") or {}).get("method") in ("depth_dropout", "bbdropout")]
  if not rows:
    raise ValueError("no round has a depth_dropout or bbdropout read-out in its search record")
  method = rows[0]["search"]["method"]
  prob, filters, depth = [], [], []
  for r in rows:
    s = r["search"]
    if method == "depth_dropout":
      prob.append(s["pi"])
      filters.append(s["active_filters"])
      depth.append(s["depth"])
    else:
      prob.append([float(np.mean(p)) for p in s["expected_pi"]])
      filters.append(s["pruned_widths"])
      depth.append(sum(1 for w in s["pruned_widths"] if w))
  return {"method": method, "rounds": [r["round"] for r in rows], "num_labeled": [r["num_labeled"] for r in rows],
          "layer_prob": np.asarray(prob, np.float64), "filters": np.asarray(filters, np.float64),
          "depth": np.asarray(depth), "width": int(rows[0]["search"].get("width", np.max(filters)))}


def plot_architecture(history: list[dict], path, title: str = "") -> dict:
  """Writes the Figure-9 style plot of `history` to `path` (PNG); returns the arrays."""
  a = architecture_by_round(history)
  rounds, k = a["layer_prob"].shape
  x = np.arange(rounds)
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(4.0, 0.6 * rounds + 2.5), 2.0 + 0.35 * k + 2.0),
                                    sharex=True, gridspec_kw={"height_ratios": [1, 2]})
  depth_method = a["method"] == "depth_dropout"
  im = top.imshow(a["layer_prob"].T, aspect="auto", origin="lower", cmap="Blues", vmin=0, vmax=1,
                  extent=(-0.5, rounds - 0.5, 0.5, k + 0.5))
  top.set_ylabel("layer")
  top.set_title(title or ("layer activation probability E[π_l]" if depth_method else "mean E[π_k] per layer"))
  fig.colorbar(im, ax=top, fraction=0.04)
  im = bottom.imshow(a["filters"].T, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=a["width"],
                     extent=(-0.5, rounds - 0.5, 0.5, k + 0.5))
  bottom.plot(x, a["depth"], "v", color="red", ms=9)
  bottom.set_ylabel("layer")
  bottom.set_title(("active filters per layer" if depth_method else "pruned width per layer")
                   + " (red ▼: effective depth)")
  fig.colorbar(im, ax=bottom, fraction=0.04)
  bottom.set_xticks(x)
  bottom.set_xticklabels([str(n) for n in a["num_labeled"]], rotation=45)
  bottom.set_xlabel("labels (round)")
  fig.tight_layout()
  artifacts.save_figure(fig, path)
  return a


def spread_table(table: dict) -> dict:
  """`{(arch, acq): history}` -> labels, accuracy `(A, Q, R)`, spreads over acquisitions/architectures."""
  archs = sorted({a for a, _ in table})
  acqs = sorted({q for _, q in table})
  missing = [(a, q) for a in archs for q in acqs if (a, q) not in table]
  if missing:
    raise ValueError(f"the table needs every (architecture, acquisition) pair; missing {missing}")
  rounds = min(len(h) for h in table.values())
  acc = np.asarray([[[r["test_accuracy"] for r in table[a, q][:rounds]] for q in acqs] for a in archs])
  labels = [r["num_labeled"] for r in next(iter(table.values()))[:rounds]]
  return {"architectures": archs, "acquisitions": acqs, "labels": labels, "accuracy": acc,
          "spread_over_acquisitions": metrics.spread(acc, axis=1),
          "spread_over_architectures": metrics.spread(acc, axis=0)}


def plot_spreads(table: dict, out_dir) -> dict:
  """Writes `spread_by_architecture.png` (Fig. 8) and `spread_by_acquisition.png` (Fig. 10)."""
  t = spread_table(table)
  plot_spread_arrays(t["architectures"], t["acquisitions"], t["labels"], t["accuracy"], out_dir)
  return t


def plot_spread_arrays(archs, acqs, labels, acc, out_dir, suffix: str = "") -> None:
  """The two spread figures from test accuracy `acc` of shape (architectures, acquisitions, rounds)."""
  out = paths.of(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  acc = np.asarray(acc, np.float64)
  for name, axis, groups in (("spread_by_architecture", 1, archs), ("spread_by_acquisition", 0, acqs)):
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for i, g in enumerate(groups):
      band = acc[i] if axis == 1 else acc[:, i]  # (members, rounds)
      spread = band.max(0) - band.min(0)
      left.plot(labels, spread, marker=".", color=f"C{i % 10}", label=f"{g} (final {spread[-1]:.3f})")
      right.plot(labels, band.mean(0), marker=".", color=f"C{i % 10}", label=str(g))
    what = "acquisitions" if axis == 1 else "architectures"
    left.set_title(f"spread (max - min test accuracy) across {what}")
    right.set_title(f"mean test accuracy over {what}")
    for ax in (left, right):
      ax.set_xlabel("labels")
      ax.grid(alpha=0.3)
    left.set_ylabel("spread")
    right.set_ylabel("test accuracy")
    left.legend(fontsize="x-small")
    fig.tight_layout()
    artifacts.save_figure(fig, out / f"{name}{suffix}.png")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("run", help="run directory holding rounds.jsonl")
  parser.add_argument("--out", default="", help="output PNG (default RUN/architecture.png)")
  args = parser.parse_args(argv)
  out = paths.of(args.out or paths.of(args.run) / "architecture.png")
  a = plot_architecture(run_files.read_rounds(args.run), out)
  print(f"{a['method']}: {len(a['rounds'])} rounds, depths {a['depth'].tolist()} -> {out}")


if __name__ == "__main__":
  main()
