"""constraints.txt (the versions `make setup` installs) must pin every declared dependency within its range, and
environment.yml (the conda route) must ask for the ranges pyproject.toml declares."""
from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _declared(extras: tuple[str, ...] | None = None) -> list[Requirement]:
    """pyproject's dependencies and those of ``extras`` (None: every extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for name, extra in project.get("optional-dependencies", {}).items():
        if extras is None or name in extras:
            lines += extra
    return [Requirement(line) for line in lines]


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==" and not req.url and not req.extras, \
            f"constraints.txt line {n} is not a plain 'name==version' pin: {line!r}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"constraints.txt pins {req.name} twice"
        pins[name] = Version(spec[0].version)
    return pins


def test_constraints_pin_every_declared_dependency_within_its_range() -> None:
    pins = _pins()
    problems = []
    for req in _declared():
        name = canonicalize_name(req.name)
        if name == "torch":
            assert "torch" not in pins, "torch is pinned by the Makefile's TORCH, not by constraints.txt"
            continue
        if name not in pins:
            problems.append(f"{req.name} is not pinned")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req.name}=={pins[name]} is outside pyproject's {req.specifier}")
    assert not problems, "; ".join(problems) + " (refresh constraints.txt: see its header)"


def test_makefile_applies_the_constraints_and_pins_torch() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line]
    assert len(installs) == 2 and all("$(PIN)" in line for line in installs), installs
    assert "CONSTRAINTS ?= constraints.txt" in makefile and "TORCH ?= torch==" in makefile


def test_environment_yml_asks_for_pyprojects_ranges() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = [d for d in env if isinstance(d, str) and d.split("=")[0] not in ("python", "pip")]
    pip = [d for d in next(d["pip"] for d in env if isinstance(d, dict)) if not d.startswith("-e")]
    asked = {canonicalize_name(r.name.replace("pytorch", "torch")): r.specifier for r in map(Requirement, conda + pip)}
    declared = {canonicalize_name(r.name): r.specifier for r in _declared()}
    needed = {canonicalize_name(r.name) for r in _declared(("notebooks",))}
    assert needed <= asked.keys(), f"environment.yml lacks {sorted(needed - asked.keys())}"
    assert asked.keys() <= declared.keys(), f"environment.yml asks for undeclared {sorted(asked.keys() - declared.keys())}"
    differ = {n: (str(asked[n]), str(declared[n])) for n in asked if asked[n] != declared[n]}
    assert not differ, f"environment.yml's ranges differ from pyproject.toml's (yml, pyproject): {differ}"
