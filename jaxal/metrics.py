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
