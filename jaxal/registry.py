"""A name -> entry table that users extend through `register`, never by editing a dict.

`jaxal.models`, `jaxal.acquisition`, `jaxal.search` and `jaxal.pretrain` each hold one.
The table is a read-only mapping (iterating yields the names); each package's
`register(name, ...)` adds an entry with its metadata, and `unregister(name)` removes
one (for tests and notebooks that register a component more than once).
"""

from collections.abc import Mapping
from typing import Any, Iterator


class Registry(Mapping):
  """Registered `kind`s by name; duplicates are refused, so nothing is replaced silently."""

  def __init__(self, kind: str):
    self._kind = kind
    self._entries: dict[str, Any] = {}

  def add(self, name: str, entry) -> None:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
      raise ValueError(f"a {self._kind} name must be a non-empty string without surrounding spaces, got {name!r}")
    if ":" in name or "/" in name:  # "module:attr" means an import; names become folder names
      raise ValueError(f"{self._kind} name {name!r} may not contain ':' or '/'")
    if name in self._entries:
      raise ValueError(f"{self._kind} {name!r} is already registered; unregister it first or pick another name")
    self._entries[name] = entry

  def remove(self, name: str) -> None:
    if name not in self._entries:
      raise ValueError(f"{self._kind} {name!r} is not registered")
    del self._entries[name]

  def unknown(self, name: str) -> str:
    """The message for a name that is not registered."""
    return f"unknown {self._kind} {name!r}; known: {sorted(self._entries)}"

  def __getitem__(self, name: str):
    return self._entries[name]

  def __iter__(self) -> Iterator[str]:
    return iter(self._entries)

  def __len__(self) -> int:
    return len(self._entries)

  def __repr__(self) -> str:
    return f"Registry({self._kind}: {', '.join(sorted(self._entries))})"
