"""Counting XLA compilations through JAX's monitoring hooks."""

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
