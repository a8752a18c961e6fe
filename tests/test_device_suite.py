"""benchmarks/device_suite.py: `--smoke` writes finite rows for every section, `--only` filters,
and FILE is rewritten after every row (issue 27 item 7). In-process: no second JAX start-up."""

import importlib.util
import json
import math
import pathlib
import types

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
REQUIRED = ("section", "name", "sizes", "compile_seconds", "run_seconds", "achieved", "achieved_unit", "peak",
            "fraction", "device_kind", "platform", "jax_version")


@pytest.fixture(scope="module")
def suite():
  spec = importlib.util.spec_from_file_location("device_suite", ROOT / "benchmarks" / "device_suite.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _rows_in_file_after_each_write(suite, monkeypatch, path):
  """Records how many rows FILE holds after every write the suite makes."""
  seen, write = [], suite.Report._write  # pylint: disable=protected-access

  def recording(self):
    write(self)
    seen.append(len(json.loads(path.read_text())))
  monkeypatch.setattr(suite.Report, "_write", recording)
  return seen


def test_smoke_writes_finite_rows_for_every_section(suite, tmp_path, monkeypatch):
  out = tmp_path / "smoke.json"
  writes = _rows_in_file_after_each_write(suite, monkeypatch, out)
  returned = suite.main(["--smoke", "--json", str(out)])
  rows = json.loads(out.read_text())
  assert rows == returned
  assert writes == list(range(len(rows) + 1)), "FILE is rewritten after every row (an empty list first)"
  assert not list(tmp_path.glob(".device_suite.*")), "no temporary file is left behind"
  names = {(r["section"], r["name"]) for r in rows}
  assert {section for section, _ in names} == set(suite.SECTIONS)
  assert {("bald", "head_only"), ("bald", "full"), ("kcenter", "greedy"), ("svp", "proxy_train"),
          ("svp", "proxy_select"), ("svp", "target_train"), ("svp", "round")} <= names
  for r in rows:
    assert all(k in r for k in REQUIRED), (r["name"], [k for k in REQUIRED if k not in r])
    for k in ("compile_seconds", "run_seconds", "achieved"):
      assert isinstance(r[k], float) and math.isfinite(r[k]) and r[k] >= 0, (r["name"], k, r[k])
    assert r["run_seconds"] > 0 and r["achieved"] > 0
    assert r["platform"] == "cpu" and r["jax_version"] == jax.__version__
    if r["section"] in ("train", "kcenter"):  # the device tables have no CPU entry
      assert r["peak"] is None and r["fraction"] is None
    if r["peak"] is not None:
      assert math.isfinite(r["peak"]) and math.isclose(r["fraction"], r["achieved"] / r["peak"])
  train = next(r for r in rows if r["section"] == "train")
  assert train["sizes"]["dtype"] == "bfloat16" and train["gflops_per_step"] > 0
  kcenter = next(r for r in rows if r["section"] == "kcenter")
  assert kcenter["same_picks"] and kcenter["sizes"]["budget"] == suite.SMOKE["kcenter"]["budget"]
  bald = {r["name"]: r for r in rows if r["section"] == "bald"}
  passes = suite.SMOKE["bald"]["passes"]
  assert math.isclose(bald["full"]["floor_seconds"], passes * bald["head_only"]["floor_seconds"])


def test_only_kcenter_writes_only_kcenter_rows(suite, tmp_path, monkeypatch):
  out = tmp_path / "k.json"
  writes = _rows_in_file_after_each_write(suite, monkeypatch, out)
  suite.main(["--smoke", "--only", "kcenter", "--json", str(out)])
  rows = json.loads(out.read_text())
  assert rows and {r["section"] for r in rows} == {"kcenter"}
  assert writes == list(range(len(rows) + 1))


def test_unknown_section_is_refused_before_any_run(suite, tmp_path, capsys):
  out = tmp_path / "x.json"
  with pytest.raises(SystemExit) as exit_info:
    suite.main(["--smoke", "--only", "kcenter,trian", "--json", str(out)])
  assert exit_info.value.code == 2 and "trian" in capsys.readouterr().err
  assert not out.exists()
  with pytest.raises(SystemExit) as exit_info:
    suite.main(["--smoke", "--json", str(tmp_path / "no_such_folder" / "x.json")])
  assert exit_info.value.code == 2 and "no_such_folder" in capsys.readouterr().err


@pytest.mark.parametrize("kind,platform,tflops,tbps", [
    ("NVIDIA H100 80GB HBM3", "gpu", 989.4, 3.35), ("NVIDIA H100 PCIe", "gpu", 756.0, 2.0),
    ("NVIDIA H200", "gpu", 989.4, 4.8), ("NVIDIA A100-SXM4-80GB", "gpu", 312.0, 2.0),
    ("TPU v4", "tpu", 275.0, None), ("TPU v5 lite", "tpu", 197.0, None), ("TPU v5", "tpu", 459.0, None),
    ("NVIDIA GeForce RTX 4090", "gpu", None, None), ("cpu", "cpu", None, None)])
def test_peak_tables_by_device_kind(suite, kind, platform, tflops, tbps):
  device = types.SimpleNamespace(device_kind=kind, platform=platform)
  assert suite.lookup(suite.BF16_PEAK_TFLOPS, device) == tflops
  assert suite.lookup(suite.HBM_TBPS, device) == tbps
