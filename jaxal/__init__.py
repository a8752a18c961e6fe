"""jaxal: deep active learning in JAX/Flax, with the architecture chosen along with the data.

One active-learning round runs data -> model -> train -> score -> select -> label;
the subpackages follow that order (`data`, `models`, `train`, `acquisition`, `search`),
and `loop.run(config, workdir)` drives the rounds.
"""

__version__ = "0.1.0"
