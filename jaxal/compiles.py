"""XLA compilations: counting them (JAX's monitoring hooks), and compiling a large program
ahead of its call so that the compiler's freed host memory goes back to the OS first.

XLA's compiler allocates hundreds of MB of short-lived host memory for a large program (the
pruned k-center kernel, whatever the pool size) and frees it on return, but glibc keeps the
freed pages in the process: they would then sit beside the program's own buffers while it
runs, and count towards the run's peak memory (benchmarks/NOTES.md §12).
"""

import ctypes
import ctypes.util
import functools
import platform

import jax

_COMPILED = "/jax/core/compile/backend_compile_duration"
_LOADED = "/jax/compilation_cache/cache_hits"


class CompileCounter:
  """Counts the programs XLA built while active: `with CompileCounter() as c: ...; c.count`.

  A program loaded from JAX's persistent compilation cache counts as one built: it was
  missing from the in-memory cache just as a compiled one was, and recompilation per round
  is the bug this counter exists to catch, whichever cache then serves the program."""

  def __init__(self):
    self.count = 0

  def _on_duration(self, event: str, duration: float, **kwargs):
    del duration, kwargs
    if event == _COMPILED:
      self.count += 1

  def _on_event(self, event: str, **kwargs):
    del kwargs
    if event == _LOADED:
      self.count += 1

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._on_duration)
    jax.monitoring.register_event_listener(self._on_event)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._on_duration)
    jax.monitoring.unregister_event_listener(self._on_event)
    return False

  def take(self) -> int:
    """Returns the count since the last `take()` and resets it."""
    n, self.count = self.count, 0
    return n


@functools.lru_cache(maxsize=None)
def _glibc():
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return None
  try:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
  except OSError:
    return None


def release_host_memory() -> bool:
  """Hands the heap's free pages back to the OS (glibc's `malloc_trim`); whether it could.
  Leaves every live buffer alone: only the process's resident size changes."""
  libc = _glibc()
  return bool(libc is not None and libc.malloc_trim(0) >= 0)


def compile_ahead(jitted, *args, **kwargs) -> None:
  """Compiles `jitted` for these arguments into the cache its calls use (a no-op for a
  signature compiled before), then `release_host_memory()`: call it right before the call."""
  jitted.lower(*args, **kwargs).compile()
  release_host_memory()
