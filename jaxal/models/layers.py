"""`Conv` (`nn.Conv` whose algorithm the runtime policy picks) and `runtime_of(module)`.

A model never chooses CPU or accelerator code itself: it asks `runtime_of(self)` for the
`jaxal.runtime.Runtime` it runs under. That is the nearest `runtime` field up the module
tree: the layer's own, else the `Classifier`'s (the Trainer and the Predictor set it from
the run's policy), else the stock policy. The policy is thus part of the model that a
jitted function receives, never a global or an environment variable.

`Conv` is `nn.Conv` itself (a subclass: same parameters `kernel` (kh, kw, cin, cout) and
`bias`, same auto names `Conv_N`), so checkpoints and parameter counts do not depend on the
policy. Its `conv_impl` is one of `IMPLS`:
* "auto" (default): the policy's `conv_impl`;
* "xla": `lax.conv_general_dilated` (what the stock policy uses on GPUs and TPUs);
* "per_shape": the CPU choice per static shape (`jaxal.cpu.convs.per_shape_conv`);
* "im2col": im2col wherever it applies (no dilation, no feature groups).
"""

import functools

import flax.linen as nn
from jax import lax

from jaxal import runtime as runtime_lib
from jaxal.cpu import convs as cpu_convs

IMPLS = ("auto", "per_shape", "xla", "im2col")


def runtime_of(module) -> runtime_lib.Runtime:
  """The policy `module` runs under: the nearest `runtime` field up its module tree, else stock."""
  while isinstance(module, nn.Module):
    policy = getattr(module, "runtime", None)
    if isinstance(policy, runtime_lib.Runtime):
      return policy
    module = module.parent
  return runtime_lib.STOCK


def conv(impl: str, lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
         preferred_element_type=None):
  """`lax.conv_general_dilated` computed by `impl` ("xla", "per_shape" or "im2col") where it applies."""
  if (impl == "xla" or batch_group_count != 1 or preferred_element_type is not None
      or not cpu_convs.applies(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count)):
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision, preferred_element_type=preferred_element_type)
  if impl == "per_shape":
    return cpu_convs.per_shape_conv(lhs, rhs, window_strides, padding, dimension_numbers, precision)
  return cpu_convs.im2col_conv(lhs, rhs, tuple(window_strides), padding, precision)


def _is_ours(fn) -> bool:
  return isinstance(fn, functools.partial) and fn.func is conv


class Conv(nn.Conv):
  """`nn.Conv` (identical parameters) computed as `conv_impl` says; see the module docstring.

  `runtime` optionally fixes the policy of this layer alone (tests, benchmarks)."""

  conv_impl: str = "auto"
  runtime: runtime_lib.Runtime | None = None

  def __post_init__(self):
    if self.conv_impl not in IMPLS:
      raise ValueError(f"conv_impl must be one of {IMPLS}, got {self.conv_impl!r}")
    super().__post_init__()  # sets `parent`, which `runtime_of` walks
    if self.conv_general_dilated_cls is None and (self.conv_general_dilated is None
                                                  or _is_ours(self.conv_general_dilated)):
      impl = runtime_of(self).conv_impl if self.conv_impl == "auto" else self.conv_impl
      object.__setattr__(self, "conv_general_dilated", functools.partial(conv, impl))
