"""Minimal progress output for long loops (no global state)."""

import sys
import time
from typing import Iterable, TypeVar

T = TypeVar("T")


def track(items: Iterable[T], label: str, *, enabled: bool = True, every_seconds: float = 2.0):
  """Yields `items`, printing `label: i/n` at most every `every_seconds` and at the end."""
  items = list(items)
  n = len(items)
  start = last = time.perf_counter()
  for i, item in enumerate(items):
    yield item
    now = time.perf_counter()
    if enabled and (now - last >= every_seconds or i + 1 == n):
      last = now
      print(f"  {label}: {i + 1}/{n} ({now - start:.1f}s)", file=sys.stderr, flush=True)
