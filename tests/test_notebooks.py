"""Every notebook in colabs/ runs top to bottom, headless on CPU, and matches its builder."""

import os
import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

COLABS = pathlib.Path(__file__).resolve().parents[1] / "colabs"
NOTEBOOKS = sorted(p.name for p in COLABS.glob("*.ipynb"))


def test_notebooks_are_built_from_the_builder(tmp_path):
  sys.path.insert(0, str(COLABS))
  try:
    import build_notebooks  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.remove(str(COLABS))
  built = build_notebooks.build(tmp_path)
  assert sorted(p.name for p in built) == NOTEBOOKS
  for p in built:
    assert nbformat.read(p, 4).cells == nbformat.read(COLABS / p.name, 4).cells, (
        f"{p.name} differs from colabs/build_notebooks.py: run python colabs/build_notebooks.py")


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("PYTHONWARNINGS", "ignore")
  nb = nbformat.read(COLABS / name, 4)
  start = time.perf_counter()
  nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(COLABS)}}).execute()
  seconds = time.perf_counter() - start
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
  assert not errors
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
  assert images or name == "svp.ipynb", "the notebook shows no figure"
  print(f"{name}: {seconds:.0f} s")
