"""`jaxal.cpu_runtime`: opt-in malloc settings that keep XLA:CPU's buffers resident."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from jaxal import cpu_runtime

_SCRIPT = textwrap.dedent("""
    import resource, sys
    from jaxal import cpu_runtime
    applied = cpu_runtime.keep_buffers_resident()  # before the backend starts
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
  assert cpu_runtime.keep_buffers_resident() is False
  monkeypatch.setenv("JAXAL_KEEP_BUFFERS", "0")
  assert cpu_runtime.keep_buffers_resident() is False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
                    or cpu_runtime.accelerator_plugin_installed(), reason="glibc malloc settings, CPU-only hosts")
def test_resident_buffers_stop_page_faults_on_repeated_calls():
  applied_off, faults_off = _run("0")
  applied_on, faults_on = _run("1")
  assert not applied_off and applied_on
  # 64 MiB freshly mapped per call is ~16k faults of 4 KiB; resident buffers are reused.
  assert faults_off > 8000, faults_off
  assert faults_on < 0.25 * faults_off, (faults_on, faults_off)
