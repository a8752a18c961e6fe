"""Devices, meshes and shardings: data parallelism over a 1-D `data` mesh axis.

Parameters, optimizer state and the pool are replicated; each batch (and each scoring
chunk) is split over the `data` axis with a sharding constraint inside the jitted step, and
XLA inserts the gradient all-reduce. Results equal a single device's up to float
reassociation. Multi-host runs call `initialize_distributed()` first (the JAX
multi-controller runtime); every process then holds the same pool state and runs the same
program, and only process 0 writes files.
"""

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(enabled: bool) -> None:
  """`jax.distributed.initialize()` when asked (flag/config) or when JAXAL_DISTRIBUTED=1.

  Coordinator, process count and id come from the environment (JAX_COORDINATOR_ADDRESS,
  JAX_NUM_PROCESSES, JAX_PROCESS_ID) or are auto-detected on Slurm and Cloud TPU.
  """
  if not (enabled or os.environ.get("JAXAL_DISTRIBUTED") == "1"):
    return
  kwargs = {}
  if "JAX_COORDINATOR_ADDRESS" in os.environ:
    kwargs = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                  num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                  process_id=int(os.environ["JAX_PROCESS_ID"]))
  jax.distributed.initialize(**kwargs)


def is_primary() -> bool:
  """True on the process that writes logs, plots and label files."""
  return jax.process_index() == 0


def make_mesh(num_devices: int = 0) -> Mesh | None:
  """A 1-D `data` mesh over the first `num_devices` devices (0 = all); None for one device."""
  devices = jax.devices()
  n = len(devices) if num_devices == 0 else num_devices
  if n > len(devices):
    raise ValueError(f"parallel.num_devices: asked for {n} devices, {len(devices)} are available")
  if n == 1:
    return None
  return Mesh(np.array(devices[:n]), (DATA_AXIS,))


def num_devices(mesh: Mesh | None) -> int:
  return 1 if mesh is None else mesh.size


def replicated(mesh: Mesh | None):
  return None if mesh is None else NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh | None):
  return None if mesh is None else NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh: Mesh | None):
  """Places `tree` on every device of `mesh` (no-op without a mesh)."""
  if mesh is None:
    return tree
  return jax.device_put(tree, replicated(mesh))


def constrain_batch(x, sharding):
  """Splits the leading axis of `x` over the data axis (inside jit; no-op without a mesh)."""
  return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


# XLA:CPU uses a host buffer in place when it is aligned to this many bytes.
HOST_ALIGNMENT = 64


def to_device(x, dtype=None):
  """`x` as a jax Array on the default device (a jax Array stays where it is).

  A numpy array that is not `HOST_ALIGNMENT`-aligned (numpy's own allocations are 16-byte
  aligned) is first copied by numpy into an aligned buffer, which the CPU backend then uses
  in place: XLA's own copy faults in fresh pages and took 3-20 ms for 20 MB against about
  1 ms for numpy's (benchmarks/NOTES.md §7g). An aligned array is used in place on the CPU
  backend, so it must not be written while the result is in use. `dtype` casts on the
  device."""
  if not isinstance(x, jax.Array):
    x = np.asarray(x)
    x = x.astype(jax.dtypes.canonicalize_dtype(x.dtype), copy=False)  # float64 -> float32 without x64
    on_cpu = jax.default_backend() == "cpu"  # elsewhere device_put copies to the device anyway
    if on_cpu and (x.ctypes.data % HOST_ALIGNMENT or not x.flags.c_contiguous):
      buffer = np.empty(x.nbytes + HOST_ALIGNMENT, np.uint8)
      start = -buffer.ctypes.data % HOST_ALIGNMENT
      aligned = buffer[start:start + x.nbytes].view(x.dtype).reshape(x.shape)
      np.copyto(aligned, x)
      x = aligned
    x = jax.device_put(x)
  return x if dtype is None or x.dtype == dtype else x.astype(dtype)
