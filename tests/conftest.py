"""Shared test setup: small, CPU-only, no network."""

import importlib.util
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def pytest_configure(config):
  """One persistent XLA compilation cache for the whole run: its xdist workers and the
  subprocesses they start inherit it through the environment, so a program that many tests
  build (the tiny loop's train step, a scoring chunk) compiles once per run instead of once
  per test module. Tests that count compilations count cache loads too
  (`jaxal.compiles.CompileCounter`). A size limit turns on JAX's file lock, so a worker never
  reads an entry another is still writing."""
  if hasattr(config, "workerinput") or "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return
  cache = tempfile.mkdtemp(prefix="jaxal-tests-xla-cache-")
  config.jaxal_xla_cache = cache
  settings = {"jax_compilation_cache_dir": cache, "jax_persistent_cache_min_compile_time_secs": 0.0}
  if importlib.util.find_spec("filelock"):
    settings["jax_compilation_cache_max_size"] = 16 << 30
  for name, value in settings.items():
    os.environ[name.upper()] = str(value)
    if "jax" in sys.modules:  # a plugin imported jax before this hook ran
      sys.modules["jax"].config.update(name, value)


def pytest_unconfigure(config):
  cache = getattr(config, "jaxal_xla_cache", None)
  if cache:
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def release_compiled_programs():
  """Frees each test module's compiled programs when it ends.

  Every XLA:CPU executable holds three memory mappings per kernel until its jitted function
  (or a module-level jit cache) lets it go. One xdist worker runs hundreds of tests and reached
  Linux's 65,530-mapping limit (`vm.max_map_count`): the next compile's `mmap` failed and
  the process died with a segfault while raising the error.
  """
  yield
  import gc  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  jax.clear_caches()
  gc.collect()


@pytest.fixture
def fast_compiles():
  """XLA without most of its optimization passes, for tests that compile big programs (supernets,
  deep nets) to run them a few tiny steps: compiling is most of their time, and what they check
  (shapes, records, which programs compile, equal picks) does not depend on XLA's passes."""
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
  """`../shared/data`, or skip when the checkout has no shared folder beside it."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the checkout)")
  return SHARED_DATA


def tiny_config(**overrides):
  """A digits config that runs a round in about a second."""
  from jaxal import config as config_lib
  c = config_lib.base_config()
  c.data.source = "digits"
  c.data.name = "digits"
  c.data.test_size = 200
  c.model.options.blocks = 1
  c.model.options.stacks = 1
  c.model.options.width = 4
  c.train.batch_size = 32
  c.train.epochs = 2
  c.train.epoch_size = 128
  c.train.steps_per_call = 4
  c.train.lr_schedule = "0:0.05"
  c.al.initial_size = 20
  c.al.balanced_initial = True
  c.al.query_schedule = "0:20"
  c.al.num_rounds = 3
  c.output.verbose = False
  c.output.plot = False
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def run_on_host_devices(target: str, devices: int = 8) -> str:
  """Runs `module:function` in a fresh process that sees `devices` CPU devices (the count is
  fixed when JAX starts); asserts it printed "OK" and returns its output."""
  import os  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  module, function = target.split(":")
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
  code = f"from {module} import {function} as f; f()"
  out = subprocess.run([sys.executable, "-c", code], cwd=pathlib.Path(__file__).resolve().parents[1], env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
  return out.stdout


def run_killed_after(monkeypatch, config, workdir, rounds: int, *, torn_line: str = "", after_write: bool = False):
  """`loop.run(config, workdir)` killed (KeyboardInterrupt) once `rounds` rounds are checkpointed:
  before that round's rounds.jsonl line is written (leaving `torn_line` appended, as a kill
  mid-write can), or just after it with `after_write`. The real writer is back afterwards."""
  from jaxal import loop  # pylint: disable=import-outside-toplevel
  from jaxal.checkpoint import run_files  # pylint: disable=import-outside-toplevel
  real_write = run_files.write_rounds

  def killing_write(wd, history):
    if after_write:
      real_write(wd, history)
    if len(history) == rounds:
      if torn_line:
        with open(pathlib.Path(wd) / "rounds.jsonl", "a", encoding="utf-8") as f:
          f.write(torn_line)
      raise KeyboardInterrupt("simulated kill")
    if not after_write:
      real_write(wd, history)

  monkeypatch.setattr(run_files, "write_rounds", killing_write)
  try:
    with pytest.raises(KeyboardInterrupt):
      loop.run(config, workdir)
  finally:
    monkeypatch.setattr(run_files, "write_rounds", real_write)
