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


def pearson(a, b) -> float:
  """Pearson's r; NaN when either input is constant (scipy warns and returns NaN; we stay quiet)."""
  a, b = _paired_1d(a, b, "pearson")
  if np.ptp(a) == 0 or np.ptp(b) == 0:
    return float("nan")
  import scipy.stats  # pylint: disable=import-outside-toplevel  (46 MB resident: only where correlations are asked)
  return float(scipy.stats.pearsonr(a, b).statistic)


def spearman(a, b) -> float:
  """Spearman's rho, ties averaged; NaN when either input is constant."""
  a, b = _paired_1d(a, b, "spearman")
  if np.ptp(a) == 0 or np.ptp(b) == 0:
    return float("nan")
  import scipy.stats  # pylint: disable=import-outside-toplevel
  return float(scipy.stats.spearmanr(a, b).statistic)


def _paired_1d(a, b, name):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(f"{name} needs two 1-D arrays of the same length")
  return a, b


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


def random_labels_needed(sizes, acc_random, target) -> float:
  """`n_R(a)`: labels random sampling needs to reach accuracy `a` (ALGORITHMS.md §6.1).

  Random's accuracies at `sizes` are made monotone (running maximum) and interpolated
  piecewise-linearly; the smallest `n` on that curve with accuracy `>= a` is returned. NaN
  when `a` is below random's first accuracy (no extrapolation) or above its best.
  """
  sizes = np.asarray(sizes, np.float64)
  env = np.maximum.accumulate(np.asarray(acc_random, np.float64))
  if target < env[0] or target > env[-1]:
    return float("nan")
  k = int(np.argmax(env >= target))
  if k == 0:
    return float(sizes[0])
  lo, hi = env[k - 1], env[k]
  return float(sizes[k - 1] + (target - lo) / (hi - lo) * (sizes[k] - sizes[k - 1]))


def labeling_efficiency(sizes, acc_strategy, acc_random, *, censored: str = "nan") -> np.ndarray:
  """`LE_S(n) = n_R(a_S(n)) / n` per round (Beck et al. 2021; ALGORITHMS.md §6.1).

  Accuracies may be `(rounds,)` or `(seeds, rounds)`; seeds are averaged before inverting.
  Where the strategy beats random's best accuracy the value is censored: NaN by default, or
  the lower bound `n_max / n` with `censored="bound"`. Below random's first accuracy: NaN.
  """
  sizes = np.asarray(sizes, np.float64)
  a_s = np.asarray(acc_strategy, np.float64)
  a_r = np.asarray(acc_random, np.float64)
  a_s = a_s.mean(0) if a_s.ndim == 2 else a_s
  a_r = a_r.mean(0) if a_r.ndim == 2 else a_r
  if not sizes.shape == a_s.shape == a_r.shape:
    raise ValueError("sizes and both accuracy curves must share the round axis")
  if censored not in ("nan", "bound"):
    raise ValueError(f"censored must be 'nan' or 'bound', got {censored!r}")
  best = np.maximum.accumulate(a_r)[-1]
  out = np.empty_like(sizes)
  for i, (n, a) in enumerate(zip(sizes, a_s)):
    if a > best:
      out[i] = sizes[-1] / n if censored == "bound" else np.nan
    else:
      out[i] = random_labels_needed(sizes, a_r, a) / n
  return out


def gain_over_random(acc_strategy, acc_random) -> tuple[np.ndarray, np.ndarray]:
  """Per-round accuracy gain over random (ALGORITHMS.md §6.2), in accuracy points.

  With `(seeds, rounds)` inputs the seeds are paired: returns the mean and the standard
  deviation (ddof 1) over seeds of the per-seed differences; with 1-D inputs the std is 0.
  """
  a_s = np.atleast_2d(np.asarray(acc_strategy, np.float64))
  a_r = np.atleast_2d(np.asarray(acc_random, np.float64))
  if a_s.shape != a_r.shape:
    raise ValueError(f"paired seeds need equal shapes, got {a_s.shape} and {a_r.shape}")
  diff = a_s - a_r
  std = diff.std(0, ddof=1) if diff.shape[0] > 1 else np.zeros(diff.shape[1])
  return diff.mean(0), std


def spread(values, axis: int = 0) -> np.ndarray:
  """Spread of performance across a factor: `max - min` along `axis` (ALGORITHMS.md §6.4)."""
  values = np.asarray(values, np.float64)
  return values.max(axis=axis) - values.min(axis=axis)
