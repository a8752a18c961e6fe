"""Architecture search methods the loop calls once per round.

A search is `fn(context) -> (model_name, model_options, info)`, where `context` is a
`loop.SearchContext` and `info` is a JSON-able dict stored as the round record's `search`
field. `fixed` keeps the configured model; `inas` is active-iNAS's incremental search.
"""

from jaxal.search import inas
from jaxal.search.fixed import fixed

SEARCHES = {"fixed": fixed, "inas": inas.search}
