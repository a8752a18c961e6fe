"""Progress output: lazy over generators, with a rate and an ETA."""

import io

from jaxal import progress


def test_track_is_lazy_and_shows_an_eta(monkeypatch):
  produced = []

  def items():
    for i in range(4):
      produced.append(i)
      yield i

  err = io.StringIO()
  monkeypatch.setattr("sys.stderr", err)
  tracked = iter(progress.track(items(), "scoring pool", total=4, every_seconds=0))
  assert next(tracked) == 0 and produced == [0]  # the iterable is not read ahead into a list
  assert list(tracked) == [1, 2, 3]
  out = err.getvalue()
  assert "scoring pool" in out and "4/4" in out
  assert "<" in out  # tqdm's "[elapsed<remaining" ETA field


def test_track_disabled_prints_nothing(monkeypatch):
  err = io.StringIO()
  monkeypatch.setattr("sys.stderr", err)
  assert list(progress.track(range(3), "x", enabled=False)) == [0, 1, 2]
  assert err.getvalue() == ""
