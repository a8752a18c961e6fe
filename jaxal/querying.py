"""`jaxal.query` (defined here): one selection for people who own their training loop.

Their model is an apply function and its variables; `query` wraps the function as a model
(`ApplyFnModel`) and runs the loop's own machinery on it: `inference.Predictor` scores the
pool in fixed-size chunks (one compilation per apply function and chunk shape, split over
the devices of a data mesh), and `acquisition.acquire` selects. For the same model, pool and
key the picks are the loop's.
"""

import dataclasses
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import acquisition as acquisition_lib
from jaxal import inference
from jaxal import parallel

# Options of the scoring machinery (the loop's `acquisition.chunk_size` and
# `parallel.num_devices`); every other option goes to the acquisition, as the loop passes
# `config.acquisition.options`, and is checked by the registry (`acquisition.check_options`).
SCORING_OPTIONS = ("chunk_size", "num_devices")


@dataclasses.dataclass(frozen=True)
class ApplyFnModel:
  """A user's `apply_fn(variables, x, *, train, mc_dropout, rngs=None) -> (logits, embedding)`
  in the form the `Predictor` calls a model. It is a static argument of the compiled chunk
  functions, so pass the same function object every round to compile once."""

  apply_fn: Callable

  def apply(self, variables, x, *, train: bool = False, mc_dropout: bool = False, rngs=None, method=None):
    if method is not None:
      raise ValueError(f"an apply_fn model has no method {method!r} (mc_head_only needs a jaxal model)")
    return self.apply_fn(variables, x, train=train, mc_dropout=mc_dropout, rngs=rngs)


def _as_given(x):
  """The preprocessing of `query`: none, the apply function gets the pool inputs as given."""
  return x


def _as_key(key) -> jax.Array:
  """A typed PRNG key from None (key 0), an int seed, a typed key or a raw `PRNGKey`."""
  if key is None:
    return jax.random.key(0)
  if isinstance(key, numbers.Integral) and not isinstance(key, bool):
    return jax.random.key(int(key))
  dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
  if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
    return key
  if dtype == np.uint32 and shape == (2,):
    return jax.random.wrap_key_data(jnp.asarray(key))
  raise ValueError(f"key: expected None, an int, jax.random.key(...) or jax.random.PRNGKey(...), got {key!r}")


def _acquisition_options(acquisition: str, options: dict) -> dict:
  """`options` less the scoring ones, checked; a bad one raises naming it."""
  for name, low in (("chunk_size", 1), ("num_devices", 0)):
    value = options.get(name, low)
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
      raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
  rest = {k: v for k, v in options.items() if k not in SCORING_OPTIONS}
  acquisition_lib.check_options(acquisition, rest)  # config.ConfigError, a ValueError
  if rest.get("mc_head_only"):
    raise ValueError("mc_head_only: an apply_fn has no separate head; MC dropout runs the whole apply_fn")
  return rest


def query(apply_fn: Callable, variables: Any, pool_inputs: Any, labeled_mask: Any, budget: int, *,
          acquisition: str = "least_confidence", key=None, **options) -> np.ndarray:
  """Scores the pool with the user's model and selects `budget` unlabeled points.

  Args:
    apply_fn: `apply_fn(variables, x, *, train, mc_dropout, rngs=None) -> (logits (B, C),
      embedding (B, d))`, as jaxal's models (a Flax `model.apply` of such a module works as
      is). `mc_dropout=True` must turn dropout on (drawing from `rngs["dropout"]`) and leave
      BatchNorm in inference mode; `query` never sets `train`.
    variables: what `apply_fn` takes first (e.g. `{"params": ..., "batch_stats": ...}`).
    pool_inputs: `(n, ...)` array; chunks of its rows reach `apply_fn` as given (no
      normalization, same dtype; the last chunk is padded).
    labeled_mask: `(n,)` bool, the points already labeled (never picked; core-set's centers).
    budget: how many points to pick, at most the unlabeled count.
    acquisition: a name in `jaxal.acquisition.ACQUISITIONS` (registered ones included).
    key: PRNG key for `random`, `badge` and the MC-dropout ones (None: `jax.random.key(0)`;
      an int seeds one).
    **options: `chunk_size` (rows per compiled call, default 512), `num_devices`
      (data-parallel devices, 0 = all local ones, the default), and the acquisition's
      options as in `config.acquisition.options` (`mc_samples`, `kcenter_dtype`, ...).

  Returns:
    `(budget,)` numpy int32 pool indices, in the acquisition's order.

  Raises:
    ValueError: naming the argument or option that is malformed.
  """
  if acquisition not in acquisition_lib.ACQUISITIONS:
    raise ValueError(f"acquisition: unknown {acquisition!r}; known: {', '.join(sorted(acquisition_lib.ACQUISITIONS))}")
  if not callable(apply_fn):
    raise ValueError(f"apply_fn: expected a callable, got {type(apply_fn).__name__}")
  shape = np.shape(pool_inputs)
  if not shape or shape[0] == 0:
    raise ValueError(f"pool_inputs: expected an (n, ...) array with n >= 1, got shape {shape}")
  mask = np.asarray(labeled_mask)
  if mask.dtype != np.bool_ or mask.shape != shape[:1]:
    raise ValueError(f"labeled_mask: expected a bool array of shape ({shape[0]},) like pool_inputs, "
                     f"got {mask.dtype} {mask.shape}")
  unlabeled = int((~mask).sum())
  if not isinstance(budget, numbers.Integral) or isinstance(budget, bool) or not 0 <= budget <= unlabeled:
    raise ValueError(f"budget: expected an int from 0 to the {unlabeled} unlabeled points, got {budget!r}")
  acquisition_options = _acquisition_options(acquisition, options)
  key = _as_key(key)
  if budget == 0:
    return np.zeros(0, np.int32)
  mesh = parallel.make_mesh(int(options.get("num_devices", 0)))
  chunk_size = int(options.get("chunk_size", 512))
  if chunk_size % parallel.num_devices(mesh):
    raise ValueError(f"chunk_size: {chunk_size} is not divisible by the {parallel.num_devices(mesh)} devices; "
                     "change it or set num_devices")
  inputs = jnp.asarray(pool_inputs) if mesh is None else parallel.replicate(np.asarray(pool_inputs), mesh)
  predictor = inference.Predictor(ApplyFnModel(apply_fn), parallel.replicate(variables, mesh), inputs, _as_given,
                                  chunk_size=chunk_size, sharding=parallel.batch_sharded(mesh))
  view = acquisition_lib.PoolView(labeled_mask=mask, selectable_mask=~mask, predictor=predictor,
                                  options=acquisition_options)
  return acquisition_lib.acquire(acquisition, view, int(budget), key)
