"""Architecture search methods the loop calls once per round.

A search is `fn(context) -> (model_name, model_options)`. `fixed` keeps the configured
model. Later methods (iNAS, PDARTS, ...) register here under their config name.
"""

from jaxal.search.fixed import fixed

SEARCHES = {"fixed": fixed}
