"""Pool bookkeeping: which points are labeled, what labels were revealed, which round.

`PoolState` is an explicit, immutable value: `label(...)` returns a new state. Oracles,
which reveal the labels, live in `jaxal.oracle`.
"""

import dataclasses
import numpy as np

UNKNOWN = -1


@dataclasses.dataclass(frozen=True)
class PoolState:
  """Labeled mask `(n,)`, revealed labels `(n,)` (-1 = unknown) and the round number."""

  labeled_mask: np.ndarray
  labels: np.ndarray
  round: int = 0

  @classmethod
  def empty(cls, n: int) -> "PoolState":
    return cls(np.zeros(n, bool), np.full(n, UNKNOWN, np.int32), 0)

  @property
  def num_labeled(self) -> int:
    return int(self.labeled_mask.sum())

  @property
  def labeled_indices(self) -> np.ndarray:
    return np.flatnonzero(self.labeled_mask).astype(np.int32)

  def label(self, indices: np.ndarray, labels: np.ndarray) -> "PoolState":
    """Returns a new state with `labels` revealed at `indices`; never overwrites a label."""
    indices = np.asarray(indices, np.int64)
    labels = np.asarray(labels, np.int32)
    if indices.shape != labels.shape:
      raise ValueError(f"{indices.size} indices but {labels.size} labels")
    if np.unique(indices).size != indices.size:
      raise ValueError("duplicate indices in one labeling step")
    if indices.size and (indices.min() < 0 or indices.max() >= self.labeled_mask.size):
      raise IndexError("pool index out of range")
    if self.labeled_mask[indices].any():
      already = indices[self.labeled_mask[indices]][:5].tolist()
      raise ValueError(f"indices {already} are already labeled; refusing to overwrite their labels")
    if (labels < 0).any():
      raise ValueError("revealed labels must be non-negative")
    mask = self.labeled_mask.copy()
    revealed = self.labels.copy()
    mask[indices] = True
    revealed[indices] = labels
    return dataclasses.replace(self, labeled_mask=mask, labels=revealed)

  def next_round(self) -> "PoolState":
    return dataclasses.replace(self, round=self.round + 1)

  def to_arrays(self) -> dict:
    return {"labeled_mask": self.labeled_mask, "labels": self.labels, "round": np.int64(self.round)}

  @classmethod
  def from_arrays(cls, arrays: dict) -> "PoolState":
    return cls(np.asarray(arrays["labeled_mask"], bool), np.asarray(arrays["labels"], np.int32),
               int(arrays["round"]))


def initial_indices(labels: np.ndarray, size: int, seed: int, *, balanced: bool) -> np.ndarray:
  """The initial labeled set: `size` pool indices drawn from `seed`.

  With `balanced`, classes get `size // C` each (the first `size % C` classes in a seeded
  order get one more), as far as each class has points. The draw uses true labels, as the
  class-balanced protocols of the papers do.
  """
  n = labels.size
  if not 0 < size <= n:
    raise ValueError(f"initial size {size} must be in [1, {n}]")
  rng = np.random.default_rng(seed)
  if not balanced:
    return np.sort(rng.choice(n, size, replace=False)).astype(np.int32)
  classes = np.unique(labels)
  quota = np.full(classes.size, size // classes.size)
  quota[rng.permutation(classes.size)[: size % classes.size]] += 1
  picked = []
  for c, q in zip(classes, quota):
    members = np.flatnonzero(labels == c)
    picked.extend(rng.choice(members, min(q, members.size), replace=False))
  short = size - len(picked)
  if short:  # small classes: fill at random from the rest
    rest = np.setdiff1d(np.arange(n), picked)
    picked.extend(rng.choice(rest, short, replace=False))
  return np.sort(np.array(picked)).astype(np.int32)


def query_size_at(num_labeled: int, schedule: list[tuple[int, int]]) -> int:
  """Query batch size once `num_labeled` labels are known.

  `schedule` is `[(threshold, size), ...]` sorted by threshold; the last entry whose
  threshold is `<= num_labeled` applies.
  """
  size = schedule[0][1]
  for threshold, s in schedule:
    if num_labeled >= threshold:
      size = s
  return size


def parse_schedule(text: str, field: str, value_type=int) -> list[tuple[int, float]]:
  """Parses `"0:2000,10000:5000"` into `[(0, 2000), (10000, 5000)]`.

  Thresholds must start at 0 and increase; errors name `field`.
  """
  pairs = []
  for part in str(text).split(","):
    part = part.strip()
    if not part:
      continue
    if ":" not in part:
      raise ValueError(f"{field}: entry {part!r} must be 'threshold:value'")
    a, b = part.split(":", 1)
    try:
      pairs.append((int(a), value_type(b)))
    except ValueError:
      raise ValueError(f"{field}: entry {part!r} is not 'int:{value_type.__name__}'") from None
  if not pairs:
    raise ValueError(f"{field}: empty schedule")
  if pairs[0][0] != 0:
    raise ValueError(f"{field}: the first threshold must be 0, got {pairs[0][0]}")
  if any(b[0] <= a[0] for a, b in zip(pairs, pairs[1:])):
    raise ValueError(f"{field}: thresholds must increase")
  return pairs
