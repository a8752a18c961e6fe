"""Pool arrays spread over processes: each process holds only its own share of the rows.

A streamed pool is scored in shares, one per process; `global_rows` joins the shares into
one global `jax.Array` whose rows are split over the mesh's `data` axis
(`jax.make_array_from_process_local_data`). The selection kernels (`top_k_selectable`,
`stochastic_top_k`, `kcenter_greedy`, `badge`) take such arrays as they are, XLA doing the
cross-process reductions, and return the same picks as one process on the whole pool,
replicated on every process.

A mesh axis splits only a multiple of its size, so the global array has `padded >= n`
rows: the last share ends with padding rows, which the kernels never pick (their masks
keep `n` entries, and the rows beyond them count as unselectable).
"""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxal import parallel
from jaxal.inference import put_beside


def row_mesh(x):
  """The (Auto) mesh whose `data` axis splits the rows of `x`, or None when `x` is not a
  jax Array split so (host arrays, one device, replicated arrays)."""
  sharding = getattr(x, "sharding", None)
  if not isinstance(sharding, NamedSharding) or sharding.is_fully_replicated or not sharding.spec:
    return None
  first = sharding.spec[0]
  if first != parallel.DATA_AXIS and first != (parallel.DATA_AXIS,):
    return None
  return parallel.as_auto_mesh(sharding.mesh)


def process_rows(n: int, mesh) -> tuple[int, int, int]:
  """`(start, stop, padded)`: this process's share `[start, stop)` of a pool of `n` rows split
  over the mesh's `data` axis, after padding the pool to `padded` rows (a multiple of the
  axis size). `stop` may run past `n` into the padding; a process may hold padding only."""
  size = mesh.shape[parallel.DATA_AXIS]
  padded = -(-n // size) * size
  shares = sorted(index[0].indices(padded)[:2]
                  for index in parallel.batch_sharded(mesh).addressable_devices_indices_map((padded,)).values())
  start, stop = shares[0][0], shares[-1][1]
  if sum(b - a for a, b in set(shares)) != stop - start:
    raise ValueError("mesh: this process's devices do not hold one contiguous block of rows; order the mesh's "
                     "devices by process (as jax.devices() does)")
  return start, stop, padded


def global_rows(local_rows, n: int, mesh) -> jax.Array:
  """One global array of a pool's `n` rows from each process's own share.

  Args:
    local_rows: this process's rows `[start, min(stop, n))` of `process_rows(n, mesh)`, host
      or device; zero rows are appended here up to the share's length.
    n: the pool's row count.
    mesh: the global 1-D `data` mesh (`parallel.make_mesh()`).
  Returns:
    `(padded, ...)` rows split over the `data` axis; rows `>= n` are padding.
  """
  start, stop, padded = process_rows(n, mesh)
  want = max(0, min(stop, n) - start)
  if local_rows.shape[0] != want:
    raise ValueError(f"global_rows: this process holds rows [{start}, {start + want}) of {n}, "
                     f"got {local_rows.shape[0]} rows")
  pad = [(0, stop - start - want)] + [(0, 0)] * (local_rows.ndim - 1)
  if isinstance(local_rows, jax.Array):
    local_rows = jax.numpy.pad(local_rows, pad) if pad[0][1] else local_rows
  else:
    local_rows = np.pad(np.asarray(local_rows), pad)
  return jax.make_array_from_process_local_data(parallel.batch_sharded(mesh), local_rows,
                                                (padded,) + tuple(local_rows.shape[1:]))


def mask_beside(mask, array) -> jax.Array:
  """A host `(n,)` bool mask put beside `array` (`inference.put_beside`: on its devices,
  replicated), padded with False up to `array`'s row count: padding rows are never picked."""
  mask = np.asarray(mask, bool)
  if array.shape[0] > mask.size:
    mask = np.concatenate([mask, np.zeros(array.shape[0] - mask.size, bool)])
  return put_beside(mask, array)


def rows_beside(host_rows, n_rows: int, mesh) -> jax.Array:
  """Host rows (masks) padded with zeros to `n_rows` and split over the mesh's `data` axis,
  as the global arrays they go with (every process passes the same values)."""
  host_rows = np.asarray(host_rows)
  pad = [(0, n_rows - host_rows.shape[0])] + [(0, 0)] * (host_rows.ndim - 1)
  return jax.device_put(np.pad(host_rows, pad), parallel.batch_sharded(mesh))


def _identity(x):
  return x


def fetch(tree):
  """`jax.device_get` that also reads arrays spread over processes: such an array is first
  replicated (one all-gather), so every process gets the whole value."""
  def gather(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
      x = jax.jit(_identity, out_shardings=NamedSharding(x.sharding.mesh, P()))(x)
    return x

  return jax.device_get(jax.tree_util.tree_map(gather, tree))


# The registry's acquisitions whose selection runs on arrays spread over processes (the
# others cluster or gather rows on the host: `refuse_spread`).
SPREAD_ACQUISITIONS = ("random", "least_confidence", "margin", "entropy", "bald", "mc_variance", "coreset", "badge")


def refuse_spread(name: str, *arrays) -> None:
  """Raises `config.ConfigError` when one of `arrays` is spread over processes: acquisition
  `name` needs the whole pool's rows in one process."""
  if any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in arrays):
    from jaxal.config import ConfigError  # pylint: disable=import-outside-toplevel  (config imports acquisition)
    raise ConfigError(f"acquisition.name: {name!r} needs the whole pool in one process and does not run on a pool "
                      f"spread over processes; these do: {', '.join(SPREAD_ACQUISITIONS)}")


def check_spread_run(config) -> None:
  """Raises `config.ConfigError` at a run's start, before any compute, when a streamed pool
  scored by several processes (its outputs spread over them, `inference.Predictor.spread`)
  meets a stage that needs the whole pool's outputs in one process."""
  if config.data.get("pool_storage", "memory") != "stream" or jax.process_count() < 2:
    return
  from jaxal.config import ConfigError  # pylint: disable=import-outside-toplevel  (config imports acquisition)
  if config.acquisition.name not in SPREAD_ACQUISITIONS:
    raise ConfigError(f"acquisition.name: {config.acquisition.name!r} needs the whole pool in one process; with "
                      f"data.pool_storage=stream and {jax.process_count()} processes the pool's scores stay spread "
                      f"over them; use one of {', '.join(SPREAD_ACQUISITIONS)}, or data.pool_storage=memory")
  whole_pool = [("al.stop", bool(config.al.get("stop", "")), "unset it"),
                ("target.agreement", bool(config.target.name) and bool(config.target.agreement),
                 "set it to False"),
                ("oracle.name", config.oracle.name != "simulated", "use the simulated oracle")]
  for field, used, fix in whole_pool:  # each reads the whole pool's predictions in one process
    if used:
      raise ConfigError(f"{field}: reads the whole pool's predictions in one process; with data.pool_storage=stream "
                        f"and {jax.process_count()} processes they stay spread over them; {fix}, or use "
                        "data.pool_storage=memory")
