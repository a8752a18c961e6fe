"""jaxal: deep active learning in JAX/Flax, with the architecture chosen along with the data.

One active-learning round runs data -> model -> train -> score -> select -> label;
the subpackages follow that order (`data`, `models`, `train`, `acquisition`, `search`),
and `loop.run(config, workdir)` drives the rounds.
For a model trained in one's own loop, `jaxal.query(apply_fn, variables, pool_inputs,
labeled_mask, budget)` runs one selection with the same machinery.
"""

__version__ = "0.1.0"


def __getattr__(name):
  """`jaxal.query` (see `jaxal.querying`), imported on first use: `import jaxal` stays free of
  jax, which `python -m jaxal.main` sets up before importing it."""
  if name == "query":
    from jaxal.querying import query  # pylint: disable=import-outside-toplevel
    return query
  raise AttributeError(f"module 'jaxal' has no attribute {name!r}")
