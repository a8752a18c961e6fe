"""Devices, meshes and shardings: data parallelism over a 1-D `data` mesh axis.

Parameters, optimizer state and the pool are replicated; each batch (and each scoring
chunk) is split over the `data` axis with a sharding constraint inside the jitted step, and
XLA inserts the gradient all-reduce. Results equal a single device's up to float
reassociation. Multi-host runs call `initialize_distributed()` first (the JAX
multi-controller runtime); every process then holds the same pool state and runs the same
program, and only process 0 writes files.

A user's mesh may have Auto or Explicit axes (`jax.make_mesh` makes Explicit ones by
default): jaxal computes on its Auto twin (`as_auto_mesh`), so both run the same program
and give the same results. The shardings made here lie on the twin, and the entry points
that take a user's arrays (`to_device`, `Trainer`, `Predictor`, DeepCluster) move them
there with `on_auto_mesh`. Inside `jax.set_mesh` of an Explicit mesh jaxal does not run
(`batch_sharded` says so).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

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
  return Mesh(np.array(devices[:n]), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def as_auto_mesh(mesh: Mesh | None) -> Mesh | None:
  """`mesh` with every axis Auto: the mesh jaxal computes on, whatever axis types it is given.

  jaxal's kernels place each batch with a sharding constraint and let XLA propagate the
  rest, which is what Auto axes mean. Under Explicit axes every op's output sharding is part
  of its type, and some ops then refuse sharded operands (cumsum, nonzero: a
  `ShardingTypeError`) or a constraint's spec (`with_sharding_constraint` on an Explicit
  axis). Converting the mesh, rather than typing every kernel for Explicit axes, keeps
  one program for both kinds (same results) and leaves the kernels untouched."""
  if mesh is None or all(t == AxisType.Auto for t in mesh.axis_types):
    return mesh
  return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def as_auto_sharding(sharding):
  """A `NamedSharding` moved onto its mesh's Auto twin (`as_auto_mesh`); others unchanged."""
  if isinstance(sharding, NamedSharding) and isinstance(sharding.mesh, Mesh):
    mesh = as_auto_mesh(sharding.mesh)
    if mesh is not sharding.mesh:
      return NamedSharding(mesh, sharding.spec, memory_kind=sharding.memory_kind)
  return sharding


def on_auto_mesh(tree):
  """`tree` with each array that lies on a mesh with Explicit axes relabeled, without a copy,
  onto that mesh's Auto twin (same devices, same layout): one jitted program refuses inputs
  on both kinds of mesh, and jaxal's own arrays lie on Auto meshes."""
  def move(x):
    if isinstance(x, jax.Array):
      sharding = as_auto_sharding(x.sharding)
      if sharding is not x.sharding:
        return jax.device_put(x, sharding)
    return x
  return jax.tree_util.tree_map(move, tree)


def num_devices(mesh: Mesh | None) -> int:
  return 1 if mesh is None else mesh.size


def row_shards(x, mesh: Mesh | None) -> int:
  """Into how many equal shares `x`'s rows split over `mesh`'s `data` axis (1 without a mesh,
  or when they do not split evenly): kernels that pass a share at a time keep rows local."""
  shards = 1 if mesh is None else int(dict(mesh.shape).get(DATA_AXIS, 1))
  return shards if x.shape[0] % shards == 0 else 1


def split_mesh(x, mesh: Mesh | None) -> Mesh | None:
  """The Auto twin of `mesh` when its `data` axis splits `x`'s rows in more than one equal
  share, else None: what the share-wise kernels (`top_k_split`, `take_rows`) take."""
  mesh = as_auto_mesh(mesh)
  return mesh if row_shards(x, mesh) > 1 else None


def top_k_split(values, k: int, mesh: Mesh | None = None):
  """`lax.top_k(values, k)` (ties to the lower index; inside jit) for a vector split in equal
  shares over `mesh`'s `data` axis: each share's own top k, then the top k of those (mesh
  size * k), so that only they cross devices (XLA's partitioner gathers a sharded vector
  whole onto every device for a `top_k`). The same values and indices: each share's list
  is in (value desc, index asc) order and the shares follow each other."""
  if mesh is None:
    return jax.lax.top_k(values, k)

  def local(share):
    top, idx = jax.lax.top_k(share, min(k, share.shape[0]))
    idx = idx + jax.lax.axis_index(DATA_AXIS) * share.shape[0]
    top, idx = (jax.lax.all_gather(v, DATA_AXIS, tiled=True) for v in (top, idx))
    top, j = jax.lax.top_k(top, k)
    return top, idx[j]

  # check_vma off: an all_gather's result is typed as varying, though every shard holds the same.
  return jax.shard_map(local, mesh=mesh, in_specs=P(DATA_AXIS), out_specs=(P(), P()), check_vma=False)(values)


_SAME_WIDTH_INT = {2: jnp.int16, 4: jnp.int32}  # take_rows' arrays: 16- or 32-bit items


def take_rows(arrays: tuple, j, mesh: Mesh | None = None) -> tuple:
  """Row `j` of each array (inside jit), for arrays whose rows are split in equal shares over
  `mesh`'s `data` axis: the owner's row bits, the others' zeros, summed as integers over the
  axis, so the row crosses devices and nothing else (XLA's partitioner gathers a whole
  sharded array onto every device for a dynamic index). Bit-exact, -0.0 included."""
  if mesh is None:
    return tuple(x[j] for x in arrays)

  def local(j, *shares):
    per = shares[0].shape[0]
    start = jax.lax.axis_index(DATA_AXIS) * per
    mine, at = (j >= start) & (j < start + per), jnp.clip(j - start, 0, per - 1)
    bits = [jax.lax.bitcast_convert_type(share[at], _SAME_WIDTH_INT[share.dtype.itemsize]) for share in shares]
    return tuple(jax.lax.bitcast_convert_type(jax.lax.psum(jnp.where(mine, b, 0), DATA_AXIS), share.dtype)
                 for b, share in zip(bits, shares))

  # check_vma off: a psum's result is the same on every shard.
  return jax.shard_map(local, mesh=mesh, in_specs=(P(),) + (P(DATA_AXIS),) * len(arrays),
                       out_specs=(P(),) * len(arrays), check_vma=False)(j, *arrays)


def replicated(mesh: Mesh | None):
  return None if mesh is None else NamedSharding(as_auto_mesh(mesh), P())


def batch_sharded(mesh: Mesh | None):
  """Rows split over the mesh's `data` axis. ValueError when the mesh has no such axis, or
  when called inside `jax.set_mesh` of an Explicit-axis mesh (every jaxal program would then
  fail on its Auto-axis arrays with a less clear error)."""
  if mesh is None:
    return None
  if DATA_AXIS not in mesh.axis_names:
    raise ValueError(f"mesh: jaxal splits rows over a mesh axis named {DATA_AXIS!r}; this mesh has axes "
                     f"{tuple(mesh.axis_names)} (make it with e.g. jax.make_mesh((8,), ({DATA_AXIS!r},)))")
  if any(t == AxisType.Explicit for t in jax.sharding.get_abstract_mesh().axis_types):
    raise ValueError("mesh: jaxal's programs run on Auto mesh axes and cannot be traced inside "
                     "`jax.set_mesh` of a mesh with Explicit axes; pass the mesh as `mesh=` outside that block")
  return NamedSharding(as_auto_mesh(mesh), P(DATA_AXIS))


def replicate(tree, mesh: Mesh | None):
  """Places `tree` on every device of `mesh` (no-op without a mesh)."""
  if mesh is None:
    return tree
  return jax.device_put(tree, replicated(mesh))


def constrain_batch(x, sharding):
  """Splits the leading axis of `x` over the data axis (inside jit; no-op without a mesh)."""
  return x if sharding is None else jax.lax.with_sharding_constraint(x, as_auto_sharding(sharding))


# XLA:CPU uses a host buffer in place when it is aligned to this many bytes.
HOST_ALIGNMENT = 64


def aligned_empty(shape, dtype) -> np.ndarray:
  """`np.empty` whose data starts on a `HOST_ALIGNMENT` boundary: a loader that fills such an
  array hands it to `to_device` without the copy (for a large pool, the copy is the peak)."""
  dtype = np.dtype(dtype)
  nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  buffer = np.empty(nbytes + HOST_ALIGNMENT, np.uint8)
  start = -buffer.ctypes.data % HOST_ALIGNMENT
  return buffer[start:start + nbytes].view(dtype).reshape(shape)


def to_device(x, dtype=None):
  """`x` as a jax Array on the default device (a jax Array stays where it is).

  A numpy array that is not `HOST_ALIGNMENT`-aligned (numpy's own allocations are 16-byte
  aligned) is first copied by numpy into an aligned buffer, which the CPU backend then uses
  in place: XLA's own copy faults in fresh pages and took 3-20 ms for 20 MB against about
  1 ms for numpy's (benchmarks/NOTES.md §7g). An aligned array is used in place on the CPU
  backend, so it must not be written while the result is in use. `dtype` casts on the
  device. An array on a mesh with Explicit axes moves to its Auto twin (`on_auto_mesh`)."""
  if not isinstance(x, jax.Array):
    x = np.asarray(x)
    x = x.astype(jax.dtypes.canonicalize_dtype(x.dtype), copy=False)  # float64 -> float32 without x64
    on_cpu = jax.default_backend() == "cpu"  # elsewhere device_put copies to the device anyway
    if on_cpu and (x.ctypes.data % HOST_ALIGNMENT or not x.flags.c_contiguous):
      aligned = aligned_empty(x.shape, x.dtype)
      np.copyto(aligned, x)
      x = aligned
    x = jax.device_put(x)
  else:
    x = on_auto_mesh(x)
  return x if dtype is None or x.dtype == dtype else x.astype(dtype)
