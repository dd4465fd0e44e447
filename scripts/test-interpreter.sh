#!/usr/bin/env bash
# Builds warp_cache for one more GIL interpreter and runs the whole pytest suite on it, in
# its own venv (.venv-<version>) and target dir (target/py<version>).
#
#     scripts/test-interpreter.sh 3.12
#
# The interpreter is the first that runs of: pyenv's newest <version>.x
# (~/.pyenv/versions), `python<version>` on PATH. Without one the script fails and says so:
# a skipped interpreter must not pass for a tested one.
set -euo pipefail
version=${1:?usage: scripts/test-interpreter.sh VERSION}
cd "$(dirname "$0")/.."

# shellcheck source=lib/find-python.sh
. scripts/lib/find-python.sh

if ! python=$(find_python "$version"); then
    echo "test-interpreter: no CPython $version found (pyenv or python$version on PATH)" >&2
    exit 1
fi
venv=".venv-$version"
if [ ! -f "$venv/.installed-dev" ]; then
    "$python" -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r requirements-dev.txt
    touch "$venv/.installed-dev"
fi
echo "test-interpreter: $("$venv/bin/python" --version) ($python)"
VIRTUAL_ENV="$PWD/$venv" CARGO_TARGET_DIR="target/py$version" \
    "$venv/bin/maturin" develop --release --quiet
"$venv/bin/python" -m pytest tests -q -p no:cacheprovider
