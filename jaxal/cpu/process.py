"""CPU-only runtime settings: huge pages and resident buffers (glibc malloc), XLA's own convolutions.

Every call of a compiled XLA:CPU program allocates its temporary buffers (71 MB for one
small-CNN training step at batch 128) and frees them on return. glibc serves such blocks
with `mmap` (or from per-thread arenas that it trims back to the OS), so the next call
faults every page in again: ~18,000 minor page faults and ~30 ms of kernel time per
small-CNN step on a 2-core machine, a third of the step (benchmarks/NOTES.md §6).

`keep_buffers_resident()` sets, through `mallopt`:
* `M_ARENA_MAX = 1`: XLA's worker threads share the main heap (per-thread arenas are capped
  at 64 MB per heap and trimmed on free);
* `M_MMAP_MAX = 0`: large blocks come from the heap, not from fresh mappings;
* `M_TRIM_THRESHOLD = 1 GiB`: freed memory stays in the process, up to 1 GiB at the top.
The next call then reuses warm pages. The price is that the process keeps its peak heap
(up to 1 GiB more than it uses), and that one shared arena slows multi-threaded compiles.

Measured on a 2-core machine (NOTES §6): training steps 1.3-1.6x faster for the small CNN,
PreAct-ResNet-20 and A(1,1)/A(1,2), 1.05-1.15x for A(2,4); but the compile-bound digits demo
got 15-25% slower and a ResNet-18 study cell anywhere from 10% slower to 10% faster. So it is
opt-in: `JAXAL_KEEP_BUFFERS=1` for long CPU training (`jaxal.main` and `jaxal.study` call it
first thing), and `benchmarks/train_step.py --malloc resident`.

It must run before the JAX backend starts its threads (a thread keeps the arena it first
used). It does nothing unless `JAXAL_KEEP_BUFFERS=1`, off Linux/glibc, or when an
accelerator plugin (CUDA, ROCm, TPU) is installed.

`restart_with_huge_pages()` is the default instead (`jaxal.main` and `jaxal.study` call it
first thing; `JAXAL_HUGE_PAGES=0` turns it off). The faults stay, but each maps a 2 MiB page
instead of a 4 KiB one: glibc's tunable `glibc.malloc.hugetlb=1` (glibc 2.35+) makes malloc
`madvise(MADV_HUGEPAGE)` its large blocks, which the kernel honours when its transparent
huge pages are in "madvise" mode (in "always" mode it needs no advice). A(2,4)'s training
step went from 34,000 faults and ~66 ms of kernel time to ~240 faults and ~15 ms, with
compiles unchanged (NOTES §6h). glibc reads tunables only when a process starts, so the
function re-executes the interpreter, with the same arguments, `GLIBC_TUNABLES` extended.

XLA:CPU hands convolutions to its YNNPACK library, whose weight-gradient convolutions are
slower here than XLA's own (NOTES §6c). `train_compiler_options()` keeps YNNPACK to dots for
the training steps and for scoring's forward passes (NOTES §6h), per compiled program (the
default; `JAXAL_XLA_CONVS=0` turns it off). `use_xla_convolutions()`, with `JAXAL_XLA_CONVS=1`, does the same for every program of
the process through `XLA_FLAGS` (which made the k-center kernels somewhat slower). The option
is experimental, and XLA rejects one it does not know, so both apply only for the jaxlib
series where it was measured (`XLA_CONVS_JAXLIB`), and never over a user's own setting.
"""

import ctypes
import ctypes.util
import functools
import importlib.metadata
import importlib.util
import os
import platform
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
TRIM_THRESHOLD_BYTES = 1 << 30
_ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin", "libtpu")
_applied = False


def accelerator_plugin_installed() -> bool:
  """Whether a JAX GPU or TPU plugin is importable (then the CPU is not the compute device)."""
  return any(importlib.util.find_spec(name) is not None for name in _ACCELERATOR_PLUGINS)


def keep_buffers_resident() -> bool:
  """Applies the malloc settings above once per process; returns whether they are in effect."""
  global _applied
  if _applied:
    return True
  if os.environ.get("JAXAL_KEEP_BUFFERS", "0") != "1" or platform.system() != "Linux":
    return False
  if platform.libc_ver()[0] != "glibc" or accelerator_plugin_installed():
    return False
  libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
  ok = all(libc.mallopt(option, value) == 1 for option, value in
           ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)))
  _applied = ok
  return ok


HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
_HUGE_PAGES_GLIBC = (2, 35)  # the first glibc with the tunable
_THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


def transparent_huge_pages_mode(path: str = _THP_MODE_FILE) -> str:
  """The kernel's transparent-huge-page mode ("always", "madvise", "never"), or "" if unknown."""
  try:
    with open(path, encoding="ascii") as f:
      text = f.read()
  except OSError:
    return ""
  start, end = text.find("["), text.find("]")
  return text[start + 1:end] if 0 <= start < end else ""


def with_huge_pages_tunable(tunables: str) -> str:
  """`GLIBC_TUNABLES` (colon-separated) with `HUGE_PAGES_TUNABLE` set, others kept."""
  kept = [t for t in tunables.split(":") if t and not t.startswith("glibc.malloc.hugetlb=")]
  return ":".join(kept + [HUGE_PAGES_TUNABLE])


def huge_pages_in_effect() -> bool:
  """Whether this process started with `HUGE_PAGES_TUNABLE` in `GLIBC_TUNABLES`."""
  return HUGE_PAGES_TUNABLE in os.environ.get("GLIBC_TUNABLES", "").split(":")


def _glibc_version():
  name, version = platform.libc_ver()
  try:
    return tuple(int(v) for v in version.split(".")[:2]) if name == "glibc" else None
  except ValueError:
    return None


def restart_with_huge_pages() -> bool:
  """Re-executes this Python process with `HUGE_PAGES_TUNABLE` (see the module docstring).

  Returns only when no restart is needed or possible: False, or True when the tunable is
  already in effect. Skipped with `JAXAL_HUGE_PAGES=0`, off Linux, for glibc older than
  2.35, unless the kernel's huge pages are in "madvise" mode, when an accelerator plugin is
  installed, and when the command line is unknown. Call it before any work: the process
  starts again from the top. When the exec itself fails (OSError, e.g. a sandbox that
  forbids it), it warns in one line on stderr and returns False with `GLIBC_TUNABLES` as it
  was: the run goes on in place, with small pages.
  """
  if huge_pages_in_effect():
    return True
  if os.environ.get("JAXAL_HUGE_PAGES", "1") == "0" or platform.system() != "Linux":
    return False
  glibc = _glibc_version()
  if glibc is None or glibc < _HUGE_PAGES_GLIBC or transparent_huge_pages_mode() != "madvise":
    return False
  argv = getattr(sys, "orig_argv", None)
  if not argv or not sys.executable or accelerator_plugin_installed():
    return False
  before = os.environ.get("GLIBC_TUNABLES")
  os.environ["GLIBC_TUNABLES"] = with_huge_pages_tunable(before or "")
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execv(sys.executable, [sys.executable] + list(argv[1:]))
  except OSError as e:  # small pages, same results
    if before is None:
      del os.environ["GLIBC_TUNABLES"]
    else:
      os.environ["GLIBC_TUNABLES"] = before
    print(f"warning: cannot restart with huge pages ({e}); running without them (JAXAL_HUGE_PAGES=0 skips this)",
          file=sys.stderr, flush=True)
  return False


YNN_DOTS_ONLY = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT"
XLA_CONVS_JAXLIB = ((0, 10),)  # jaxlib (major, minor) series that know the flag


@functools.lru_cache(maxsize=None)  # read once: `Trainer` asks for every model it builds
def jaxlib_series():
  """The installed jaxlib's (major, minor), or None."""
  try:
    return tuple(int(v) for v in importlib.metadata.version("jaxlib").split(".")[:2])
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return None


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return True  # cannot tell: leave XLA_FLAGS alone


def use_xla_convolutions() -> bool:
  """With `JAXAL_XLA_CONVS=1`, adds `YNN_DOTS_ONLY` to `XLA_FLAGS`; returns whether it is in
  effect. No-op when an accelerator plugin is installed, for other jaxlib series, after the
  backend has started, or when `XLA_FLAGS` already sets the YNN fusion type."""
  if os.environ.get("JAXAL_XLA_CONVS", "0") != "1":
    return False
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" in flags:
    return YNN_DOTS_ONLY in flags.split()
  if accelerator_plugin_installed():
    return False
  if jaxlib_series() not in XLA_CONVS_JAXLIB or _backends_started():
    return False
  os.environ["XLA_FLAGS"] = f"{flags} {YNN_DOTS_ONLY}".strip()
  return True


def train_compiler_options() -> dict | None:
  """XLA options for the jitted training steps (`Trainer`), per program: on the CPU backend,
  YNNPACK kept to dots, so that the step's convolutions run XLA's own kernels (training 1.06-1.4x
  faster across the zoo, NOTES §6d) while every other program (k-center's fused reductions,
  scoring) keeps YNNPACK. None (the compiler's defaults) with `JAXAL_XLA_CONVS=0`, when
  `XLA_FLAGS` already sets the fusion type (as `JAXAL_XLA_CONVS=1` does for the whole
  process), off the CPU backend, and for jaxlib series where the option was not measured
  (an unknown option fails the compile)."""
  if os.environ.get("JAXAL_XLA_CONVS", "") == "0" or "xla_cpu_experimental_ynn_fusion_type" in os.environ.get(
      "XLA_FLAGS", ""):
    return None
  import jax  # pylint: disable=import-outside-toplevel
  if jax.default_backend() != "cpu" or jaxlib_series() not in XLA_CONVS_JAXLIB:
    return None
  name, value = YNN_DOTS_ONLY.lstrip("-").split("=")
  return {name: value}
