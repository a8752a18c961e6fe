"""Figures from round records: learning curves (test accuracy against labels)."""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def plot_learning_curve(history: list[dict], path: str | pathlib.Path, title: str = "") -> None:
  """Writes test accuracy against the number of labels to `path` (PNG), atomically."""
  path = pathlib.Path(path)
  fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
  xs = [r["num_labeled"] for r in history]
  ys = [r["test_accuracy"] for r in history]
  ax.plot(xs, ys, marker="o")
  ax.set_xlabel("number of labels")
  ax.set_ylabel("test accuracy")
  ax.grid(alpha=0.3)
  if title:
    ax.set_title(title)
  fig.tight_layout()
  tmp = path.with_suffix(".tmp.png")
  fig.savefig(tmp)
  plt.close(fig)
  tmp.replace(path)
