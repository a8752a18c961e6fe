"""Core data types and array checks shared by every source.

`Split` and `Dataset` hold plain in-memory arrays; the converters turn raw arrays into
uint8 NHWC images and int32 labels, raising `DataError` that names the file and reason.
"""

import dataclasses
from typing import Any

import numpy as np
from etils import epath

from jaxal import paths


class DataError(ValueError):
  """Bad input data; the message names the file or field and the reason."""


@dataclasses.dataclass
class Split:
  """One split: inputs, int32 labels and a stable id per example."""

  inputs: np.ndarray
  labels: np.ndarray
  ids: np.ndarray

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  def subset(self, index: np.ndarray) -> "Split":
    return Split(self.inputs[index], self.labels[index], self.ids[index])


@dataclasses.dataclass
class Dataset:
  """A train split (the active-learning pool) and a test split."""

  name: str
  train: Split
  test: Split
  num_classes: int
  class_names: list[str]
  modality: str  # "image" or "text"
  vocab_size: int = 0

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.train.inputs.shape[1:])




def make_ids(prefix: str, n: int) -> np.ndarray:
  return np.array([f"{prefix}{i}" for i in range(n)])


def shape_option(value) -> tuple[int, ...]:
  """A config shape; `(0,)` or `()` means off."""
  value = tuple(int(v) for v in (value or ()))
  return () if not value or 0 in value else value


def to_uint8_images(x: np.ndarray, source: str, image_shape=()) -> np.ndarray:
  """Converts images to uint8 NHWC; floats in [0, 1] are scaled by 255."""
  x = np.asarray(x)
  image_shape = shape_option(image_shape)
  if image_shape:
    try:
      x = x.reshape((x.shape[0],) + tuple(image_shape))
    except ValueError:
      raise DataError(f"{source}: cannot reshape {x.shape} to images of shape {tuple(image_shape)}") from None
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise DataError(f"{source}: images must be (n, h, w) or (n, h, w, c), got shape {x.shape}"
                    " (set data.image_shape for flat rows)")
  if x.dtype == np.uint8:
    return x
  if np.issubdtype(x.dtype, np.floating):
    if not np.isfinite(x).all():
      raise DataError(f"{source}: images contain NaN or inf")
    lo, hi = float(x.min(initial=0)), float(x.max(initial=0))
    if lo < 0 or hi > 1.0 + 1e-6:
      raise DataError(f"{source}: float images must lie in [0, 1], got [{lo:g}, {hi:g}]")
    return np.round(x * 255).astype(np.uint8)
  if np.issubdtype(x.dtype, np.integer):
    if x.min(initial=0) < 0 or x.max(initial=0) > 255:
      raise DataError(f"{source}: integer images must lie in [0, 255]")
    return x.astype(np.uint8)
  raise DataError(f"{source}: unsupported image dtype {x.dtype}")


def to_labels(y: Any, source: str, num_classes: int | None = None) -> np.ndarray:
  y = np.asarray(y)
  if y.ndim != 1:
    raise DataError(f"{source}: labels must be one-dimensional, got shape {y.shape}")
  if not np.issubdtype(y.dtype, np.integer):
    if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
      y = y.astype(np.int64)
    else:
      raise DataError(f"{source}: labels must be integers, got dtype {y.dtype}")
  if y.size and y.min() < 0:
    raise DataError(f"{source}: negative label {int(y.min())}")
  if num_classes is not None and y.size and y.max() >= num_classes:
    raise DataError(f"{source}: label {int(y.max())} out of range for {num_classes} classes")
  return y.astype(np.int32)


def check_pair(inputs: np.ndarray, labels: np.ndarray, source: str):
  if len(inputs) != len(labels):
    raise DataError(f"{source}: {len(inputs)} inputs but {len(labels)} labels")
  if len(labels) == 0:
    raise DataError(f"{source}: no examples")


def require_file(path: str, field: str, local_for: str = "") -> epath.Path:
  """The existing file or folder `data.<field>`, local or on shared storage (`gs://`, through epath).

  `local_for` names what needs an OS path (ArrayRecord, h5py): a URL is then a `DataError`.
  """
  if not path:
    raise DataError(f"data.{field} must be set for this source")
  if local_for:
    paths.local(path, f"data.{field}", DataError, local_for)
  p = paths.of(path)
  try:
    exists = p.exists()
  except Exception as e:  # pylint: disable=broad-except  (no gcsfs, no credentials, no network: many kinds)
    raise DataError(f"data.{field}: cannot reach {p} ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
  if not exists:
    raise DataError(f"data.{field}: {p} does not exist")
  return p


