"""`jaxal.cpu.process`: opt-in malloc settings that keep XLA:CPU's buffers resident."""

import os
import platform
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxal.cpu import process as cpu_process

_SCRIPT = textwrap.dedent("""
    import resource, sys
    from jaxal.cpu import process as cpu_process
    applied = cpu_process.keep_buffers_resident()  # before the backend starts
    import jax, jax.numpy as jnp
    f = jax.jit(lambda x: x * 2.0 + 1.0)
    x = jnp.ones((16 * 2**20,), jnp.float32)  # 64 MiB: above glibc's largest mmap threshold
    for _ in range(10):
      f(x).block_until_ready()
    windows = []
    for _ in range(6):  # the heap settles after a few calls: the fewest faults of 6 windows
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      for _ in range(5):
        f(x).block_until_ready()  # each result is dropped, so its buffer is freed
      windows.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
    print(applied, min(windows))
""")


def _run(keep: str):
  env = dict(os.environ, JAXAL_KEEP_BUFFERS=keep, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  applied, faults = out.stdout.split()
  return applied == "True", float(faults)


def test_off_by_default_and_when_asked(monkeypatch):
  monkeypatch.delenv("JAXAL_KEEP_BUFFERS", raising=False)
  assert cpu_process.keep_buffers_resident() is False
  monkeypatch.setenv("JAXAL_KEEP_BUFFERS", "0")
  assert cpu_process.keep_buffers_resident() is False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
                    or cpu_process.accelerator_plugin_installed(), reason="glibc malloc settings, CPU-only hosts")
def test_resident_buffers_stop_page_faults_on_repeated_calls():
  applied_off, faults_off = _run("0")
  applied_on, faults_on = _run("1")
  assert not applied_off and applied_on
  # 64 MiB freshly mapped per call is ~16k faults of 4 KiB; resident buffers are reused.
  assert faults_off > 8000, faults_off
  assert faults_on < 0.25 * faults_off, (faults_on, faults_off)


_CONV_SCRIPT = textwrap.dedent("""
    import os
    from jaxal.cpu import process as cpu_process
    applied = cpu_process.use_xla_convolutions()  # before the backend starts
    import jax, jax.numpy as jnp
    conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                             dimension_numbers=("NHWC", "HWIO", "NHWC")))
    conv_text = conv.lower(jnp.ones((8, 16, 16, 32)), jnp.ones((3, 3, 32, 32))).compile().as_text().lower()
    dot_text = jax.jit(jnp.dot).lower(jnp.ones((512, 512)), jnp.ones((512, 512))).compile().as_text().lower()
    late = cpu_process.use_xla_convolutions()  # the backend has started: reports, changes nothing
    print(applied, "ynn" in conv_text, "ynn" in dot_text, late, os.environ.get("XLA_FLAGS", ""))
""")


def _run_conv(env_extra):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", **env_extra)
  out = subprocess.run([sys.executable, "-c", _CONV_SCRIPT], env=env, capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  applied, ynn_conv, ynn_dot, late, *flags = out.stdout.split()
  return applied == "True", ynn_conv == "True", ynn_dot == "True", late == "True", " ".join(flags)


def _skip_unless_the_flag_applies():
  series = cpu_process.jaxlib_series()
  if series not in cpu_process.XLA_CONVS_JAXLIB or cpu_process.accelerator_plugin_installed():
    pytest.skip(f"the flag is only added for jaxlib {cpu_process.XLA_CONVS_JAXLIB} on CPU (installed: {series})")


def test_xla_convolutions_are_opt_in_and_keep_ynnpack_for_dots():
  _skip_unless_the_flag_applies()
  applied, ynn_conv, ynn_dot, _, flags = _run_conv({})
  assert not applied and ynn_conv and ynn_dot and flags == ""  # default: YNNPACK convolutions
  applied, ynn_conv, ynn_dot, late, flags = _run_conv({"JAXAL_XLA_CONVS": "1"})
  assert applied and not ynn_conv and ynn_dot and late, (applied, ynn_conv, ynn_dot, late)
  assert flags == cpu_process.YNN_DOTS_ONLY
  # A user's own setting of the fusion type is left as it is.
  mine = "--xla_cpu_experimental_ynn_fusion_type="
  applied, _, _, _, flags = _run_conv({"JAXAL_XLA_CONVS": "1", "XLA_FLAGS": mine})
  assert not applied and flags == mine


def test_xla_convolutions_leave_a_started_backend_alone(monkeypatch):
  _skip_unless_the_flag_applies()  # (elsewhere the version check alone would pass this)
  import jax
  jax.devices()  # this test process's backend is running
  monkeypatch.setenv("JAXAL_XLA_CONVS", "1")
  monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/nonexistent")
  assert not cpu_process.use_xla_convolutions()
  assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/nonexistent"


def _convolutions_in_ynn_fusions(hlo_text: str) -> tuple[int, int]:
  """(convolutions in YNNPACK fusions, convolutions elsewhere) in a compiled module's text."""
  blocks = hlo_text.split("\n\n")
  ynn_called = set(re.findall(r"%ynn_fusion[\w.]* = .*?calls=(%[\w.\-]+)", hlo_text))
  inside = outside = 0
  for block in blocks:
    name = block.strip().split(" ", 1)[0]
    count = block.count(" convolution(")
    if name in ynn_called:
      inside += count
    else:
      outside += count
  return inside, outside


def _small_cnn_train_block_text(policy=None):
  import jax
  import jax.numpy as jnp
  from jaxal import config as config_lib, models
  from jaxal.data import augment, pipeline
  from jaxal.train import trainer as trainer_lib
  x = np.random.default_rng(0).integers(0, 256, (32, 28, 28, 1), dtype=np.uint8)
  c = config_lib.base_config().train
  c.batch_size, c.steps_per_call = 32, 1
  t = trainer_lib.Trainer(models.create("small_cnn", 10), c, pipeline.make_preprocess(x, "image", "per_channel"),
                          augment.AugmentConfig(), (28, 28, 1), np.uint8, runtime=policy)
  state = t.init(jax.random.key(0))
  lowered = t._block.lower(state, jnp.asarray(x), jnp.zeros(32, jnp.int32), np.arange(32, dtype=np.int32)[None],  # pylint: disable=protected-access
                           np.ones(1, bool), jax.random.key(1), 0.01)
  return lowered.compile().as_text()


def test_training_steps_run_xla_convolutions_by_default(monkeypatch):
  _skip_unless_the_flag_applies()
  monkeypatch.delenv("JAXAL_XLA_CONVS", raising=False)
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  assert cpu_process.train_compiler_options() == {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}
  inside, outside = _convolutions_in_ynn_fusions(_small_cnn_train_block_text())
  # Two convolutions: forward and weight gradient each, and the second one's input gradient.
  assert inside == 0 and outside >= 5, (inside, outside)
  monkeypatch.setenv("JAXAL_XLA_CONVS", "0")
  assert cpu_process.train_compiler_options() is None
  inside, _ = _convolutions_in_ynn_fusions(_small_cnn_train_block_text())
  assert inside >= 3, inside  # YNNPACK takes the step's convolutions
  # A process-wide setting (JAXAL_XLA_CONVS=1, or the user's own) is left in charge.
  monkeypatch.setenv("JAXAL_XLA_CONVS", "1")
  monkeypatch.setenv("XLA_FLAGS", cpu_process.YNN_DOTS_ONLY)
  assert cpu_process.train_compiler_options() is None


def test_training_steps_fence_their_convolution_inputs():
  from jaxal import runtime  # pylint: disable=import-outside-toplevel
  # Under the CPU policy the step's XLA convolutions fence their inputs (NOTES §6f); the
  # stock policy (GPUs, TPUs) has no fence.
  assert "conditional(" in _small_cnn_train_block_text(runtime.CPU)
  assert "conditional(" not in _small_cnn_train_block_text(runtime.STOCK)


def test_huge_pages_tunable_is_set_once_and_keeps_the_others():
  tunable = cpu_process.HUGE_PAGES_TUNABLE
  assert cpu_process.with_huge_pages_tunable("") == tunable
  assert cpu_process.with_huge_pages_tunable("glibc.malloc.arena_max=2") == f"glibc.malloc.arena_max=2:{tunable}"
  assert cpu_process.with_huge_pages_tunable(f"glibc.malloc.hugetlb=0:a=1:{tunable}") == f"a=1:{tunable}"


def test_transparent_huge_pages_mode_is_the_bracketed_word(tmp_path):
  path = tmp_path / "enabled"
  path.write_text("always [madvise] never\n")
  assert cpu_process.transparent_huge_pages_mode(str(path)) == "madvise"
  path.write_text("[always] madvise never\n")
  assert cpu_process.transparent_huge_pages_mode(str(path)) == "always"
  assert cpu_process.transparent_huge_pages_mode(str(tmp_path / "missing")) == ""


def test_restart_returns_when_turned_off_or_already_in_effect(monkeypatch):
  def no_exec(*args):
    raise AssertionError(f"restarted: {args}")
  monkeypatch.setattr(os, "execv", no_exec)
  monkeypatch.setenv("GLIBC_TUNABLES", "")
  monkeypatch.setenv("JAXAL_HUGE_PAGES", "0")
  assert cpu_process.restart_with_huge_pages() is False
  assert os.environ["GLIBC_TUNABLES"] == ""
  monkeypatch.setenv("JAXAL_HUGE_PAGES", "1")
  monkeypatch.setenv("GLIBC_TUNABLES", f"a=1:{cpu_process.HUGE_PAGES_TUNABLE}")
  assert cpu_process.restart_with_huge_pages() is True


# Prints, per start of the process: the tunables, whether restart returned, and whether a
# 64 MiB malloc'd block is advised for huge pages (VmFlags "hg" in /proc/self/smaps).
_RESTART_SCRIPT = textwrap.dedent("""
    import ctypes, os, sys
    from jaxal.cpu import process as cpu_process
    print("start", os.environ.get("GLIBC_TUNABLES", "-"), flush=True)
    back = cpu_process.restart_with_huge_pages()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    address = libc.malloc(64 << 20)
    advised = None
    with open("/proc/self/smaps") as f:
      inside = False
      for line in f:
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
          lo, hi = (int(v, 16) for v in head.split("-"))
          inside = lo <= address < hi
        elif inside and head == "VmFlags:":
          advised = "hg" in line.split()[1:]
    print("returned", back, advised, sys.argv[1:], flush=True)
""")


@pytest.mark.skipif(platform.system() != "Linux" or cpu_process._glibc_version() is None
                    or cpu_process._glibc_version() < (2, 35)
                    or cpu_process.transparent_huge_pages_mode() != "madvise"
                    or cpu_process.accelerator_plugin_installed(),
                    reason="glibc 2.35+ with transparent huge pages in madvise mode, CPU-only hosts")
def test_restart_sets_the_tunable_once_and_malloc_then_advises_huge_pages():
  def run(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JAXAL_HUGE_PAGES")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", _RESTART_SCRIPT, "--flag=1", "x"], env=env, capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return out.stdout.splitlines()

  lines = run({"GLIBC_TUNABLES": "glibc.malloc.arena_test=4"})
  # The first start restarts at once; the second finds the tunable, keeps the user's and the arguments.
  assert lines == ["start glibc.malloc.arena_test=4",
                   f"start glibc.malloc.arena_test=4:{cpu_process.HUGE_PAGES_TUNABLE}",
                   "returned True True ['--flag=1', 'x']"], lines
  assert run({"JAXAL_HUGE_PAGES": "0"}) == ["start -", "returned False False ['--flag=1', 'x']"]


@pytest.mark.skipif(platform.system() != "Linux" or cpu_process._glibc_version() is None
                    or cpu_process._glibc_version() < (2, 35)
                    or cpu_process.transparent_huge_pages_mode() != "madvise"
                    or cpu_process.accelerator_plugin_installed(),
                    reason="glibc 2.35+ with transparent huge pages in madvise mode, CPU-only hosts")
@pytest.mark.parametrize("module", ["jaxal.main", "jaxal.study"])
def test_commands_restart_with_huge_pages_before_reading_the_config(tmp_path, module):
  """The config file is read after the restart; it records the tunables it sees and stops."""
  seen = tmp_path / "seen.txt"
  config = tmp_path / "probe.py"
  config.write_text(textwrap.dedent(f"""
      import os, pathlib
      def get_config():
        pathlib.Path({str(seen)!r}).write_text(os.environ.get("GLIBC_TUNABLES", "-") + " " + str(os.getpid()))
        raise SystemExit(0)
  """))
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JAXAL_HUGE_PAGES")}
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  run = subprocess.Popen([sys.executable, "-m", module, f"--config={config}"], env=env, cwd=root)
  assert run.wait(timeout=120) == 0
  tunables, pid = seen.read_text().split()
  assert tunables == cpu_process.HUGE_PAGES_TUNABLE and int(pid) == run.pid  # the same process, restarted
  seen.unlink()
  env["JAXAL_HUGE_PAGES"] = "0"
  subprocess.run([sys.executable, "-m", module, f"--config={config}"], env=env, cwd=root, check=True, timeout=120)
  assert seen.read_text().split()[0] == "-"


def test_scoring_runs_xla_convolutions_by_default(monkeypatch):
  _skip_unless_the_flag_applies()
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from jaxal import models  # pylint: disable=import-outside-toplevel
  from jaxal import inference  # pylint: disable=import-outside-toplevel
  from jaxal import runtime  # pylint: disable=import-outside-toplevel
  from jaxal.data import pipeline  # pylint: disable=import-outside-toplevel
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)  # YNNPACK takes some convs
  model, pre = models.create("preact_resnet20", 10), pipeline.make_preprocess(x, "image", "per_channel")
  variables = model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)),
                         train=False)

  def ynn_convolutions():
    policy = runtime.for_backend("cpu")  # reads JAXAL_XLA_CONVS, as a run does at start-up
    text = inference.forward_jit(policy).lower(models.with_runtime(model, policy), pre, variables,
                                               jnp.asarray(x)).compile().as_text()
    return len(re.findall(r"kind=kCustom[^\n]*conv_general_dilated", text))

  monkeypatch.delenv("JAXAL_XLA_CONVS", raising=False)
  assert ynn_convolutions() == 0
  monkeypatch.setenv("JAXAL_XLA_CONVS", "0")
  assert ynn_convolutions() >= 1


def test_restart_runs_in_place_when_exec_is_refused(monkeypatch, capsys):
  """An unprivileged sandbox may refuse exec: one warning line, then the run goes on."""
  calls = []

  def refused(*args):
    calls.append(args)
    raise PermissionError(13, "Permission denied")
  monkeypatch.setattr(os, "execv", refused)
  monkeypatch.setattr(cpu_process.platform, "system", lambda: "Linux")
  monkeypatch.setattr(cpu_process, "_glibc_version", lambda: (2, 39))
  monkeypatch.setattr(cpu_process, "transparent_huge_pages_mode", lambda: "madvise")
  monkeypatch.setattr(cpu_process, "accelerator_plugin_installed", lambda: False)
  monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-m", "jaxal.main", "--workdir=w"], raising=False)
  monkeypatch.setenv("JAXAL_HUGE_PAGES", "1")
  for before in ("glibc.malloc.arena_test=4", None):
    if before is None:
      monkeypatch.delenv("GLIBC_TUNABLES")
    else:
      monkeypatch.setenv("GLIBC_TUNABLES", before)
    assert cpu_process.restart_with_huge_pages() is False
    assert os.environ.get("GLIBC_TUNABLES") == before  # huge pages are not in effect: say so to children too
    assert calls[-1] == (sys.executable, [sys.executable, "-m", "jaxal.main", "--workdir=w"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: cannot restart with huge pages (")
    assert "Permission denied" in err and not cpu_process.huge_pages_in_effect()
