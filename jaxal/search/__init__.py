"""Architecture search methods the loop calls once per round.

A search is `fn(context) -> (model_name, model_options, info)`, where `context` is a
`loop.SearchContext` and `info` is a JSON-able dict stored as the round record's `search`
field. `fixed` keeps the configured model; `inas` is active-iNAS's incremental search;
`depth_dropout_*` and `bbdropout_*` (`joint`, `spo`, `upo`) are the Bayesian architecture
optimizers of `bayesian.py`; `pdarts` is P-DARTS (`pdarts.py`).
"""

from jaxal.search import bayesian
from jaxal.search import inas
from jaxal.search import pdarts
from jaxal.search.fixed import fixed

SEARCHES = {"fixed": fixed, "inas": inas.search}
SEARCHES.update(bayesian.SEARCHES)
SEARCHES["pdarts"] = pdarts.search
