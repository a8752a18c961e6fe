"""The runtime policy: which kernels and loop forms a run compiles, chosen once at start-up.

jaxal was tuned on a 2-core CPU, and XLA:CPU rewards tricks that only cost on a GPU or TPU
(dense convolutions with diagonal kernels, Python-unrolled step blocks, ...). Those tricks
live in `jaxal/cpu/`; whether a program uses them is decided here, from the backend and the
config's `runtime` section, and nowhere else. The policy is a frozen dataclass: the Trainer
and the Predictor receive it explicitly, models take it as a field, and `config.json`
records it, so a compiled program depends only on its arguments and the recorded config
(no environment variable read while tracing, no module-global switch).

Fields (config values in brackets; "auto" picks by backend):
* `kernels` ["auto" | "cpu" | "stock"]: "cpu" enables the XLA:CPU rewrites (BatchNorm batch
  sums as products, the max-pool backward without select-and-scatter, depthwise convs of up
  to 64 channels as dense convs with diagonal kernels); "stock" runs Flax/XLA's own ops.
* `conv_impl` ["auto" | "per_shape" | "xla" | "im2col"]: "per_shape" is the CPU choice per
  static shape (dense or im2col matmuls on tiny maps, XLA's convolution with a fenced input
  elsewhere); "xla" is `lax.conv_general_dilated` everywhere.
* `unroll_steps` ["auto" | "unroll" | "scan"]: training blocks and MC-dropout passes as
  straight-line code (fast on XLA:CPU, whose while loops are slow around convolutions) or as
  `lax.scan` (compiles once per block on accelerators).
* `init_prng` ["auto" | "partitionable" | "non_partitionable"]: the threefry form used for
  weight init. The partitionable form (JAX's default) shards; on the CPU the other one
  compiled the digits demo's init several times faster, and nothing is sharded there.
* `compiler_options` ["auto" | "ynn_dots_only" | "none"]: per-program XLA options of the
  training steps and scoring passes. "ynn_dots_only" keeps XLA:CPU's YNNPACK library to dots
  (`jaxal.cpu.process.train_compiler_options`); "auto" picks it on the CPU where the jaxlib
  series knows the option and `JAXAL_XLA_CONVS` (read once, at start-up) is not "0".
"""

import dataclasses

KERNELS = ("auto", "cpu", "stock")
CONV_IMPLS = ("auto", "per_shape", "xla", "im2col")
UNROLL = ("auto", "unroll", "scan")
INIT_PRNG = ("auto", "partitionable", "non_partitionable")
COMPILER_OPTIONS = ("auto", "ynn_dots_only", "none")
FIELDS = {"kernels": KERNELS, "conv_impl": CONV_IMPLS, "unroll_steps": UNROLL, "init_prng": INIT_PRNG,
          "compiler_options": COMPILER_OPTIONS}


@dataclasses.dataclass(frozen=True)
class Runtime:
  """A resolved policy (no "auto" left). The default is the accelerator policy: stock ops."""

  kernels: str = "stock"
  conv_impl: str = "xla"
  unroll_steps: bool = False
  init_prng: str = "partitionable"
  compiler_options: str = "none"

  def __post_init__(self):
    for name, allowed in FIELDS.items():
      value = getattr(self, name)
      if name == "unroll_steps":
        if not isinstance(value, bool):
          raise ValueError(f"runtime.unroll_steps must be a bool here, got {value!r}")
      elif value not in allowed[1:]:
        raise ValueError(f"runtime.{name} must be one of {allowed[1:]}, got {value!r}")

  @property
  def cpu_kernels(self) -> bool:
    return self.kernels == "cpu"

  @property
  def partitionable_init(self) -> bool:
    return self.init_prng == "partitionable"

  def as_config(self) -> dict:
    """The config fields that select exactly this policy (what `config.json` records)."""
    return {"kernels": self.kernels, "conv_impl": self.conv_impl,
            "unroll_steps": "unroll" if self.unroll_steps else "scan", "init_prng": self.init_prng,
            "compiler_options": self.compiler_options}

  def jit_compiler_options(self) -> dict | None:
    """`jax.jit(compiler_options=...)` for the training steps and scoring passes."""
    if self.compiler_options == "none":
      return None
    from jaxal.cpu import process  # pylint: disable=g-import-not-at-top
    name, value = process.YNN_DOTS_ONLY.lstrip("-").split("=")
    return {name: value}


STOCK = Runtime()
CPU = Runtime(kernels="cpu", conv_impl="per_shape", unroll_steps=True, init_prng="non_partitionable")


def for_backend(backend: str) -> Runtime:
  """The "auto" policy of a backend: the CPU tricks on "cpu", stock ops on GPUs and TPUs."""
  if backend != "cpu":
    return STOCK
  from jaxal.cpu import process  # pylint: disable=g-import-not-at-top
  return dataclasses.replace(CPU, compiler_options="ynn_dots_only" if process.train_compiler_options() else "none")


def check(fields) -> None:
  """Raises `config.ConfigError` naming the field for a value outside `FIELDS` (no compute)."""
  from jaxal.config import ConfigError  # pylint: disable=g-import-not-at-top  (config imports this module)
  for name, value in dict(fields).items():
    if name not in FIELDS:
      raise ConfigError(f"runtime.{name}: unknown field; known: {sorted(FIELDS)}")
    if value not in FIELDS[name]:
      raise ConfigError(f"runtime.{name}: must be one of {', '.join(FIELDS[name])}, got {value!r}")


def resolve(fields=None, backend: str | None = None) -> Runtime:
  """The policy for config `runtime` fields (a mapping; missing fields are "auto") on `backend`
  (default: JAX's default backend, which this call starts)."""
  fields = dict(fields or {})
  check(fields)
  if backend is None:
    import jax  # pylint: disable=g-import-not-at-top
    backend = jax.default_backend()
  base = for_backend(backend)
  kernels = fields.get("kernels", "auto")
  kernels = base.kernels if kernels == "auto" else kernels
  conv_impl = fields.get("conv_impl", "auto")
  conv_impl = ("per_shape" if kernels == "cpu" else "xla") if conv_impl == "auto" else conv_impl
  unroll = fields.get("unroll_steps", "auto")
  unroll = base.unroll_steps if unroll == "auto" else unroll == "unroll"
  init_prng = fields.get("init_prng", "auto")
  init_prng = base.init_prng if init_prng == "auto" else init_prng
  options = fields.get("compiler_options", "auto")
  options = base.compiler_options if options == "auto" else options
  return Runtime(kernels, conv_impl, unroll, init_prng, options)


def from_config(config, backend: str | None = None) -> Runtime:
  """`resolve` of a run config's `runtime` section (absent in configs saved before it existed)."""
  return resolve(config.get("runtime", {}) if hasattr(config, "get") else {}, backend)
