"""One accelerator benchmark run: training FLOP rate, k-center, BALD and an SVP round.

    python benchmarks/device_suite.py --json suite.json                  # the issue's sizes (GPU/TPU)
    python benchmarks/device_suite.py --json suite.json --only kcenter,bald
    python benchmarks/device_suite.py --json smoke.json --smoke          # tiny sizes, CPU, seconds

Sized to finish in under 6 minutes on one H100, start-up and compiles included, since a GPU
may be lent only for minutes (an estimate: it has not yet run on a GPU). `FILE` is
rewritten (atomically) after every row, so a run cut short still reports what it measured;
a table is printed as rows arrive and at the end.

Sections (`--only` picks some, in this order):
* `train`: bf16 training (`train.compute_dtype="bfloat16"`) of A(2,4), ResNet-18 and
  PreAct-ResNet-164 at 32x32 and ResNet-50 (ImageNet stem) at 224x224, batch 128, through
  jaxal's `Trainer` and its compiled block of `--steps-per-call` steps (default 1: with
  more, the compile grows where the steps are unrolled). FLOPs per step from XLA's cost
  analysis of the compiled one-step block; achieved TFLOP/s against the device's dense
  bf16 peak (`BF16_PEAK_TFLOPS`, by `device_kind`).
* `kcenter`: `acquisition.kcenter_greedy` over 1M x 512 float32 rows on the device, 1,000
  labeled, budget 10,000. The floor reads n*d*4 bytes per pick at the device's memory
  bandwidth (`HBM_TBPS`); achieved is those bytes over the run time (the lookahead takes
  several picks per read, so it can pass the floor). Compile is the first call minus the
  second, which is timed.
* `bald`: `Predictor.mc_statistics` with 100 MC-dropout passes over a 50k pool of 32x32x3
  images, plus BALD's scores, on `small_cnn` (as benchmarks/selection.py; the 5M whole passes
  of a ResNet-20, at an estimated 50-100k images/s, would take a large share of the 6
  minutes), dropout 0.5 before the classifier: head-only, and full (block dropout 0.1 after
  each conv block, T whole forward passes). The floor is what the passes cannot beat: one
  plain forward pass over the pool (head-only) or T of them (full), timed with
  `Predictor.outputs`; fraction = floor seconds / run seconds. Head-only runs twice (the
  first compiles); full compiles on one chunk, then runs the pool once (that call also
  compiles the small concatenation of the chunks).
* `svp`: one Selection-via-Proxy round on CIFAR-shaped synthetic data (class-coloured noise):
  a pre-activation ResNet-20 proxy trained on 10k labels (`Trainer.fit`), scoring the 40k
  unlabeled rows of the 50k pool (least confidence, `Predictor.outputs`), the top 5,000
  added, a PreAct-ResNet-164 target trained on the 15k, one epoch each (bf16). Compile is a
  first one-block fit, timed apart; scoring runs twice and compile is the difference.

Each row: `section`, `name`, `sizes`, `compile_seconds`, `run_seconds`, `achieved` with
`achieved_unit`, `peak` (peak or floor, same unit; null where unknown, e.g. on the CPU),
`fraction` (achieved / peak), `device_kind`, `platform`, `jax_version`, plus a few extras.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxal import acquisition, models  # noqa: E402
from jaxal import config as config_lib  # noqa: E402
from jaxal.data import augment, pipeline  # noqa: E402
from jaxal.inference import Predictor  # noqa: E402
from jaxal.train import trainer as trainer_lib  # noqa: E402

SECTIONS = ("train", "kcenter", "bald", "svp")

# Dense bf16 peaks (TFLOP/s, vendors' data sheets), matched in order against `device_kind`:
# more specific names first ("TPU v5" is how JAX names a v5p, "TPU v5 lite" a v5e).
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4),
                    ("A100", 312.0), ("TPU v5 lite", 197.0), ("TPU v5p", 459.0), ("TPU v5", 459.0),
                    ("TPU v4", 275.0))
# Memory bandwidth (TB/s): H100 SXM 3.35, PCIe 2.0, NVL 3.9; H200 4.8; A100 (80 GB SXM) 2.0.
HBM_TBPS = (("H100 PCIe", 2.0), ("H100 NVL", 3.9), ("H100", 3.35), ("H200", 4.8), ("A100", 2.0))

FULL = {
    "train": [("A(2,4)", "resnet_grid", {"blocks": 2, "stacks": 4, "width": 64}, (32, 32, 3)),
              ("ResNet-18", "resnet18", {}, (32, 32, 3)),
              ("PreAct-ResNet-164", "preact_resnet164", {}, (32, 32, 3)),
              ("ResNet-50", "resnet50", {"stem": "imagenet"}, (224, 224, 3))],
    "train_batch": 128, "train_seconds": 2.0,
    "kcenter": {"n": 1_000_000, "d": 512, "labeled": 1000, "budget": 10_000},
    "bald": {"n": 50_000, "passes": 100, "model": ("small_cnn", {}), "shape": (32, 32, 3), "chunk": 1000},
    "svp": {"pool": 50_000, "labeled": 10_000, "budget": 5000, "epochs": 1, "batch": 128, "shape": (32, 32, 3),
            "proxy": ("preact_resnet20", {}), "target": ("preact_resnet164", {}), "chunk": 1000},
}
SMOKE = {
    "train": [("A(1,1) w4", "resnet_grid", {"blocks": 1, "stacks": 1, "width": 4}, (8, 8, 3))],
    "train_batch": 8, "train_seconds": 0.05,
    "kcenter": {"n": 4096, "d": 32, "labeled": 16, "budget": 32},
    "bald": {"n": 64, "passes": 4, "model": ("small_cnn", {"width": 4, "embed": 16}), "shape": (8, 8, 3),
             "chunk": 32},
    "svp": {"pool": 96, "labeled": 32, "budget": 16, "epochs": 1, "batch": 16, "shape": (8, 8, 3),
            "proxy": ("small_cnn", {"width": 4, "embed": 16}), "target": ("small_cnn", {"width": 4, "embed": 16}),
            "chunk": 32},
}


def lookup(table, device):
  """The table's figure for `device`, or None (unknown kinds and the CPU)."""
  if device.platform == "cpu":
    return None
  return next((value for name, value in table if name in device.device_kind), None)


class Report:
  """Rows so far, rewritten to `path` after each one (a run cut short still reports)."""

  COLUMNS = "{section:<8} {name:<22} {compile:>9} {run:>9} {achieved:>12} {unit:<9} {peak:>10} {fraction:>8}"

  def __init__(self, path: str, device):
    self.path, self.rows, self.device = path, [], device
    self._write()
    print(self.COLUMNS.format(section="section", name="name", compile="compile s", run="run s",
                              achieved="achieved", unit="unit", peak="peak", fraction="fraction"), flush=True)

  def add(self, section, name, sizes, compile_seconds, run_seconds, achieved, unit, peak, **extra):
    row = {"section": section, "name": name, "sizes": sizes, "compile_seconds": float(compile_seconds),
           "run_seconds": float(run_seconds), "achieved": float(achieved), "achieved_unit": unit,
           "peak": None if peak is None else float(peak),
           "fraction": None if not peak else float(achieved) / float(peak),
           "device_kind": self.device.device_kind, "platform": self.device.platform,
           "jax_version": jax.__version__, **extra}
    self.rows.append(row)
    self._write()
    print(self._line(row), flush=True)

  def _line(self, r):
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    return self.COLUMNS.format(section=r["section"], name=r["name"], compile=fmt(r["compile_seconds"], ".1f"),
                               run=fmt(r["run_seconds"], ".2f"), achieved=fmt(r["achieved"], ".4g"),
                               unit=r["achieved_unit"], peak=fmt(r["peak"], ".4g"), fraction=fmt(r["fraction"], ".1%"))

  def _write(self):
    if not self.path:
      return
    folder = os.path.dirname(os.path.abspath(self.path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".device_suite.", suffix=".json")
    with os.fdopen(fd, "w") as f:
      json.dump(self.rows, f, indent=1)
    os.replace(tmp, self.path)

  def table(self) -> str:
    return "\n".join(self._line(r) for r in self.rows)


def flops_of(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, list):
    analysis = analysis[0]
  return float((analysis or {}).get("flops", float("nan")))


def train_config(batch: int, steps_per_call: int, epochs: int = 1, eval_chunk: int = 512):
  c = config_lib.base_config().train
  c.batch_size, c.steps_per_call, c.epochs, c.lr_schedule = batch, steps_per_call, epochs, "0:0.05"
  c.eval_chunk_size = eval_chunk
  c.compute_dtype = "bfloat16"
  return c


def synthetic_images(n: int, shape, seed: int = 0, classes: int = 10):
  """uint8 images whose mean colour depends on the label (learnable), and the labels."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, n).astype(np.int32)
  colours = rng.uniform(40, 215, (classes, shape[-1]))
  images = colours[labels][:, None, None, :] + rng.normal(0, 40, (n,) + tuple(shape))
  return np.clip(images, 0, 255).astype(np.uint8), labels


def make_trainer(name, options, shape, batch, steps_per_call, images, epochs=1, eval_chunk=512):
  model = models.create(name, 10, **options)
  preprocess = pipeline.make_preprocess(images[:1024], "image", "per_channel")
  cfg = train_config(batch, steps_per_call, epochs, eval_chunk)
  return trainer_lib.Trainer(model, cfg, preprocess, augment.AugmentConfig(), shape, np.uint8), preprocess


def bench_train(report, sizes, steps_per_call):
  peak = lookup(BF16_PEAK_TFLOPS, report.device)
  batch = sizes["train_batch"]
  for label, name, options, shape in sizes["train"]:
    images, labels = synthetic_images(batch, shape)
    t, _ = make_trainer(name, options, shape, batch, steps_per_call, images)
    state = t.init(jax.random.key(0))
    inputs, labels = jnp.asarray(images), jnp.asarray(labels)
    key, lr = jax.random.key(1), np.float32(0.01)

    def block_args(state, steps):  # the same batch at every step: throughput, not learning
      return (state, inputs, labels, np.tile(np.arange(batch, dtype=np.int32), (steps, 1)), np.ones(steps, bool),
              key, lr)

    block = t._block  # pylint: disable=protected-access  (Trainer's compiled block of steps, as fit runs it)
    t0 = time.perf_counter()
    lowered = block.lower(*block_args(state, steps_per_call))
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    # FLOPs from a one-step block: a scanned block's cost analysis may count its body once.
    if steps_per_call > 1:
      lowered = block.lower(*block_args(state, 1))
    step_flops = flops_of(compiled if steps_per_call == 1 else lowered.compile())
    if not step_flops > 0:  # a backend without a count for the optimized program: the HLO before it
      step_flops = flops_of(lowered)
    t0 = time.perf_counter()
    state, out = compiled(*block_args(state, steps_per_call))  # warm-up
    jax.block_until_ready(out)
    calls = int(min(200, max(2, math.ceil(sizes["train_seconds"] / max(time.perf_counter() - t0, 1e-6)))))
    args = block_args(state, steps_per_call)[1:]
    t0 = time.perf_counter()
    for _ in range(calls):
      state, out = compiled(state, *args)
    jax.block_until_ready((state, out))
    run_s = time.perf_counter() - t0
    steps = calls * steps_per_call
    tflops = step_flops * steps / run_s / 1e12
    report.add("train", label, {"model": name, **options, "input_shape": list(shape), "batch": batch,
                                "steps_per_call": steps_per_call, "timed_steps": steps, "dtype": "bfloat16"},
               compile_s, run_s, tflops, "TFLOP/s", peak, images_per_second=batch * steps / run_s,
               gflops_per_step=step_flops / 1e9)
    del state, compiled, lowered


def bench_kcenter(report, sizes):
  n, d, budget = sizes["n"], sizes["d"], sizes["budget"]
  x = jax.block_until_ready(jax.random.normal(jax.random.key(0), (n, d), jnp.float32))
  labeled = np.zeros(n, bool)
  labeled[np.random.default_rng(0).choice(n, sizes["labeled"], replace=False)] = True
  times, picks = [], []
  for _ in range(2):  # the first call compiles; the second is timed
    t0 = time.perf_counter()
    p, stats = acquisition.kcenter_greedy(x, labeled, budget, with_stats=True)
    times.append(time.perf_counter() - t0)
    picks.append(np.asarray(p))
  floor_bytes = float(budget) * n * d * 4
  report.add("kcenter", "greedy", {"n": n, "d": d, "labeled": sizes["labeled"], "budget": budget,
                                   "dtype": "float32"},
             max(times[0] - times[1], 0.0), times[1], floor_bytes / times[1] / 1e12, "TB/s",
             lookup(HBM_TBPS, report.device), picks_per_second=budget / times[1],
             steps=int(stats.get("steps", budget)), same_picks=bool(np.array_equal(*picks)))
  del x


def _timed(fn) -> float:
  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - t0


def bench_bald(report, sizes):
  n, passes, chunk, shape = sizes["n"], sizes["passes"], sizes["chunk"], sizes["shape"]
  name, options = sizes["model"]
  images, _ = synthetic_images(n, shape)
  inputs = jnp.asarray(images)
  preprocess = pipeline.make_preprocess(images[:1024], "image", "per_channel")
  key = jax.random.key(3)
  forward_s = None
  for mode, extra in (("head_only", {}), ("full", {"block_dropout": 0.1})):
    model = models.create(name, 10, dropout=0.5, **options, **extra)
    variables = models.init_variables(model, jax.random.key(0), (1,) + tuple(shape))
    pred = lambda rows=None: Predictor(model, variables, inputs, preprocess, chunk_size=chunk, rows=rows)  # noqa: E731
    if forward_s is None:  # the floor's plain forward pass (dropout off: the same for both models)
      forward_compile = _timed(lambda: pred().outputs())
      forward_s = _timed(lambda: pred().outputs())
      forward_compile -= forward_s

    def bald(rows=None):
      stats = pred(rows).mc_statistics(passes, key, head_only=mode == "head_only")
      return acquisition.bald_from_stats(jnp.asarray(stats["mean_probs"]), jnp.asarray(stats["mean_entropy"]))

    if mode == "head_only":  # cheap: time the whole pool twice, the first call compiles
      compile_s = _timed(bald)
      run_s = _timed(bald)
      compile_s -= run_s
    else:  # T whole passes: compile on one chunk, then one timed call (it includes a small concat compile)
      compile_s = _timed(lambda: bald(np.arange(min(chunk, n))))
      run_s = _timed(bald)
    floor_s = forward_s * (passes if mode == "full" else 1)
    report.add("bald", mode, {"model": name, **options, **extra, "dropout": 0.5, "n": n, "passes": passes,
                              "chunk": chunk, "input_shape": list(shape)},
               max(compile_s, 0.0), run_s, n * passes / run_s, "passes/s", n * passes / floor_s,
               floor_seconds=floor_s, forward_seconds=forward_s, forward_compile_seconds=max(forward_compile, 0.0))


def bench_svp(report, sizes, steps_per_call):
  pool, n_labeled, budget, epochs = sizes["pool"], sizes["labeled"], sizes["budget"], sizes["epochs"]
  batch, shape, chunk = sizes["batch"], sizes["shape"], sizes["chunk"]
  images, labels = synthetic_images(pool, shape, seed=1)
  inputs = jnp.asarray(images)
  order = np.random.default_rng(2).permutation(pool).astype(np.int32)
  labeled, unlabeled = np.sort(order[:n_labeled]), np.sort(order[n_labeled:])
  common = {"pool": pool, "epochs": epochs, "batch": batch, "input_shape": list(shape),
            "steps_per_call": steps_per_call, "dtype": "bfloat16"}
  seconds, trainers = {}, {}

  def train(role, rows):
    name, options = sizes[role]
    spec = (name, json.dumps(options, sort_keys=True))  # a target equal to the proxy (the smoke's) reuses it
    if spec not in trainers:
      trainers[spec] = make_trainer(name, options, shape, batch, steps_per_call, images, epochs, chunk)
    trainer, preprocess = trainers[spec]
    t0 = time.perf_counter()  # compile: a fit of one block (init, the block, the finite-output check)
    trainer.fit(jax.random.key(5), inputs, labels, rows[:batch * steps_per_call], epochs=1)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = trainer.fit(jax.random.key(6), inputs, labels, rows)
    jax.block_until_ready(result.state)
    run_s = seconds[role] = time.perf_counter() - t0
    images_seen = epochs * math.ceil(rows.size / batch) * batch
    report.add("svp", f"{role}_train", {"model": name, **options, "labeled": int(rows.size), **common},
               compile_s, run_s, images_seen / run_s, "img/s", None, train_accuracy=float(result.train_accuracy))
    return trainer, preprocess, result.state

  proxy, preprocess, state = train("proxy", labeled)
  scored = {}

  def score(rows):
    logits, _ = Predictor(proxy.model, state.variables, inputs, preprocess, chunk_size=chunk, rows=rows).outputs()
    scored["scores"] = np.asarray(acquisition.least_confidence_from_logits(jnp.asarray(logits)))

  compile_s = _timed(lambda: score(unlabeled))  # the first call compiles; the second is timed
  run_s = _timed(lambda: score(unlabeled))
  compile_s = max(compile_s - run_s, 0.0)
  t0 = time.perf_counter()
  picks = unlabeled[np.argsort(-scored["scores"], kind="stable")[:budget]]
  seconds["select"] = run_s + time.perf_counter() - t0
  report.add("svp", "proxy_select", {"model": sizes["proxy"][0], "scored": int(unlabeled.size), "budget": budget,
                                     "chunk": chunk, **common},
             compile_s, seconds["select"], unlabeled.size / seconds["select"], "rows/s", None,
             acquisition="least_confidence")
  train("target", np.sort(np.concatenate([labeled, picks])))
  total = seconds["proxy"] + seconds["select"] + seconds["target"]
  report.add("svp", "round", {"proxy": sizes["proxy"][0], "target": sizes["target"][0], "labeled": n_labeled,
                              "budget": budget, **common},
             0.0, total, total, "s", None, selection_seconds=seconds["proxy"] + seconds["select"],
             selection_over_target=(seconds["proxy"] + seconds["select"]) / seconds["target"])


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--json", required=True, help="rows are written here (JSON list), after each row")
  parser.add_argument("--only", default="", help=f"comma list of sections: {','.join(SECTIONS)} (default all)")
  parser.add_argument("--smoke", action="store_true", help="tiny sizes, on the CPU: a check that every section runs")
  parser.add_argument("--steps-per-call", type=int, default=1,
                      help="training steps per compiled block in `train` and `svp` (Trainer's train.steps_per_call)")
  args = parser.parse_args(argv)
  args.sections = [s for s in args.only.split(",") if s] or list(SECTIONS)
  unknown = [s for s in args.sections if s not in SECTIONS]
  if unknown:
    parser.error(f"--only: unknown section(s) {','.join(unknown)}; choose from {','.join(SECTIONS)}")
  if args.steps_per_call < 1:
    parser.error("--steps-per-call must be >= 1")
  if not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
    parser.error(f"--json: the folder of {args.json} does not exist")
  return args


def main(argv=None):
  args = parse_args(argv)
  sizes = SMOKE if args.smoke else FULL
  start = time.perf_counter()
  device = jax.devices("cpu")[0] if args.smoke else jax.devices()[0]
  with jax.default_device(device):
    report = run_sections(args, sizes, device)
  print(f"\n{device.device_kind} ({device.platform}), jax {jax.__version__}, "
        f"{time.perf_counter() - start:.0f} s in all")
  print(report.table())
  return report.rows


def run_sections(args, sizes, device) -> Report:
  report = Report(args.json, device)
  if report.device.platform == "cpu" and not args.smoke:
    print("note: the full sizes on a CPU take hours; --smoke checks that every section runs", flush=True)
  runners = {"train": lambda: bench_train(report, sizes, args.steps_per_call),
             "kcenter": lambda: bench_kcenter(report, sizes["kcenter"]),
             "bald": lambda: bench_bald(report, sizes["bald"]),
             "svp": lambda: bench_svp(report, sizes["svp"], args.steps_per_call)}
  for section in SECTIONS:
    if section in args.sections:
      runners[section]()
  return report


if __name__ == "__main__":
  main()
