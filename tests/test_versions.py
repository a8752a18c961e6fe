"""setup.cfg's version ranges and constraints.txt, the exact set CI tested, agree (issue 27)."""

import configparser
import pathlib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A new series of these can change a run silently: setup.cfg bounds each from both sides.
RANGED = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets")
# Pinned in setup.cfg itself (a local "+cpu" build in CI), so not in constraints.txt.
NOT_CONSTRAINED = ("jaxal", "torch")


def _setup_requirements() -> list[Requirement]:
  cfg = configparser.ConfigParser()
  cfg.read(ROOT / "setup.cfg")
  sections = [cfg["options"]["install_requires"], *cfg["options.extras_require"].values()]
  lines = [line.split("#")[0].strip() for text in sections for line in text.splitlines()]
  return [Requirement(line) for line in lines if line]


def _constraints() -> dict[str, Version]:
  pins = {}
  for line in (ROOT / "constraints.txt").read_text().splitlines():
    line = line.split("#")[0].strip()
    if not line:
      continue
    name, sep, version = line.partition("==")
    assert sep and name.strip() and version.strip(), f"constraints.txt: {line!r} is not name==version"
    name = canonicalize_name(name)
    assert name not in pins, f"constraints.txt pins {name} twice"
    pins[name] = Version(version)
  return pins


def test_core_packages_have_compatible_ranges():
  """Each of RANGED has a lower bound and an upper bound below the next untested series."""
  specs = {canonicalize_name(r.name): r.specifier for r in _setup_requirements()}
  for name in RANGED:
    operators = {s.operator for s in specs.get(name, ())}
    assert operators & {">=", "~="} and operators & {"<", "~="}, \
        f"setup.cfg: {name} needs a range, has {specs.get(name)}"


def test_constraints_pin_every_ranged_package_inside_its_range():
  pins = _constraints()
  ranged = [r for r in _setup_requirements() if r.specifier and canonicalize_name(r.name) not in NOT_CONSTRAINED]
  assert {canonicalize_name(r.name) for r in ranged} >= set(RANGED)
  for req in ranged:
    name = canonicalize_name(req.name)
    assert name in pins, f"constraints.txt does not pin {name}"
    assert req.specifier.contains(pins[name], prereleases=True), \
        f"constraints.txt pins {name}=={pins[name]}, outside setup.cfg's {req.specifier}"


def test_constraints_cover_every_direct_requirement():
  """The tested set includes every package setup.cfg names (install_requires and extras)."""
  pins = _constraints()
  names = {canonicalize_name(r.name) for r in _setup_requirements()} - set(NOT_CONSTRAINED)
  assert not names - set(pins), f"constraints.txt lacks {sorted(names - set(pins))}"
  assert not set(NOT_CONSTRAINED) & set(pins)
