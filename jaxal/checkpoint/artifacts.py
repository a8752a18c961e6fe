"""The non-JSON files a run writes: label sheets (CSV), figures (PNG), array trees (npz).

Each write goes to a temporary name in the same folder, then is renamed into place, so a kill
mid-write leaves the previous file or none, never a torn one. Trees are plain npz (arrays
only, never pickle), read back with `load_tree`.
"""

import csv
import pathlib
import shutil

import jax
import numpy as np


def _replace(tmp: pathlib.Path, path: pathlib.Path) -> None:
  tmp.replace(path)


def write_csv(path: pathlib.Path, header: list[str], rows) -> None:
  """`header` then `rows`, UTF-8, written atomically."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  _replace(tmp, path)


def save_figure(fig, path: pathlib.Path) -> None:
  """A matplotlib figure as PNG, written atomically; the figure is closed."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top  (only runs that draw need it)
  path = pathlib.Path(path)
  tmp = path.with_name(path.name + ".tmp")
  fig.savefig(tmp, format="png")
  plt.close(fig)
  _replace(tmp, path)


def copy_file(source: pathlib.Path, path: pathlib.Path) -> None:
  """A copy of `source` at `path`, put in place atomically."""
  tmp = path.with_name(path.name + ".tmp")
  shutil.copyfile(source, tmp)
  _replace(tmp, path)


def save_tree(path: pathlib.Path, tree) -> None:
  """A nested dict of arrays as npz (keys joined by '/'), written atomically."""
  flat = {"/".join(str(getattr(k, "key", k)) for k in kp): np.asarray(v)
          for kp, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  tmp = path.with_name(path.name + ".tmp.npz")
  np.savez(tmp, **flat)
  _replace(tmp, path)


def load_tree(path: pathlib.Path) -> dict:
  """The nested dict that `save_tree` wrote (no pickle)."""
  tree = {}
  with np.load(path, allow_pickle=False) as f:
    for name in f.files:
      node = tree
      *parents, leaf = name.split("/")
      for p in parents:
        node = node.setdefault(p, {})
      node[leaf] = f[name]
  return tree
