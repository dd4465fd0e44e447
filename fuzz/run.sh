#!/bin/sh
# Runs cargo-fuzz targets for a bounded time each, one after another (one core each).
#   fuzz/run.sh SECONDS [TARGET...]     (default: every target in fuzz/Cargo.toml)
# Needs a nightly toolchain (rustup); installs cargo-fuzz if it is missing. Without nightly,
# or if cargo-fuzz cannot be installed, it says so and exits 0 (a skip, not a failure).
# The committed seeds in fuzz/corpus/<target> are read, never written: new inputs go to
# fuzz/target/corpus/<target>, crashes to fuzz/artifacts/<target>, logs to fuzz/target/logs.
set -eu
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: skipped: no nightly/cargo-fuzz (no nightly toolchain: rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo +nightly install cargo-fuzz --locked)"
    if ! cargo +nightly install cargo-fuzz --locked; then
        echo "fuzz: skipped: no nightly/cargo-fuzz (cargo-fuzz could not be installed)"
        exit 0
    fi
fi

targets=${*:-$(cd fuzz && cargo +nightly fuzz list)}
cargo +nightly fuzz build
mkdir -p fuzz/target/logs
for target in $targets; do
    mkdir -p "fuzz/target/corpus/$target"
    log="fuzz/target/logs/$target.log"
    printf 'fuzz: %-14s %4ss ... ' "$target" "$seconds"
    if cargo +nightly fuzz run "$target" "fuzz/target/corpus/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=20 -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tr -s ' \t' ' '
    else
        echo "FAILED (log: $log)"
        tail -n 80 "$log"
        exit 1
    fi
done
