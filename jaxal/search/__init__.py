"""Architecture search methods the loop calls once per round.

A search is `fn(context) -> (model_name, model_options, info)`, where `context` is a
`loop.SearchContext` and `info` is a JSON-able dict stored as the round record's `search`
field. `fixed` keeps the configured model; `inas` is active-iNAS's incremental search;
`depth_dropout_*` and `bbdropout_*` (`joint`, `spo`, `upo`) are the Bayesian architecture
optimizers of `bayesian.py`; `pdarts` is P-DARTS (`pdarts.py`).

Add your own with `register(name, fn, validate=...)` and set `search.name = name`;
`validate(config)` checks the whole run config before any compute (raise `ConfigError`).
`SEARCHES` is a read-only mapping of `Search` entries; calling one calls its `fn`.
"""

import dataclasses
from typing import Callable

from jaxal.registry import Registry
from jaxal.search import bayesian
from jaxal.search import checks
from jaxal.search import inas
from jaxal.search import pdarts
from jaxal.search.fixed import fixed


@dataclasses.dataclass(frozen=True)
class Search:
  """A registered search: `fn(context)`, and `validate(config)` run by `config.validate`."""

  fn: Callable
  validate: Callable | None = None

  def __call__(self, context):
    return self.fn(context)


SEARCHES = Registry("search")


def register(name: str, fn: Callable, *, validate: Callable | None = None) -> None:
  """Adds search `name`; a name already registered raises ValueError."""
  if not callable(fn):
    raise ValueError(f"search {name!r}: fn must be callable, got {fn!r}")
  SEARCHES.add(name, Search(fn, validate))


def unregister(name: str) -> None:
  SEARCHES.remove(name)


register("fixed", fixed)
register("inas", inas.search, validate=checks.inas)
for _name, _fn in bayesian.SEARCHES.items():
  register(_name, _fn)
del _name, _fn
register("pdarts", pdarts.search, validate=checks.pdarts)
