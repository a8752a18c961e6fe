"""Evaluation metrics of the three papers (ALGORITHMS.md §6)."""

import numpy as np


def auc_gain(sizes, err_passive, err_active) -> float:
  """AUC-GAIN = (AUC_passive - AUC_active) / AUC_passive (active-iNAS, ALGORITHMS §6.3).

  Each AUC is the trapezoid-rule area under the 0-1 test error against the number of labels,
  over the actual (possibly non-uniform) labeled sizes; both curves share `sizes`. Positive
  means the active run is better.
  """
  sizes = np.asarray(sizes, np.float64)
  p = np.asarray(err_passive, np.float64)
  a = np.asarray(err_active, np.float64)
  if not (sizes.shape == p.shape == a.shape) or sizes.ndim != 1 or sizes.size < 2:
    raise ValueError("sizes, err_passive and err_active must be 1-D of the same length >= 2")
  if np.any(np.diff(sizes) <= 0):
    raise ValueError("sizes must increase")
  area = lambda e: float(np.sum((e[1:] + e[:-1]) * np.diff(sizes)) / 2)
  passive = area(p)
  if passive == 0:
    raise ValueError("the passive curve has zero error everywhere; AUC-GAIN is undefined")
  return (passive - area(a)) / passive


def rankdata(x) -> np.ndarray:
  """Ranks 1..n with ties given their average rank (scipy's 'average' method)."""
  x = np.asarray(x, np.float64)
  order = np.argsort(x, kind="stable")
  sorted_x = x[order]
  # Boundaries of runs of equal values.
  starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
  ends = np.r_[starts[1:], x.size]
  avg = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1..end
  ranks = np.empty(x.size, np.float64)
  ranks[order] = np.repeat(avg, ends - starts)
  return ranks


def pearson(a, b) -> float:
  """Pearson's r; NaN when either input is constant."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError("pearson needs two 1-D arrays of the same length")
  a, b = a - a.mean(), b - b.mean()
  denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
  return float(np.sum(a * b) / denom) if denom > 0 else float("nan")


def spearman(a, b) -> float:
  """Spearman's rho: Pearson's r of the ranks, ties averaged (as scipy.stats.spearmanr)."""
  return pearson(rankdata(a), rankdata(b))


def topk_overlap(scores_a, scores_b, k: int) -> float:
  """`|top_k(a) & top_k(b)| / k`; ties go to the lower index, as in selection."""
  a = np.asarray(scores_a, np.float64)
  b = np.asarray(scores_b, np.float64)
  if not 1 <= k <= a.size or a.shape != b.shape:
    raise ValueError(f"k must be in [1, {a.size}] and the scores of equal shape")
  top = lambda s: set(np.argsort(-s, kind="stable")[:k].tolist())
  return len(top(a) & top(b)) / k


def selection_overlap(picked_a, picked_b) -> float:
  """`|A & B| / |A|` for two selected index sets of equal size."""
  a, b = set(np.asarray(picked_a).tolist()), set(np.asarray(picked_b).tolist())
  if len(a) != len(b) or not a:
    raise ValueError("selections must be non-empty and of equal size")
  return len(a & b) / len(a)


def selection_runtime(history: list[dict]) -> float:
  """SVP's data-selection runtime: selection-model training plus scoring and ranking, summed
  over the rounds that selected data (ALGORITHMS.md §11); target training is excluded."""
  return float(sum(r["train_seconds"] + r["selection_seconds"] + r.get("search_seconds", 0.0)
                   for r in history if r.get("queried", 0) > 0))


def speedup(baseline_history: list[dict], proxy_history: list[dict]) -> float:
  """Data-selection speed-up of a proxy run over the baseline (target selects) run."""
  return selection_runtime(baseline_history) / selection_runtime(proxy_history)
