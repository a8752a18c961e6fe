"""Counting XLA compilations through JAX's monitoring hooks."""

import jax

_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
  """Counts backend compilations while active: `with CompileCounter() as c: ...; c.count`."""

  def __init__(self):
    self.count = 0

  def _listener(self, event: str, duration: float, **kwargs):
    del duration, kwargs
    if event == _EVENT:
      self.count += 1

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listener)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listener)
    return False

  def take(self) -> int:
    """Returns the count since the last `take()` and resets it."""
    n, self.count = self.count, 0
    return n
