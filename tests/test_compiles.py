"""`jaxal.compiles`: compiling ahead fills the cache the call uses, and the host memory the
compiler (or anything else) freed goes back to the OS."""

import functools
import platform

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import compiles


def _rss_bytes() -> int:
  with open("/proc/self/status", encoding="ascii") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@functools.partial(jax.jit, static_argnames=("scale",))
def _scaled(x, scale: int):
  return jnp.cumsum(x) * scale


def test_compile_ahead_compiles_once_into_the_calls_cache():
  x = jnp.arange(37.0)
  with compiles.CompileCounter() as ahead:
    compiles.compile_ahead(_scaled, x, scale=3)
  with compiles.CompileCounter() as call:
    out = _scaled(x, scale=3)
    compiles.compile_ahead(_scaled, x, scale=3)  # a signature compiled before: nothing new
  np.testing.assert_array_equal(np.asarray(out), np.cumsum(np.arange(37.0)) * 3)
  assert (ahead.count, call.count) == (1, 0)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_freed_heap_memory_goes_back_to_the_os():
  """Blocks freed between live ones stay in the process (glibc trims only the heap's top)
  until `release_host_memory`."""
  dropped, kept = [], []
  for _ in range(1500):  # 64 KiB blocks (heap, not mmap) with a small live one after each
    dropped.append(np.ones(8192))
    kept.append(np.ones(64))
  before = _rss_bytes()
  del dropped
  freed = _rss_bytes()
  assert compiles.release_host_memory()
  after = _rss_bytes()
  assert freed - after > 50 * 2**20, (before, freed, after)  # of the 98 MB freed
  assert sum(float(k[0]) for k in kept) == 1500
