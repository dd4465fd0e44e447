"""Shared setup for the warp_cache test suite (memory backend)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import settings

TESTS_DIR = Path(__file__).resolve().parent

# Helper modules (tests/_pool_helpers.py) must be importable by name, here and in pool
# workers started with the "spawn" method, which copy the parent's sys.path.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

# No example database written into the work tree; no deadline: a shared 2-core machine is
# slow at times, and timing is not what these properties check.
settings.register_profile("warp_cache", database=None, deadline=None, max_examples=150)
settings.load_profile("warp_cache")


@pytest.fixture(autouse=True)
def private_shared_cache_dir(tmp_path_factory, monkeypatch):
    """Every test's shared caches live in a fresh directory, never in /dev/shm."""
    directory = tmp_path_factory.mktemp("shm") / "warp_cache"
    monkeypatch.setenv("WARP_CACHE_DIR", str(directory))
    return directory
