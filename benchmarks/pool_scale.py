"""Pools past one machine (issue 28): peak memory, throughput and selection time of the
in-memory and the streamed pool, text at Amazon size, and k-center at a million points.

    # the issue's sizes (run by the lead; minutes to tens of minutes each on 2 CPU cores):
    python benchmarks/pool_scale.py --pool-size 1000000 --processes 1 --json bench_out/pool_1m_p1.json
    python benchmarks/pool_scale.py --pool-size 1000000 --processes 2 --json bench_out/pool_1m_p2.json
    python benchmarks/pool_scale.py --pool-size 200000 --with-memory --json bench_out/pool_200k.json
    python benchmarks/pool_scale.py --pool-size 100000 --with-memory --train-examples 10000 \
        --json bench_out/pool_100k_throughput.json
    python benchmarks/pool_scale.py --sections text --text-rows 3600000 --json bench_out/pool_text.json
    python benchmarks/pool_scale.py --sections coreset --json bench_out/pool_coreset.json
    python benchmarks/pool_scale.py --quick                              # a smoke run, seconds

Sections (`--sections`, default `images`):

* `images`: a synthetic ArrayRecord pool of `--pool-size` random 32x32x3 uint8 images (and a
  1,000-image test split), written shard by shard with `jaxal.data.array_record`'s record
  format under `--cache-dir` on first use and reused after. The streamed mode (`stream`, with
  `--processes` cooperating processes) and, with `--with-memory`, today's in-memory path
  (`memory`: `loop.load_data`, one process) each run in fresh subprocesses. Each scores the
  pool with A(1,2) at width 16 (untrained weights: this measures the data path), then selects
  `--budget` points by least confidence and by coreset from `--labeled` random labeled points.
  With `--train-examples M`, it also trains one epoch on M pool rows (after a compiling epoch).
* `text`: a synthetic CSV of `--text-rows` rows (Zhang et al.'s layout: class 1|2, title, text)
  whose texts are `--text-tokens` characters, i.e. that many tokens of configs/svp_amazon_polarity.py's
  character tokenizer (`data.max_length` is set to it), converted with `jaxal convert` (timed: rows/s,
  peak RSS), then scored by the config's fastText proxy in one round (least confidence, `--budget`),
  streamed from the converted directory and, with `--with-memory`, today's path (the CSV read and
  tokenized into memory).
* `coreset`: greedy k-center (`acquisition.kcenter_greedy` with coreset's default pruning) over
  `--coreset-size` random 128-d embeddings, `--labeled` labeled, budget `--budget`, timed; and
  the exactness check: on the first `--coreset-check-size` rows, the same call's picks against
  the one-process plain kernel's (`prune=False`, one pick per step). With `--processes K`, K
  cooperating processes run it with the rows split over all their devices (the sharded kernel).

Peak RSS: every measured step runs in a fresh subprocess; the parent collects its status with
`os.wait4`, whose `ru_maxrss` is the largest VmHWM of that process and of every descendant it
reaped (grain's worker processes included); the child also reports its own VmHWM from /proc and
how many descendant processes it saw. A row's `peak_rss_bytes` is the largest over its processes.
Where the peak comes from: `rss_by_phase_bytes` (process 0's; `..._per_process` with several)
gives, after each phase of the images and text children (`imports`, `pool_open`, `warm_up`,
`scoring`, then one per acquisition), VmRSS, the phase's own peak (`peak_rss_bytes`: the
child resets its VmHWM after each phase; `phase_peak_reset` False where the kernel refused)
and the bytes of live jax arrays; the parent prints them under the row.

JSON rows: `section`, `mode`, `processes`, `pool_size`, `pool_bytes`, `examples_per_second`
(scoring, after a compiling warm-up chunk), `selection_seconds` (least confidence + coreset,
their compilation included: seconds at small sizes), `peak_rss_bytes`, and details
(`scoring_seconds`, `load_seconds`, `seconds_by_acquisition`, `picks_sha256` (to compare
modes), `train_images_per_second`, `peak_rss_bytes_per_process`, ...). A mode that cannot run
(e.g. no streaming API yet) gives a row with `error`.
"""

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxal.data import array_record  # noqa: E402  (numpy only: the parent never imports jax)

IMAGE_SHAPE = (32, 32, 3)
TEST_SIZE = 1000
NUM_CLASSES = 10
MODEL = ("resnet_grid", {"blocks": 1, "stacks": 2, "width": 16})  # A(1,2) at width 16
AMAZON_CONFIG = ROOT / "configs" / "svp_amazon_polarity.py"


# ---------------------------------------------------------------- the synthetic pools


def _write_split(directory: pathlib.Path, split: str, n: int, per_shard: int, seed: int) -> dict:
  """Writes `n` random images as shards, one shard's images in memory at a time."""
  module = array_record._records_module()  # pylint: disable=protected-access
  num_shards = max(1, -(-n // per_shard))
  shards = []
  for k in range(num_shards):
    name = array_record._shard_name(split, k, num_shards)  # pylint: disable=protected-access
    path = directory / name
    start, stop = k * per_shard, min(n, (k + 1) * per_shard)
    images = np.random.default_rng([seed, k]).integers(0, 256, (stop - start,) + IMAGE_SHAPE, dtype=np.uint8)
    writer = module.ArrayRecordWriter(str(path), array_record.WRITER_OPTIONS)
    try:
      for i in range(start, stop):
        writer.write(array_record.encode_record(images[i - start], i % NUM_CLASSES, f"{split}{i}"))
    finally:
      writer.close()
    shards.append({"file": name, "num_records": stop - start, "bytes": path.stat().st_size,
                   "sha256": array_record._file_digest(path)})  # pylint: disable=protected-access
  return {"num_examples": n, "input_shape": list(IMAGE_SHAPE), "input_dtype": "uint8", "shards": shards}


def image_pool(cache_dir: pathlib.Path, pool_size: int, records_per_shard: int = 0) -> pathlib.Path:
  """The converted directory of a synthetic pool of `pool_size` images, written on first use.

  The index is written last (through a temporary file), so a directory with an index is whole;
  an interrupted one is written again.
  """
  directory = cache_dir / f"images_{pool_size}"
  if (directory / array_record.INDEX_NAME).exists():
    return directory
  directory.mkdir(parents=True, exist_ok=True)
  per_shard = records_per_shard or max(1, array_record.SHARD_BYTES // int(np.prod(IMAGE_SHAPE)))
  splits = {"pool": _write_split(directory, "pool", pool_size, per_shard, seed=0),
            "test": _write_split(directory, "test", TEST_SIZE, per_shard, seed=1)}
  index = {"format": array_record.FORMAT, "version": array_record.VERSION, "name": f"synthetic_{pool_size}",
           "modality": "image", "num_classes": NUM_CLASSES, "class_names": [str(c) for c in range(NUM_CLASSES)],
           "vocab_size": 0, "splits": splits}
  tmp = directory / (array_record.INDEX_NAME + ".tmp")
  tmp.write_text(json.dumps(index, indent=1) + "\n")
  tmp.replace(directory / array_record.INDEX_NAME)
  return directory


def text_csv(cache_dir: pathlib.Path, rows: int, tokens: int, test_rows: int = 1000):
  """Synthetic Amazon-polarity CSVs (train, test) of `rows` texts of `tokens` characters."""
  directory = cache_dir / f"text_{rows}x{tokens}"
  train, test = directory / "train.csv", directory / "test.csv"
  if train.exists() and test.exists():
    return train, test
  directory.mkdir(parents=True, exist_ok=True)
  alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz     ", np.uint8)
  for path, n, seed in ((test, test_rows, 1), (train, rows, 0)):
    tmp = path.with_suffix(".tmp")
    rng = np.random.default_rng(seed)
    with open(tmp, "wb") as f:
      for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        chars = alphabet[rng.integers(0, len(alphabet), (m, tokens))]
        labels = (rng.integers(0, 2, m) + 1).astype("S1")
        lines = [b'%s,"t","%s"\n' % (label, row.tobytes()) for label, row in zip(labels, chars)]
        f.write(b"".join(lines))
    tmp.replace(path)
  return train, test


def text_config_file(cache_dir: pathlib.Path, train: pathlib.Path, test: pathlib.Path, tokens: int) -> pathlib.Path:
  """A config file: configs/svp_amazon_polarity.py reading the synthetic CSVs, `tokens` per text."""
  path = cache_dir / f"text_config_{train.parent.name}.py"
  path.write_text(
      "import importlib.util\n"
      f"_spec = importlib.util.spec_from_file_location('svp_amazon_polarity', {str(AMAZON_CONFIG)!r})\n"
      "_module = importlib.util.module_from_spec(_spec)\n_spec.loader.exec_module(_module)\n\n\n"
      "def get_config():\n  c = _module.get_config()\n"
      f"  c.data.path, c.data.test_path = {str(train)!r}, {str(test)!r}\n"
      f"  c.data.max_length = {int(tokens)}\n  return c\n")
  return path


# ---------------------------------------------------------------- measuring a child process


def vm_hwm_bytes(pid="self") -> int:
  return status_bytes(pid).get("VmHWM", 0)


def status_bytes(pid="self") -> dict:
  """The `Vm*` and `Rss*` sizes of /proc/PID/status, in bytes."""
  out = {}
  for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
    key, _, value = line.partition(":")
    if key.startswith(("Vm", "Rss")) and value.strip().endswith("kB"):
      out[key] = int(value.split()[0]) * 1024
  return out


class PhaseMemory:
  """The process's memory after each phase (`mark`): VmRSS, VmHWM and the bytes of live jax
  arrays (on the CPU backend, host memory too). With `reset_peak` (a child), the high-water
  mark is reset after each mark (writing 5 to /proc/self/clear_refs), so each phase's
  `peak_rss_bytes` is its own peak; otherwise, or where the kernel refuses the reset
  (`hwm_reset` False), it is the peak so far. `peak` keeps the largest over the phases (the
  reset also lowers the process's own VmHWM and its ru_maxrss at exit)."""

  def __init__(self, reset_peak: bool = False):
    self.phases, self.peak, self.hwm_reset = {}, 0, reset_peak
    self._start = time.perf_counter()

  def mark(self, phase: str):
    status = status_bytes()
    self.peak = max(self.peak, status.get("VmHWM", 0))
    row = {"rss_bytes": status.get("VmRSS", 0), "peak_rss_bytes": status.get("VmHWM", 0),
           "rss_anon_bytes": status.get("RssAnon", 0), "seconds": round(time.perf_counter() - self._start, 1)}
    if "jax" in sys.modules:
      row["live_array_bytes"] = sum(x.nbytes for x in sys.modules["jax"].live_arrays())
    self.phases[phase] = row
    if self.hwm_reset:
      try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
      except OSError:
        self.hwm_reset = False

  def result(self) -> dict:
    return {"rss_by_phase_bytes": self.phases, "phase_peak_reset": self.hwm_reset}


def _descendants(pid: int) -> list[int]:
  found, todo = [], [pid]
  while todo:
    p = todo.pop()
    for task in pathlib.Path(f"/proc/{p}/task").glob("*"):
      try:
        children = [int(c) for c in (task / "children").read_text().split()]
      except OSError:
        continue
      found += children
      todo += children
  return found


class DescendantWatch:
  """Samples the child's live descendants (grain workers) every 0.2 s: their count and peak VmHWM."""

  def __enter__(self):
    self.seen, self.peak, self._stop = set(), 0, threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()
    return self

  def _run(self):
    while not self._stop.wait(0.2):
      for pid in _descendants(os.getpid()):
        try:
          self.peak = max(self.peak, vm_hwm_bytes(pid))
          self.seen.add(pid)
        except OSError:
          pass

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def run_children(commands: list[list[str]], envs: list[dict]) -> list[dict]:
  """Runs the commands at once; each writes its JSON result to the file named by `--result`.

  Returns per command its result plus `tree_peak_rss_bytes` (wait4's ru_maxrss: the process and
  every descendant it reaped) and `exit_code`.
  """
  tmp = pathlib.Path(tempfile.mkdtemp(prefix="pool_scale_"))
  procs = []
  for k, (command, env) in enumerate(zip(commands, envs)):
    result_file = tmp / f"{k}.json"
    procs.append((subprocess.Popen(command + ["--result", str(result_file)], cwd=ROOT, env=env), result_file))
  results = []
  for proc, result_file in procs:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = json.loads(result_file.read_text()) if result_file.exists() else {"error": "no result"}
    result.update(exit_code=proc.returncode, tree_peak_rss_bytes=usage.ru_maxrss * 1024)
    results.append(result)
  shutil.rmtree(tmp, ignore_errors=True)
  return results


def child_command(mode: str, args, **extra) -> list[str]:
  command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child", mode, "--cache-dir", str(args.cache_dir),
             "--budget", str(args.budget), "--acquisitions", args.acquisitions, "--labeled", str(args.labeled),
             "--chunk-size", str(args.chunk_size),
             "--train-examples", str(args.train_examples), "--seed", str(args.seed)]
  for key, value in extra.items():
    command += [f"--{key.replace('_', '-')}", str(value)]
  return command


def base_env(devices: int = 1) -> dict:
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
  if devices > 1:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {env.get('XLA_FLAGS', '')}"
  return env


def distributed_envs(processes: int) -> list[dict]:
  """One environment per cooperating process, as launch/local_multiprocess.sh sets them."""
  if processes == 1:
    return [base_env()]
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  return [dict(base_env(), JAXAL_DISTRIBUTED="1", JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
               JAX_NUM_PROCESSES=str(processes), JAX_PROCESS_ID=str(i)) for i in range(processes)]


def merge_processes(results: list[dict]) -> dict:
  """One row from the results of cooperating processes: process 0's figures, the largest peak."""
  row = dict(results[0])
  row["peak_rss_bytes_per_process"] = [max(r.get("own_peak_rss_bytes", 0), r["tree_peak_rss_bytes"]) for r in results]
  row["peak_rss_bytes"] = max(row["peak_rss_bytes_per_process"])
  if len(results) > 1 and any("rss_by_phase_bytes" in r for r in results):
    row["rss_by_phase_bytes_per_process"] = [r.get("rss_by_phase_bytes") for r in results]
  errors = [r["error"] for r in results if r.get("error")] + [f"exit code {r['exit_code']}" for r in results
                                                              if r["exit_code"] and not r.get("error")]
  if errors:
    row["error"] = "; ".join(errors)
  for key in ("own_peak_rss_bytes", "tree_peak_rss_bytes", "exit_code"):
    row.pop(key, None)
  return row


# ---------------------------------------------------------------- the children (fresh processes)


def picks_digest(picks) -> str:
  return hashlib.sha256(np.asarray(picks, np.int64).tobytes()).hexdigest()[:16]


def pool_masks(n: int, labeled: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """`--labeled` random labeled rows (the same in every mode); the rest selectable."""
  labeled_mask = np.zeros(n, bool)
  labeled_mask[np.random.default_rng(seed).choice(n, min(labeled, n - 1), replace=False)] = True
  return labeled_mask, ~labeled_mask


def image_config(directory: pathlib.Path, chunk_size: int):
  from jaxal import config as config_lib  # pylint: disable=import-outside-toplevel
  config = config_lib.base_config()
  config.data.source, config.data.name, config.data.path = "array_record", "synthetic", str(directory)
  config.model.name = MODEL[0]
  config.model.options.update(MODEL[1])
  config.acquisition.chunk_size = chunk_size
  config.train.batch_size, config.train.epochs, config.train.epoch_size = 128, 1, 0
  config.augment.flip, config.augment.max_shift = True, 4
  return config


def score_and_select(model, variables, inputs, preprocess, n: int, args, acquisitions, **predictor_options) -> dict:
  """Scores `inputs` (after a compiling warm-up chunk) and runs each acquisition; the timings."""
  import jax  # pylint: disable=import-outside-toplevel
  from jaxal import acquisition  # pylint: disable=import-outside-toplevel
  from jaxal.inference import Predictor  # pylint: disable=import-outside-toplevel
  warm = Predictor(model, variables, inputs, preprocess, chunk_size=args.chunk_size,
                   rows=np.arange(min(n, args.chunk_size)), **predictor_options)
  jax.block_until_ready(warm.outputs())
  del warm
  args.phases.mark("warm_up")
  predictor = Predictor(model, variables, inputs, preprocess, chunk_size=args.chunk_size, **predictor_options)
  start = time.perf_counter()
  jax.block_until_ready(predictor.outputs())
  scoring = time.perf_counter() - start
  args.phases.mark("scoring")
  labeled_mask, selectable = pool_masks(n, args.labeled, args.seed)
  budget = min(args.budget, int(selectable.sum()))
  seconds, digests = {}, {}
  for name in acquisitions:
    view = acquisition.PoolView(labeled_mask, selectable, predictor, {})
    start = time.perf_counter()
    picks = acquisition.acquire(name, view, budget, jax.random.key(args.seed))
    seconds[name], digests[name] = time.perf_counter() - start, picks_digest(picks)
    args.phases.mark(name)
  return {"scoring_seconds": scoring, "examples_per_second": n / scoring, "budget": budget,
          "selection_seconds": sum(seconds.values()), "seconds_by_acquisition": seconds, "picks_sha256": digests}


def train_throughput(config, data, model, args, mesh=None) -> dict:
  """Images/s of one training epoch over `--train-examples` pool rows (after a compiling epoch)."""
  import jax  # pylint: disable=import-outside-toplevel
  from jaxal.data import augment as augment_lib  # pylint: disable=import-outside-toplevel
  from jaxal.train import trainer as trainer_lib  # pylint: disable=import-outside-toplevel
  augment = augment_lib.AugmentConfig(bool(config.augment.flip), int(config.augment.max_shift))
  trainer = trainer_lib.Trainer(model, config.train, data.preprocess, augment, data.dataset.input_shape,
                                data.pool.inputs.dtype, mesh)
  rows = np.arange(min(args.train_examples, len(data.pool)))
  trainer.fit(jax.random.key(0), data.pool_inputs, data.pool.labels, rows, epochs=1)
  start = time.perf_counter()
  fit = trainer.fit(jax.random.key(1), data.pool_inputs, data.pool.labels, rows, epochs=1)
  jax.block_until_ready(fit.state.params)  # fit already read the loss back; this is cheap
  return {"train_examples": len(rows), "train_images_per_second": len(rows) / (time.perf_counter() - start)}


def child_images(args, storage: str) -> dict:
  """One round's data path on the image pool: `loop.load_data` with `data.pool_storage = storage`
  (a mesh over every process's devices when there are several), then score, select (and train)."""
  import jax  # pylint: disable=import-outside-toplevel
  from jaxal import loop, models, parallel  # pylint: disable=import-outside-toplevel
  args.phases.mark("imports")
  config = image_config(pathlib.Path(args.pool_dir), args.chunk_size)
  if storage != "memory":  # the default; left unset, the script also measures trees from before the field
    config.data.pool_storage = storage
  mesh = parallel.make_mesh()
  start = time.perf_counter()
  data = loop.load_data(config, mesh)
  if storage == "memory":
    jax.block_until_ready(data.pool_inputs)
  load = time.perf_counter() - start
  args.phases.mark("pool_open")
  model = models.create(MODEL[0], NUM_CLASSES, **MODEL[1])
  variables = parallel.replicate(models.init_variables(model, jax.random.key(args.seed), (1,) + IMAGE_SHAPE), mesh)
  row = {"load_seconds": load, "devices": jax.device_count(),
         **score_and_select(model, variables, data.pool_inputs, data.preprocess, len(data.pool), args,
                            args.acquisitions.split(","), sharding=parallel.batch_sharded(mesh))}
  if args.train_examples:
    row.update(train_throughput(config, data, model, args, mesh))
  return row


def child_text(args, storage: str) -> dict:
  """One round of the Amazon config's fastText proxy: streamed from the converted directory, or
  (`memory`) today's path, the CSV tokenized into memory (`load_seconds` includes that)."""
  import jax  # pylint: disable=import-outside-toplevel
  from jaxal import config as config_lib, loop, models  # pylint: disable=import-outside-toplevel
  config = config_lib.load_config_file(args.text_config)
  if storage == "stream":  # the converted directory; the in-memory mode reads the CSV as today
    config.data.source, config.data.path, config.data.modality = "array_record", args.pool_dir, "text"
  config.data.pool_storage = storage  # the Amazon config streams
  start = time.perf_counter()
  data = loop.load_data(config)
  if storage == "memory":
    jax.block_until_ready(data.pool_inputs)
  load = time.perf_counter() - start
  options = {**config.model.options.to_dict(), "vocab_size": data.dataset.vocab_size}
  model = models.create(config.model.name, data.dataset.num_classes, **options)
  variables = models.init_variables(model, jax.random.key(args.seed), (1,) + tuple(data.dataset.input_shape), np.int32)
  return {"load_seconds": load, **score_and_select(model, variables, data.pool_inputs, data.preprocess,
                                                   len(data.pool), args, ("least_confidence",))}


def child_coreset(args) -> dict:
  """k-center at scale (rows split over every process's devices when there are several), and the
  exactness check: the same call's picks on a subset against the plain one-process kernel's."""
  import jax  # pylint: disable=import-outside-toplevel
  from jaxal import acquisition, parallel  # pylint: disable=import-outside-toplevel
  prune = bool(acquisition.ACQUISITIONS["coreset"].defaults.get("kcenter_prune", True))
  mesh = parallel.make_mesh()
  select = lambda x, labeled, budget: np.asarray(jax.device_get(
      acquisition.kcenter_greedy(x, labeled, budget, prune=prune, mesh=mesh)))
  x = np.random.default_rng(args.seed).standard_normal((args.coreset_size, args.coreset_dim), np.float32)
  labeled_mask, _ = pool_masks(args.coreset_size, args.labeled, args.seed)
  row = {"coreset_dim": args.coreset_dim, "prune": prune and mesh is None, "devices": jax.device_count()}
  m = min(args.coreset_check_size, args.coreset_size)
  if m:
    sub_x, (sub_labeled, _) = x[:m], pool_masks(m, args.labeled, args.seed + 1)
    budget = min(args.budget, m - int(sub_labeled.sum()))
    start = time.perf_counter()
    plain = np.asarray(jax.device_get(acquisition.kcenter_greedy(sub_x, sub_labeled, budget, lookahead=1)))
    row["check_plain_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    fast = select(sub_x, sub_labeled, budget)
    row["check_seconds"] = time.perf_counter() - start
    row.update(check_size=m, check_budget=budget, same_picks=bool(np.array_equal(plain, fast)))
  budget = min(args.budget, int((~labeled_mask).sum()))
  start = time.perf_counter()
  picks = select(x, labeled_mask, budget)
  row.update(selection_seconds=time.perf_counter() - start, budget=budget, picks_sha256=picks_digest(picks))
  return row


CHILDREN = {"memory": lambda args: child_images(args, "memory"), "stream": lambda args: child_images(args, "stream"),
            "text_stream": lambda args: child_text(args, "stream"),
            "text_memory": lambda args: child_text(args, "memory"), "coreset": child_coreset}


def child_main(args):
  """Runs one mode in this fresh process and writes its result (never raises: errors are rows)."""
  args.phases = PhaseMemory(reset_peak=True)
  with DescendantWatch() as watch:
    try:
      if os.environ.get("JAXAL_DISTRIBUTED") == "1":
        from jaxal import parallel  # pylint: disable=import-outside-toplevel
        parallel.initialize_distributed(True)
      result = CHILDREN[args.child](args)
    except Exception as e:  # pylint: disable=broad-except  (reported in the row)
      result = {"error": f"{type(e).__name__}: {e}"}
  result.update(own_peak_rss_bytes=max(vm_hwm_bytes(), args.phases.peak), descendant_processes=len(watch.seen),
                descendant_peak_rss_bytes=watch.peak)
  if args.phases.phases:
    result.update(args.phases.result())
  pathlib.Path(args.result).write_text(json.dumps(result))


# ---------------------------------------------------------------- the sections (parent)


def section_images(args) -> list[dict]:
  start = time.perf_counter()
  directory = image_pool(args.cache_dir, args.pool_size, args.records_per_shard)
  print(f"pool {directory}: ready in {time.perf_counter() - start:.1f} s", flush=True)
  pool_bytes = args.pool_size * int(np.prod(IMAGE_SHAPE))
  runs = [("stream", args.processes)] + ([("memory", 1)] if args.with_memory else [])
  rows = []
  for mode, processes in runs:
    if mode == "stream" and args.no_stream:
      continue
    results = run_children([child_command(mode, args, pool_dir=directory, processes=processes)] * processes,
                           distributed_envs(processes))
    rows.append({"section": "images", "mode": mode, "processes": processes, "pool_size": args.pool_size,
                 "pool_bytes": pool_bytes, **merge_processes(results)})
  return rows


def section_text(args) -> list[dict]:
  train, test = text_csv(args.cache_dir, args.text_rows, args.text_tokens)
  config_file = text_config_file(args.cache_dir, train, test, args.text_tokens)
  out = args.cache_dir / f"converted_{train.parent.name}"
  shutil.rmtree(out, ignore_errors=True)  # the conversion is what is timed
  start = time.perf_counter()
  proc = subprocess.Popen([sys.executable, "-m", "jaxal.cli", "convert", f"--config={config_file}", f"--out={out}"],
                          cwd=ROOT, env=base_env(), stdout=subprocess.DEVNULL)
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  seconds = time.perf_counter() - start
  csv_bytes = train.stat().st_size
  rows = [{"section": "text", "mode": "convert", "processes": 1, "pool_size": args.text_rows, "pool_bytes": csv_bytes,
           "examples_per_second": args.text_rows / seconds, "selection_seconds": None, "seconds": seconds,
           "peak_rss_bytes": usage.ru_maxrss * 1024,
           **({"error": f"jaxal convert exited {proc.returncode}"} if proc.returncode else {})}]
  for mode in ("stream", "memory") if not proc.returncode else ():
    if (mode == "stream" and args.no_stream) or (mode == "memory" and not args.with_memory):
      continue
    results = run_children([child_command(f"text_{mode}", args, pool_dir=out, text_config=config_file)], [base_env()])
    rows.append({"section": "text", "mode": mode, "processes": 1, "pool_size": args.text_rows,
                 "pool_bytes": args.text_rows * args.text_tokens * 4, **merge_processes(results)})
  return rows


def section_coreset(args) -> list[dict]:
  command = child_command("coreset", args, coreset_size=args.coreset_size, coreset_dim=args.coreset_dim,
                          coreset_check_size=args.coreset_check_size)
  results = run_children([command] * args.processes, distributed_envs(args.processes))
  return [{"section": "coreset", "mode": "kcenter", "processes": args.processes, "pool_size": args.coreset_size,
           "pool_bytes": args.coreset_size * args.coreset_dim * 4, "examples_per_second": None,
           **merge_processes(results)}]


SECTIONS = {"images": section_images, "text": section_text, "coreset": section_coreset}


def print_row(row: dict):
  mb = lambda b: "-" if b is None else f"{b / 1e6:.0f}"
  num = lambda v, f: "-" if v is None else format(v, f)
  print(f"{row['section']:<8} {row['mode']:<8} {row['processes']:>3} {row['pool_size']:>9} "
        f"{mb(row.get('pool_bytes')):>8} "
        f"{num(row.get('examples_per_second'), '.0f'):>9} {num(row.get('selection_seconds'), '.2f'):>9} "
        f"{mb(row.get('peak_rss_bytes')):>8}  {row.get('error', '')}", flush=True)
  for phase, m in (row.get("rss_by_phase_bytes") or {}).items():  # process 0's
    print(f"    {phase:<18} rss {mb(m['rss_bytes']):>6} MB  peak {mb(m['peak_rss_bytes']):>6} MB  "
          f"jax arrays {mb(m.get('live_array_bytes')):>6} MB  at {m['seconds']:.0f} s", flush=True)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sections", default="images", help="comma list of: images, text, coreset")
  parser.add_argument("--pool-size", type=int, default=1_000_000)
  parser.add_argument("--processes", type=int, default=1, help="cooperating processes of the streamed mode")
  parser.add_argument("--with-memory", action="store_true", help="also run the in-memory mode (one process)")
  parser.add_argument("--no-stream", action="store_true", help="skip the streamed mode")
  parser.add_argument("--json", default="")
  parser.add_argument("--cache-dir", type=pathlib.Path, default=pathlib.Path("/work/pool_cache"),
                      help="where the synthetic pools are kept for the next call")
  parser.add_argument("--records-per-shard", type=int, default=0, help="default: about 128 MB of inputs a shard")
  parser.add_argument("--budget", type=int, default=10_000)
  parser.add_argument("--labeled", type=int, default=1_000)
  parser.add_argument("--acquisitions", default="least_confidence,coreset", help="of the images section")
  parser.add_argument("--chunk-size", type=int, default=1024, help="rows per scoring call")
  parser.add_argument("--train-examples", type=int, default=0, help="also time a training epoch over this many rows")
  parser.add_argument("--text-rows", type=int, default=3_600_000)
  parser.add_argument("--text-tokens", type=int, default=64)
  parser.add_argument("--coreset-size", type=int, default=1_000_000)
  parser.add_argument("--coreset-dim", type=int, default=128)
  parser.add_argument("--coreset-check-size", type=int, default=100_000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
  for hidden in ("--child", "--result", "--pool-dir", "--text-config"):
    parser.add_argument(hidden, default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  args.phases = PhaseMemory()  # the child's resets its peak after each phase (child_main)
  if args.quick:
    args.pool_size, args.budget, args.labeled, args.chunk_size = 2000, 100, 100, 256
    args.text_rows, args.coreset_size, args.coreset_check_size = 2000, 20_000, 5000
    args.train_examples = min(args.train_examples, 512)
  return args


def main(argv=None):
  args = parse_args(argv)
  if args.child:
    return child_main(args)
  args.cache_dir = args.cache_dir.expanduser().resolve()
  print(f"{'section':<8} {'mode':<8} {'procs':>3} {'pool_size':>9} {'pool MB':>8} {'ex/s':>9} {'select s':>9} "
        f"{'peak MB':>8}", flush=True)
  rows = []
  for name in args.sections.split(","):
    for row in SECTIONS[name](args):
      print_row(row)
      rows.append(row)
  if args.json:
    pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
  return rows


if __name__ == "__main__":
  main()
