#!/usr/bin/env bash
# Lays out the free-threaded 3.13t build (PyO3 0.28: compat/pyo3-0.28/Cargo.toml, its own
# Cargo.lock, the same sources) as a maturin project in target/pyo3-0.28/, and prints that
# directory. maturin takes the project root from the manifest's directory and only packs
# files under it (no `..` paths, no symlinks out), so the manifest, lockfile, pyproject.toml,
# README.md and python/ are copied there; the manifest's `../../src` paths hold at that depth.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=target/pyo3-0.28
mkdir -p "$stage"
# -p: the copies keep their times, so cargo does not rebuild for a fresh copy.
cp -p compat/pyo3-0.28/Cargo.toml compat/pyo3-0.28/Cargo.lock pyproject.toml README.md "$stage/"
rm -rf "$stage/python"
# Not the extension modules other interpreters' editable builds left in python/.
tar -c --exclude='*.so' --exclude=__pycache__ python | tar -x -C "$stage"
echo "$PWD/$stage"
