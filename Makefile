# warp_cache: every entry point sets up what it needs (a .venv in the checkout, pip packages).
# `make demo` and `make test` work on a fresh machine with only the Rust and Python toolchains.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
BUILT := $(VENV)/.built
# Free-threaded CPython 3.13t, built once into ~/.cache/warp_cache by the script if missing.
VENV_FT := .venv-ft
PY_FT := $(VENV_FT)/bin/python
STAMP_FT := $(VENV_FT)/.installed-dev
BUILT_FT := $(VENV_FT)/.built

RUST_SOURCES := $(shell find src -name '*.rs') Cargo.toml Cargo.lock build.rs pyproject.toml
# Free-threaded 3.13t builds on PyO3 0.28 (0.29 dropped 3.13t): a second manifest and
# lockfile for the same sources, laid out as a maturin project in target/pyo3-0.28/.
COMPAT := compat/pyo3-0.28/Cargo.toml compat/pyo3-0.28/Cargo.lock
PY_SOURCES := $(shell find python -name '*.py' -o -name '*.pyi')

.PHONY: help demo test test-rust test-python test-ft lint bench bench-ft build wheels clean

help:
	@echo "make demo   build, then run every example end to end"
	@echo "make test   build, then run every test suite (Rust, lints, pytest)"
	@echo "make loom   model-check the concurrency code (loom; make shuttle: random schedules)"
	@echo "make bench  compare warp_cache with lru_cache and its peers (docs/benchmarks.md)"
	@echo "make bench-rust  criterion microbenchmarks of the stores (target/criterion)"
	@echo "make fuzz   run every cargo-fuzz target for FUZZ_SECONDS (default 60) each (docs/fuzzing.md)"

$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# An optimised build installed into the venv (editable: python/ is used in place).
$(BUILT): $(STAMP) $(RUST_SOURCES) $(PY_SOURCES)
	$(VENV)/bin/maturin develop --release --quiet
	touch $@

build: $(BUILT)

$(STAMP_FT): requirements-ft.txt scripts/ensure-python313t.sh
	py313t="$$(scripts/ensure-python313t.sh | tail -n 1)" && "$$py313t" -m venv --clear $(VENV_FT)
	$(PY_FT) -m pip install --quiet --upgrade pip
	$(PY_FT) -m pip install --quiet -r requirements-ft.txt
	touch $@

# A separate target dir: the two interpreters' builds would otherwise evict each other.
# Editable from target/pyo3-0.28/python (a copy of python/, refreshed by every build).
$(BUILT_FT): $(STAMP_FT) $(RUST_SOURCES) $(PY_SOURCES) $(COMPAT)
	cd "$$(scripts/pyo3-0.28-project.sh)" && VIRTUAL_ENV=$(abspath $(VENV_FT)) \
		CARGO_TARGET_DIR=$(abspath target/ft) $(abspath $(VENV_FT))/bin/maturin develop \
		--release --quiet --locked
	touch $@

demo: $(BUILT)
	@for example in examples/*.py; do \
		echo; echo "=== $$example"; \
		$(PY) $$example || exit 1; \
	done

test-rust:
	$(PYTHON) scripts/check-compat-manifest.py
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --no-default-features --all-targets -- -D warnings
	cargo test --no-default-features

lint: $(STAMP)
	$(VENV)/bin/ruff check python tests examples benches scripts
	$(VENV)/bin/ruff format --check python tests examples benches scripts

# tests/test_redis.py starts its own redis-server: Debian's package, installed when missing.
test-python: $(BUILT)
	scripts/ensure-redis.sh
	$(PY) -m pytest tests -q -p no:cacheprovider

# The whole suite again with the GIL really off (test_typing is a static check: 3.11 only).
test-ft: $(BUILT_FT)
	scripts/ensure-redis.sh
	PYO3_PYTHON=$(abspath $(PY_FT)) CARGO_TARGET_DIR=target/ft-clippy \
		cargo clippy --manifest-path compat/pyo3-0.28/Cargo.toml --locked --lib -- -D warnings
	env -u PYTHON_GIL $(PY_FT) -c 'import sys, warp_cache; assert not sys._is_gil_enabled(), "GIL on"'
	env -u PYTHON_GIL $(PY_FT) -m pytest tests -q -p no:cacheprovider --ignore=tests/test_typing.py

# More GIL interpreters, each in its own venv and target dir (scripts/test-interpreter.sh):
# pyenv's or PATH's, and, where this machine's Debian has none, Debian unstable's in a
# chroot cached outside the checkout (scripts/debian-unstable.sh).
HOST_PYTHONS := 3.12 3.13
CHROOT_PYTHONS := 3.14 3.15
EXTRA_PYTHONS := $(HOST_PYTHONS) $(CHROOT_PYTHONS)
.PHONY: test-matrix $(addprefix test-py,$(EXTRA_PYTHONS))

test-matrix: $(addprefix test-py,$(EXTRA_PYTHONS))

$(addprefix test-py,$(HOST_PYTHONS)): test-py%:
	scripts/ensure-redis.sh
	scripts/test-interpreter.sh $*

$(addprefix test-py,$(CHROOT_PYTHONS)): test-py%:
	scripts/debian-unstable.sh scripts/test-interpreter.sh $*

# Each stage in turn, stopping at the first failure, then the time each took.
TEST_STAGES := test-rust loom shuttle fuzz-smoke lint test-python test-ft \
	$(addprefix test-py,$(EXTRA_PYTHONS))

test:
	@scripts/stages.sh $(TEST_STAGES)

# Model checking (docs/model-checking.md): loom explores every interleaving of small models
# up to a preemption bound (LOOM_MAX_PREEMPTIONS overrides), shuttle runs random schedules
# of larger ones (SHUTTLE_ITERATIONS, SHUTTLE_SEED). Own target dirs, so the cfg'd builds
# never invalidate the normal one; opt-level 1 runs the models 5-10x faster than debug.
MODELS := CARGO_INCREMENTAL=0 CARGO_PROFILE_TEST_OPT_LEVEL=1 CARGO_PROFILE_TEST_DEBUG=0 cargo
.PHONY: loom shuttle

loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
		$(MODELS) clippy --no-default-features --all-targets -- -D warnings
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
		$(MODELS) test --no-default-features --test loom

shuttle:
	RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle \
		$(MODELS) clippy --no-default-features --all-targets -- -D warnings
	RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle \
		$(MODELS) test --no-default-features --test shuttle

# cargo-fuzz campaigns (fuzz/, nightly; cargo-fuzz installed when missing, skipped with a
# message without nightly). One target at a time; see docs/fuzzing.md.
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 15
.PHONY: fuzz fuzz-smoke

fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke:
	fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

# Every benchmark, then docs/benchmarks.md and docs/img/*.png from their results (about
# 4 minutes on 2 cores). Each script also takes --quick (20x smaller) for a smoke run.
bench: $(BUILT) $(BUILT_FT)
	mkdir -p benches/results
	rm -f benches/results/*.json
	$(PY) -m pip install --quiet -r benches/requirements.txt || true
	$(PY) benches/compare.py --json benches/results/gil.json
	env -u PYTHON_GIL $(PY_FT) benches/threads.py --json benches/results/free-threaded.json
	$(PY) benches/processes.py --json benches/results/processes.json
	$(PY) benches/payloads.py --json benches/results/payloads.json
	$(PY) benches/hit_ratio.py --json benches/results/hit-ratio-gil.json
	env -u PYTHON_GIL $(PY_FT) benches/hit_ratio.py --json benches/results/hit-ratio-free-threaded.json
	$(PY) benches/memory.py --json benches/results/memory.json
	$(PY) benches/shared_storage.py --json benches/results/shared-storage.json
	$(PY) benches/stampede.py --json benches/results/stampede.json
	$(MAKE) bench-rust
	$(PY) benches/report.py

# Criterion microbenchmarks of the stores without Python (benches/stores.rs); results in
# target/criterion/. CRITERION_ARGS= (empty) runs criterion's longer default sampling.
CRITERION_ARGS ?= --warm-up-time 1 --measurement-time 2
.PHONY: bench-rust
bench-rust:
	cargo bench --no-default-features --bench stores -- $(CRITERION_ARGS)

# Release wheels into dist/, one per interpreter of the matrix, each installed into a fresh
# venv and smoke-tested there (scripts/build-wheel.sh).
WHEEL_PYTHONS := 3.11 $(HOST_PYTHONS) 3.13t
wheels:
	rm -rf dist
	for version in $(WHEEL_PYTHONS); do scripts/build-wheel.sh $$version || exit 1; done
	for version in $(CHROOT_PYTHONS); do \
		scripts/debian-unstable.sh scripts/build-wheel.sh $$version || exit 1; \
	done
	ls dist

clean:
	rm -rf $(VENV) $(VENV_FT) $(addprefix .venv-,$(EXTRA_PYTHONS)) target dist
