"""The notebooks' setup cell keeps its XLA compilation cache private to the user."""

import pathlib
import stat
import sys
import tempfile
import types

COLABS = pathlib.Path(__file__).resolve().parents[1] / "colabs"


def test_notebook_compilation_cache_is_private_to_the_user(tmp_path, monkeypatch):
  """A fixed cache in the shared temp directory lets another user plant compiled code there."""
  sys.path.insert(0, str(COLABS))
  try:
    import build_notebooks  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.remove(str(COLABS))
  settings = {}
  fake_jax = types.SimpleNamespace(config=types.SimpleNamespace(update=settings.__setitem__),
                                   __version__="0", devices=lambda: [])
  monkeypatch.setitem(sys.modules, "jax", fake_jax)  # the cell's own lines, without touching JAX's config
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "shared_tmp"))
  (tmp_path / "shared_tmp").mkdir()
  monkeypatch.chdir(tmp_path)
  exec(build_notebooks.SETUP, {})  # pylint: disable=exec-used
  cache = pathlib.Path(settings["jax_compilation_cache_dir"])
  assert cache == tmp_path / "home" / ".cache" / "jaxal" / "xla"
  assert stat.S_IMODE(cache.stat().st_mode) == 0o700
