"""Training- and eval-step throughput of zoo models, with compile time and FLOPs apart.

    python benchmarks/train_step.py --models resnet_grid:1:1,resnet_grid:1:2,resnet_grid:2:4,preact_resnet20,small_cnn \
        --json OUT.json

A model spec is `name` or `resnet_grid:BLOCKS:STACKS`; 32x32x3 inputs unless the model is
`small_cnn` (28x28x1), or `--input-shape` says otherwise. One record per model and step kind:
`model`, `framework` ("jax" or "torch"), `step` ("train" or "eval"), `input_shape`, `batch`,
`images_per_second` (median of `--repeats` timed calls after warm-up), `compile_seconds`,
`gflops_per_image` (XLA's cost analysis of the compiled step) and `gflops_per_second`.
A training call runs `--steps-per-call` unrolled steps (default: `train.steps_per_call`,
as `Trainer` does; its img/s is per step), recorded as `steps_per_call`; the PyTorch twin
runs one eager step per call. `--dtype bfloat16` times mixed precision (bf16 compute, f32 parameters and statistics).
`--conv-impl xla|im2col|per_shape|auto` sets the runtime policy's `conv_impl` (default auto:
the backend's policy; xla gives the "before" figures of benchmarks/NOTES.md §2), and
`--kernels cpu|stock|auto` its `kernels`; each record's `runtime` is the policy timed. When `torch` is importable (benchmark-only, not
a jaxal dependency) each model with a twin in `torch_models.py` is also timed in PyTorch
(SGD step and eval step, 2 threads, eager, in a subprocess): records with `framework` "torch", whose
`gflops_per_image` is the JAX count of the same architecture and `compile_seconds` the
first call. The two processes take turns, one call each (paired timing): on a shared machine
the load changes within minutes (one model's JAX figure moved 1.2x between identical runs),
so each PyTorch call is timed right after the JAX call it is compared with, and each JAX
record gets `vs_torch_paired`, the median over the pairs of PyTorch's seconds over JAX's
(above 1: JAX is faster), also the table's last column. `--no-torch` skips them. `--malloc` sets the JAX process's allocator:
`hugepages` (the default, as `jaxal.main` runs: `jaxal.cpu.process.restart_with_huge_pages()`,
NOTES §6h), `glibc` (glibc's defaults: the "before") or `resident`
(`cpu_process.keep_buffers_resident()`, NOTES §6). The PyTorch process runs with glibc's
defaults, as a PyTorch user's would, unless `--torch-malloc same` gives it the JAX process's
setting. Each record's `malloc` says which its process had.
The training step compiles with the policy's compiler options (on the CPU,
XLA's own convolutions instead of YNNPACK's, as `Trainer` does; `JAXAL_XLA_CONVS=0` for
YNNPACK's, the "before" of NOTES §6d), recorded as `train_compiler_options`; so does the eval
step, as jaxal's scoring (`jaxal.inference`) does. `--xla-convs`
runs XLA's own CPU convolutions in every program of the process (`JAXAL_XLA_CONVS=1`).
Under `conv_impl = per_shape` the differentiated XLA convolutions fence their inputs
(`jaxal.cpu.convs.fence_input`, NOTES §6f), and convs over maps smaller than their kernel run
as per-pixel matmuls (`jaxal.cpu.convs.dense_conv`, NOTES §6h), recorded as `dense_convs`;
`--no-dense-convs` gives them im2col, the "before".

With `--dtype bfloat16` on an accelerator each JAX record also gets `peak_tflops`, the
device's dense bfloat16 peak (looked up from the device kind for the GPUs and TPUs in
`BF16_PEAK_TFLOPS`, or `--peak-tflops`, which also applies to float32 runs), and
`fraction_of_peak`, the achieved FLOP rate over it:

    python benchmarks/train_step.py --models resnet_grid:2:4 --dtype bfloat16 --no-torch
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxal import config as config_lib, models  # noqa: E402
from jaxal.cpu import process as cpu_process  # noqa: E402
from jaxal import runtime as runtime_lib  # noqa: E402
from jaxal.cpu import convs as cpu_convs  # noqa: E402
from jaxal.data import augment, pipeline  # noqa: E402
from jaxal.train import trainer as trainer_lib  # noqa: E402


def parse_model(spec: str):
  parts = spec.split(":")
  if parts[0] == "resnet_grid":
    blocks, stacks = (int(parts[1]), int(parts[2])) if len(parts) == 3 else (1, 1)
    return "resnet_grid", {"blocks": blocks, "stacks": stacks, "width": 64}
  return parts[0], {}


def flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, list):
    analysis = analysis[0]
  return float((analysis or {}).get("flops", float("nan")))


class TorchPartner:
  """The PyTorch twin of a model in its own process (`torch_models.py --serve`), timed one call
  at a time between JAX's calls, so that both see the same load on the machine."""

  def __init__(self, spec, shape, batch, same_malloc=False):
    self.proc, self.first, self.version, self.env = None, None, None, dict(os.environ)
    if importlib.util.find_spec("torch") is None:  # not imported here: its threads stay out of JAX's process
      return
    name, options = parse_model(spec)
    if not same_malloc:  # glibc's defaults, as a PyTorch user runs
      self.env["JAXAL_KEEP_BUFFERS"] = "0"
      self.env["GLIBC_TUNABLES"] = ":".join(t for t in self.env.get("GLIBC_TUNABLES", "").split(":")
                                            if t and t != cpu_process.HUGE_PAGES_TUNABLE)
    # A separate process: beside JAX's thread pool PyTorch's OpenMP threads ran up to 9x slower.
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_models.py")
    self.proc = subprocess.Popen([sys.executable, script, "--serve", name, json.dumps(options),
                                  ",".join(map(str, shape)), str(batch)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, env=self.env)
    ready = json.loads(self.proc.stdout.readline())  # after both steps' first calls
    if ready is None:
      self.close()
      return
    self.first, self.version = ready["first"], ready["version"]

  def time(self, step: str) -> float:
    time.sleep(PAUSE_SECONDS)  # let JAX's threads go idle
    self.proc.stdin.write(step + "\n")
    self.proc.stdin.flush()
    seconds = float(self.proc.stdout.readline())
    time.sleep(PAUSE_SECONDS)  # and PyTorch's
    return seconds

  def close(self):
    if self.proc is not None:
      self.proc.stdin.close()
      self.proc.wait()
      self.proc = None


PAUSE_SECONDS = 0.05


def torch_records(partner, spec, shape, batch, jax_records, torch_times):
  out = []
  for jr, times in zip(jax_records, torch_times):
    seconds, gf = float(np.median(times)), jr["gflops_per_image"]
    first = partner.first[0 if jr["step"] == "train" else 1]
    jr["vs_torch_paired"] = float(np.median(np.asarray(times) / np.asarray(jr.pop("_times"))))
    out.append({"model": spec, "framework": "torch", "step": jr["step"], "dtype": "float32",
                "input_shape": list(shape), "batch": batch, "images_per_second": batch / seconds,
                "compile_seconds": first, "gflops_per_image": gf, "gflops_per_second": gf * batch / seconds,
                "device": "cpu", "torch_version": partner.version, "malloc": malloc_setting(partner.env)})
  return out


def malloc_setting(env) -> str:
  """"resident", "hugepages" or "glibc": the allocator setting a process with `env` runs."""
  if env.get("JAXAL_KEEP_BUFFERS") == "1":
    return "resident"
  return "hugepages" if cpu_process.HUGE_PAGES_TUNABLE in env.get("GLIBC_TUNABLES", "").split(":") else "glibc"


# Dense bfloat16 peaks (TFLOP/s) from the vendors' data sheets, matched in order against
# `jax.devices()[0].device_kind` (more specific names first).
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4),
                    ("A100", 312.0), ("TPU v5 lite", 197.0), ("TPU v5p", 459.0), ("TPU v6 lite", 918.0),
                    ("TPU v4", 275.0))


def peak_tflops(device_kind: str, override: float = 0.0):
  """The device's dense bf16 peak: `override` when given, else the table's, else None."""
  if override > 0:
    return override
  return next((peak for name, peak in BF16_PEAK_TFLOPS if name in device_kind), None)


def default_shape(spec):
  return (28, 28, 1) if parse_model(spec)[0] == "small_cnn" else (32, 32, 3)


def bench(spec, batch, repeats, shape, dtype, steps_per_call=1, partner=None, policy=None):
  """JAX records of `spec` (each with `_times`, its per-step seconds) and the PyTorch partner's
  per-step seconds for train and eval, each timed right after the JAX call of the same index."""
  name, options = parse_model(spec)
  model = models.create(name, 10, **options)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (batch,) + shape, dtype=np.uint8)
  y = (np.arange(batch) % 10).astype(np.int32)
  c = config_lib.base_config().train
  c.batch_size, c.steps_per_call, c.lr_schedule, c.compute_dtype = batch, steps_per_call, "0:0.01", dtype
  pre = pipeline.make_preprocess(x, "image", "per_channel")
  t = trainer_lib.Trainer(model, c, pre, augment.AugmentConfig(), shape, np.uint8, runtime=policy)
  model = t.model  # with the policy
  state = t.init(jax.random.key(0))
  inputs, labels = jnp.asarray(x), jnp.asarray(y)
  # The same batch at every step of a call (a call runs `steps_per_call` unrolled steps).
  idx = np.tile(np.arange(batch, dtype=np.int32), (steps_per_call, 1))
  valid = np.ones(steps_per_call, bool)
  records = []
  t0 = time.perf_counter()
  lowered = t._block.lower(state, inputs, labels, idx, valid, jax.random.key(1), 0.01)  # pylint: disable=protected-access
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  train_flops = flops(compiled)
  times, torch_times = [], ([], [])
  for i in range(repeats + 1):
    t0 = time.perf_counter()
    state, out = compiled(state, inputs, labels, idx, valid, jax.random.key(i), 0.01)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - t0) / steps_per_call)
    if partner is not None and i > 0:
      torch_times[0].append(partner.time("train"))
  records.append(dict(step="train", times=times[1:], compile_seconds=compile_s, flops=train_flops / steps_per_call))
  evaluate = jax.jit(lambda v, xb: model.apply(v, pre(xb), train=False)[0],
                     compiler_options=t.runtime.jit_compiler_options())  # as jaxal's scoring compiles
  t0 = time.perf_counter()
  compiled_eval = evaluate.lower(state.variables, inputs).compile()
  compile_s = time.perf_counter() - t0
  times = []
  for i in range(repeats + 1):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled_eval(state.variables, inputs))
    times.append(time.perf_counter() - t0)
    if partner is not None and i > 0:
      torch_times[1].append(partner.time("eval"))
  records.append(dict(step="eval", times=times[1:], compile_seconds=compile_s, flops=flops(compiled_eval)))
  out = []
  for r in records:
    seconds = float(np.median(r["times"]))
    out.append({"model": spec, "framework": "jax", "step": r["step"], "dtype": dtype, "input_shape": list(shape),
                "batch": batch, "images_per_second": batch / seconds, "compile_seconds": r["compile_seconds"],
                "gflops_per_image": r["flops"] / batch / 1e9,
                "gflops_per_second": r["flops"] / seconds / 1e9, "device": jax.devices()[0].platform,
                "conv_impl": t.runtime.conv_impl, "runtime": t.runtime.as_config(),
                "steps_per_call": steps_per_call if r["step"] == "train" else 1, "_times": r["times"]})
  return out, torch_times


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", default="resnet_grid:1:1,resnet_grid:1:2,preact_resnet20,small_cnn")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--input-shape", default="")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--json", default="")
  parser.add_argument("--conv-impl", default="auto", choices=["auto", "per_shape", "xla", "im2col"])
  parser.add_argument("--kernels", default="auto", choices=["auto", "cpu", "stock"])
  parser.add_argument("--no-torch", action="store_true")
  parser.add_argument("--steps-per-call", type=int, default=config_lib.base_config().train.steps_per_call,
                      help="training steps per compiled call, as `train.steps_per_call` (default: the config's)")
  parser.add_argument("--malloc", default="hugepages", choices=["hugepages", "glibc", "resident"],
                      help="the JAX process's allocator: huge pages (jaxal.main's default), glibc's defaults, "
                           "or resident buffers (NOTES 6, 6h)")
  parser.add_argument("--torch-malloc", default="glibc", choices=["glibc", "same"],
                      help="the PyTorch process's allocator: glibc's defaults, or the same as JAX's")
  parser.add_argument("--xla-convs", action="store_true",
                      help="JAXAL_XLA_CONVS=1: XLA's own CPU convolutions instead of YNNPACK's (NOTES 6c)")
  parser.add_argument("--no-dense-convs", action="store_true",
                      help="im2col instead of cpu.convs.dense_conv for maps smaller than the kernel (NOTES 6h)")
  parser.add_argument("--peak-tflops", type=float, default=0.0,
                      help="the accelerator's peak, for fraction_of_peak (default: BF16_PEAK_TFLOPS by device kind)")
  args = parser.parse_args()
  if args.malloc == "hugepages":
    cpu_process.restart_with_huge_pages()  # re-executes this script with the tunable, where it applies
  elif cpu_process.huge_pages_in_effect():
    raise SystemExit(f"--malloc {args.malloc}: GLIBC_TUNABLES sets {cpu_process.HUGE_PAGES_TUNABLE}; unset it")
  os.environ["JAXAL_KEEP_BUFFERS"] = "1" if args.malloc == "resident" else "0"  # also read by the torch process
  resident = cpu_process.keep_buffers_resident()  # before JAX's backend starts its threads
  if args.xla_convs:
    os.environ["JAXAL_XLA_CONVS"] = "1"
  xla_convs = cpu_process.use_xla_convolutions()
  policy = runtime_lib.resolve({"conv_impl": args.conv_impl, "kernels": args.kernels})
  if args.no_dense_convs:
    cpu_convs.DENSE_MAX_PAIRS = 0  # benchmark-only: read at trace time
  device = jax.devices()[0]
  # The table holds bf16 peaks; for float32 runs the peak must be given.
  use_table = device.platform != "cpu" and args.dtype == "bfloat16"
  peak = peak_tflops(device.device_kind, args.peak_tflops) if use_table or args.peak_tflops > 0 else None
  shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else None
  records = []
  print(f"{'model':<22} {'fw':<6} {'step':<6} {'dtype':<9} {'steps':>5} {'img/s':>9} {'compile s':>10} {'GFLOP/img':>10} {'GFLOP/s':>9} {'vs torch':>8}")
  for spec in args.models.split(","):
    spec_shape = shape or default_shape(spec)
    partner = None if args.no_torch else TorchPartner(spec, spec_shape, args.batch, args.torch_malloc == "same")
    partner = partner if partner is not None and partner.proc is not None else None
    jax_records, torch_times = bench(spec, args.batch, args.repeats, spec_shape, args.dtype, args.steps_per_call,
                                     partner, policy)
    twin_records = []
    if partner is not None:
      twin_records = torch_records(partner, spec, spec_shape, args.batch, jax_records, torch_times)
      partner.close()
    for r in jax_records:
      r.pop("_times", None)
      r["malloc"] = "resident" if resident else ("hugepages" if cpu_process.huge_pages_in_effect() else "glibc")
    for r in jax_records + twin_records:
      r["xla_convs"] = xla_convs
      r["dense_convs"] = policy.conv_impl == "per_shape" and cpu_convs.DENSE_MAX_PAIRS > 0
      r["train_compiler_options"] = policy.jit_compiler_options() or {}
      if peak and r["framework"] == "jax":
        r["peak_tflops"], r["fraction_of_peak"] = peak, r["gflops_per_second"] / (peak * 1e3)
      records.append(r)
      share = f" {r['fraction_of_peak']:>7.1%} of {peak:g} TFLOP/s" if "fraction_of_peak" in r else ""
      paired = f"{r['vs_torch_paired']:.2f}x" if "vs_torch_paired" in r else ""
      print(f"{r['model']:<22} {r['framework']:<6} {r['step']:<6} {r['dtype']:<9} {r.get('steps_per_call', 1):>5} "
            f"{r['images_per_second']:>9.1f} "
            f"{r['compile_seconds']:>10.1f} {r['gflops_per_image']:>10.3f} {r['gflops_per_second']:>9.1f} {paired:>8}{share}",
            flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(records, f, indent=2)


if __name__ == "__main__":

  main()
