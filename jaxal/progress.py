"""Progress bars with an ETA for long loops (tqdm; no global state)."""

import sys
from typing import Iterable, TypeVar

import tqdm

T = TypeVar("T")


def track(items: Iterable[T], label: str, *, enabled: bool = True, every_seconds: float = 2.0,
          total: int | None = None):
  """Yields `items` lazily, showing `label`, the count, the rate and an ETA on stderr.

  At most one refresh every `every_seconds`. `total` defaults to `len(items)` where the
  iterable has one; without it tqdm shows the count and rate only.
  """
  if total is None and hasattr(items, "__len__"):
    total = len(items)
  return tqdm.tqdm(items, desc=f"  {label}", total=total, disable=not enabled, file=sys.stderr,
                   mininterval=every_seconds, leave=True, dynamic_ncols=True)
