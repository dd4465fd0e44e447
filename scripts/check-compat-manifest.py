"""Fails when compat/pyo3-0.28/Cargo.toml (the free-threaded 3.13t build) drifts from
Cargo.toml in anything but PyO3's version: same dependencies, features, lints and release
profile, the same sources."""

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYO3 = ("pyo3", "pyo3-build-config")


def load(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


def without_pyo3(deps: dict) -> dict:
    return {name: spec for name, spec in deps.items() if name not in PYO3}


main = load(ROOT / "Cargo.toml")
compat = load(ROOT / "compat/pyo3-0.28/Cargo.toml")
problems = []
for section in ("dependencies", "build-dependencies"):
    if without_pyo3(main.get(section, {})) != without_pyo3(compat.get(section, {})):
        problems.append(f"[{section}] differ beyond pyo3")
for section in ("features", "lints"):
    if main.get(section) != compat.get(section):
        problems.append(f"[{section}] differ")
if main["profile"]["release"] != compat["profile"]["release"]:
    problems.append("[profile.release] differs")
for key in ("name", "version", "edition", "rust-version"):
    if main["package"][key] != compat["package"][key]:
        problems.append(f"package.{key} differs")
if (ROOT / "compat/pyo3-0.28" / compat["lib"]["path"]).resolve() != ROOT / "src/lib.rs":
    problems.append("[lib] path is not src/lib.rs")
for name in PYO3:
    for section in ("dependencies", "build-dependencies"):
        spec = compat.get(section, {}).get(name)
        if spec is not None and not spec["version"].startswith("0.28"):
            problems.append(f"{name} is not pinned to 0.28")
if problems:
    sys.exit("compat/pyo3-0.28/Cargo.toml: " + "; ".join(problems))
print("compat/pyo3-0.28/Cargo.toml matches Cargo.toml but for PyO3 0.28")
