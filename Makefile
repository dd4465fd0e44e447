# warp_cache: every entry point sets up what it needs (a .venv in the checkout, pip packages).
# `make demo` and `make test` work on a fresh machine with only the Rust and Python toolchains.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
BUILT := $(VENV)/.built

RUST_SOURCES := $(shell find src -name '*.rs') Cargo.toml Cargo.lock build.rs pyproject.toml
PY_SOURCES := $(shell find python -name '*.py' -o -name '*.pyi')

.PHONY: help demo test test-rust test-python lint bench build clean

help:
	@echo "make demo   build, then run every example end to end"
	@echo "make test   build, then run every test suite (Rust, lints, pytest)"
	@echo "make bench  compare warp_cache with lru_cache and its peers (docs/benchmarks.md)"

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

demo: $(BUILT)
	@for example in examples/*.py; do \
		echo; echo "=== $$example"; \
		$(PY) $$example || exit 1; \
	done

test-rust:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --no-default-features --all-targets -- -D warnings
	cargo test --no-default-features

lint: $(STAMP)
	$(VENV)/bin/ruff check python tests examples benches
	$(VENV)/bin/ruff format --check python tests examples benches

test-python: $(BUILT)
	$(PY) -m pytest tests -q -p no:cacheprovider

test: test-rust lint test-python

bench: $(BUILT)
	$(PY) -m pip install --quiet -r benches/requirements.txt || true
	$(PY) benches/compare.py --write docs/benchmarks-latest.md

clean:
	rm -rf $(VENV) target
