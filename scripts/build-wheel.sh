#!/usr/bin/env bash
# Builds the release wheel for one interpreter into dist/, then installs it into a fresh
# venv and smoke-tests it there (scripts/smoke_wheel.py), from outside the checkout.
#
#     scripts/build-wheel.sh 3.12      # GIL build: pyenv's or PATH's python3.12
#     scripts/build-wheel.sh 3.13t     # free-threaded 3.13t, on the PyO3 0.28 manifest
#
# The interpreter is found as scripts/test-interpreter.sh finds it (3.13t: by
# scripts/ensure-python313t.sh; its project is target/pyo3-0.28, see
# scripts/pyo3-0.28-project.sh); a missing one fails. The target dir is the one the tests
# build in, so a wheel after `make test` reuses its compiled crates.
set -euo pipefail
version=${1:?usage: scripts/build-wheel.sh VERSION}
cd "$(dirname "$0")/.."
# shellcheck source=lib/find-python.sh
. scripts/lib/find-python.sh

project=$PWD
case $version in
    3.13t)
        python=$(scripts/ensure-python313t.sh | tail -n 1)
        project=$(scripts/pyo3-0.28-project.sh)
        target=$PWD/target/ft ;;
    3.11)
        target=$PWD/target ;;
    *)
        target=$PWD/target/py$version ;;
esac
if [[ $version != 3.13t ]] && ! python=$(find_python "$version"); then
    echo "build-wheel: no CPython $version found (pyenv or python$version on PATH)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/warp_cache-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/build"
"$work/build/bin/python" -m pip install --quiet "$(grep '^maturin' requirements-dev.txt)"
mkdir -p "$work/out" dist
(cd "$project" && CARGO_TARGET_DIR=$target "$work/build/bin/maturin" build --release --quiet \
    --locked --interpreter "$python" --out "$work/out")
wheel=$(ls "$work"/out/*.whl)
echo "build-wheel: $(basename "$wheel")"
# Exactly one extension module: never one that another interpreter's build left in python/.
"$python" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
modules = [n for n in names if n.endswith(".so")]
assert len(modules) == 1, f"expected one extension module, found {modules}"
assert not [n for n in names if "__pycache__" in n], "bytecode in the wheel"
PY

"$python" -m venv "$work/smoke"
"$work/smoke/bin/python" -m pip install --quiet --no-index --no-deps "$wheel"
(cd "$work" && env -u PYTHON_GIL "$work/smoke/bin/python" "$OLDPWD/scripts/smoke_wheel.py")
mv "$wheel" dist/
