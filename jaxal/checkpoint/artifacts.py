"""The non-JSON files a run writes: label sheets (CSV), figures (PNG), array trees (npz).

Each write goes to a temporary name in the same folder, then is renamed into place (on an
object store, one upload: `paths.write_atomic`), so a kill mid-write leaves the previous file
or none, never a torn one. Trees are plain npz (arrays only, never pickle), read back with
`load_tree`.
"""

import csv
import io

import jax
import numpy as np

from jaxal import paths


def write_csv(path, header: list[str], rows) -> None:
  """`header` then `rows`, UTF-8, written atomically."""
  path = paths.of(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  text = io.StringIO(newline="")
  writer = csv.writer(text)
  writer.writerow(header)
  writer.writerows(rows)
  paths.write_atomic(path, text.getvalue())


def save_figure(fig, path) -> None:
  """A matplotlib figure as PNG, written atomically; the figure is closed."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top  (only runs that draw need it)
  png = io.BytesIO()
  fig.savefig(png, format="png")
  plt.close(fig)
  paths.write_atomic(path, png.getvalue())


def copy_file(source, path) -> None:
  """A copy of `source` at `path`, put in place atomically."""
  paths.write_atomic(path, paths.of(source).read_bytes())


def save_tree(path, tree) -> None:
  """A nested dict of arrays as npz (keys joined by '/'), written atomically."""
  flat = {"/".join(str(getattr(k, "key", k)) for k in kp): np.asarray(v)
          for kp, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  npz = io.BytesIO()
  np.savez(npz, **flat)
  paths.write_atomic(path, npz.getvalue())


def load_tree(path) -> dict:
  """The nested dict that `save_tree` wrote (no pickle)."""
  tree = {}
  with paths.of(path).open("rb") as raw, np.load(raw, allow_pickle=False) as f:
    for name in f.files:
      node = tree
      *parents, leaf = name.split("/")
      for p in parents:
        node = node.setdefault(p, {})
      node[leaf] = f[name]
  return tree
