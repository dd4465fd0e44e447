"""The type stubs keep the wrapped function's parameters and return type (checked by mypy)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is not installed (pip install -r requirements-dev.txt)")

ROOT = Path(__file__).resolve().parent.parent
TYPED_EXAMPLE = ROOT / "examples" / "typed_example.py"
SHOULD_FAIL = ROOT / "tests" / "typing" / "should_fail.py"
SHOULD_FAIL_ENTRY = ROOT / "tests" / "typing" / "should_fail_entry.py"


@pytest.fixture(scope="module")
def run_mypy(tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("mypy_cache")
    env = dict(os.environ)
    # Check the package in this work tree (python/warp_cache, with its stubs) unless the
    # caller points mypy elsewhere.
    if "MYPYPATH" not in env and (ROOT / "python" / "warp_cache").is_dir():
        env["MYPYPATH"] = str(ROOT / "python")

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--strict",
                "--no-color-output",
                "--show-error-codes",
                "--cache-dir",
                str(cache_dir),
                str(path),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=300,
        )

    return run


def test_typed_example_passes_strict_mypy(run_mypy):
    result = run_mypy(TYPED_EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


@pytest.mark.parametrize(
    ("path", "line_start", "callee"),
    [
        (SHOULD_FAIL, 'double("not an int")', '"__call__"'),
        # a bound method's per-entry method takes the parameters after self
        (SHOULD_FAIL_ENTRY, "Repo().get.cache_invalidate(", '"cache_invalidate"'),
    ],
    ids=["call", "bound-entry-method"],
)
def test_wrong_argument_type_is_reported(run_mypy, path, line_start, callee):
    result = run_mypy(path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, output
    expected_line = next(
        number
        for number, text in enumerate(path.read_text().splitlines(), start=1)
        if text.startswith(line_start)
    )
    assert re.search(
        rf"{path.name}:{expected_line}: error: .*{callee}.*"
        r'incompatible type "str"; expected "int"\s+\[arg-type\]',
        errors[0],
    ), output


def test_the_package_itself_passes_strict_mypy(run_mypy):
    result = run_mypy(ROOT / "python" / "warp_cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout
