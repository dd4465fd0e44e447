#!/usr/bin/env bash
# Provide a free-threaded CPython 3.13 ("3.13t", built with --disable-gil) and
# print the absolute path of its interpreter as the LAST line of stdout.
# All progress output goes to stderr, so callers can do:
#
#     PY313T="$(scripts/ensure-python313t.sh | tail -n1)"
#
# Resolution order (first one that passes verification wins):
#   1. python3.13t already on PATH
#   2. a previous build in the cache dir (fast path for later runs)
#   3. `uv python install 3.13t` (normally fails here: no network but registries)
#   4. build from Debian's python3.13 source package (upstream CPython tarball)
#
# Environment:
#   WARP_CACHE_TOOLS          cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/warp_cache)
#   WARP_CACHE_BUILD_JOBS     make -j value for the build (default: nproc)
#   WARP_CACHE_DEBIAN_SUITE   Debian suite to take the source from (default: trixie)
#   WARP_CACHE_DEBIAN_MIRROR  Debian archive URL (default: read from apt sources)
#   WARP_CACHE_UV_TIMEOUT     seconds to give `uv python install` (default: 60)
set -euo pipefail

TOOLS_DIR="${WARP_CACHE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/warp_cache}"
PREFIX="$TOOLS_DIR/python3.13t"
PY_BIN="$PREFIX/bin/python3.13t"
# Written only after a build installed and verified cleanly; a prefix without
# it is the leftover of an interrupted build and is never trusted.
MARKER="$PREFIX/.complete"
LOCK_FILE="$TOOLS_DIR/python3.13t.lock"
APT_STATE="$TOOLS_DIR/apt-state"
SRC_DIR="$TOOLS_DIR/debian-src"
DEBIAN_SUITE="${WARP_CACHE_DEBIAN_SUITE:-trixie}"
BUILD_JOBS="${WARP_CACHE_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
UV_TIMEOUT="${WARP_CACHE_UV_TIMEOUT:-60}"

# Build deps (bookworm -dev packages) for the stdlib modules we rely on:
# ssl (pip from PyPI over https), zlib (ensurepip), ctypes, bz2, lzma, sqlite3.
BUILD_DEPS=(build-essential pkg-config libssl-dev zlib1g-dev libffi-dev
            libbz2-dev liblzma-dev libsqlite3-dev uuid-dev)

log() { printf '[ensure-python313t] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------

# verify PYTHON: succeed only for a working free-threaded 3.13 with the GIL
# actually off and the modules pip needs. PYTHON_GIL is unset so a caller's
# environment can't mask (or fake) the interpreter's default.
verify() {
    local py="$1"
    [[ -x "$py" ]] || { log "$py: not executable"; return 1; }
    env -u PYTHON_GIL "$py" - <<'EOF' >&2
import sys, sysconfig
problems = []
if sys.version_info[:2] != (3, 13):
    problems.append("version is %s, expected 3.13.x" % sys.version.split()[0])
if sysconfig.get_config_var("Py_GIL_DISABLED") != 1:
    problems.append("Py_GIL_DISABLED is %r (not a --disable-gil build)"
                    % sysconfig.get_config_var("Py_GIL_DISABLED"))
elif getattr(sys, "_is_gil_enabled", lambda: True)() is not False:
    problems.append("sys._is_gil_enabled() is not False")
# Required: pip/ensurepip need zlib and ssl; ctypes is broadly used.
for mod in ("ssl", "zlib", "ctypes"):
    try:
        __import__(mod)
    except ImportError as e:
        problems.append("cannot import %s: %s" % (mod, e))
# Nice to have only.
for mod in ("bz2", "lzma", "sqlite3"):
    try:
        __import__(mod)
    except ImportError as e:
        print("[ensure-python313t] warning: cannot import %s: %s" % (mod, e))
if problems:
    for p in problems:
        print("[ensure-python313t] %s: %s" % (sys.executable, p))
    sys.exit(1)
print("[ensure-python313t] ok: %s (%s, free-threaded, GIL disabled)"
      % (sys.executable, sys.version.split()[0]))
EOF
}

# Print the result (last stdout line) and stop.
found() {
    local py
    py="$(readlink -f "$1")"
    printf '%s\n' "$py"
    exit 0
}

# ---------------------------------------------------------------------------
# Steps 1-3: existing interpreters
# ---------------------------------------------------------------------------

try_path() {
    local py
    py="$(command -v python3.13t 2>/dev/null)" || return 1
    log "found python3.13t on PATH: $py"
    verify "$py" || { log "ignoring $py"; return 1; }
    found "$py"
}

try_cache() {
    [[ -f "$MARKER" && -x "$PY_BIN" ]] || return 1
    log "using cached build: $PY_BIN"
    verify "$PY_BIN" || { log "cached build failed verification, ignoring it"; return 1; }
    found "$PY_BIN"
}

try_uv() {
    command -v uv >/dev/null 2>&1 || return 1
    log "trying: uv python install 3.13t (timeout ${UV_TIMEOUT}s)"
    # No general internet here: expect a quick failure, but never hang.
    if ! timeout "$UV_TIMEOUT" uv python install 3.13t >&2 2>&1; then
        log "uv python install failed; falling through"
        return 1
    fi
    local py
    py="$(timeout 30 uv python find 3.13t 2>/dev/null)" || return 1
    verify "$py" || return 1
    found "$py"
}

# ---------------------------------------------------------------------------
# Step 4: build from Debian's source package
# ---------------------------------------------------------------------------

# apt_deb_entries, debian_mirror (WARP_CACHE_DEBIAN_MIRROR overrides).
# shellcheck source=lib/debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"

# Install any missing build deps from the machine's normal apt config.
install_build_deps() {
    local missing=() p
    for p in "${BUILD_DEPS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing build deps: ${missing[*]}"
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Try without `apt-get update` first: the lists are often already there.
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
        apt-get update >&2 || die "apt-get update failed"
        apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
            die "apt-get install ${missing[*]} failed"
    fi
}

# apt-get with a private state dir, so the machine's own apt config is untouched.
private_apt() {
    apt-get \
        -o Dir::Etc::SourceList="$APT_STATE/sources.list" \
        -o Dir::Etc::SourceParts="$APT_STATE/sources.list.d" \
        -o Dir::State::Lists="$APT_STATE/lists" \
        -o Dir::Cache="$APT_STATE/cache" \
        -o APT::Sandbox::User=root \
        "$@"
}

# Print the downloaded upstream tarball in $SRC_DIR, if any.
cached_orig() {
    local f
    for f in "$SRC_DIR"/python3.13_*.orig.tar.*; do
        [[ -f "$f" && "$f" != *.asc ]] && { printf '%s\n' "$f"; return 0; }
    done
    return 1
}

# Download the upstream tarball of Debian's python3.13 into $SRC_DIR and print
# its path. Kept across runs so a failed build doesn't re-download; fetched in
# a temp dir and moved into place only when complete.
fetch_source() {
    local orig
    if orig="$(cached_orig)"; then
        log "reusing downloaded source: $orig"
        printf '%s\n' "$orig"; return
    fi
    local mirror dl
    mirror="$(debian_mirror)"
    log "fetching python3.13 source from Debian $DEBIAN_SUITE ($mirror)"
    mkdir -p "$APT_STATE/sources.list.d" "$APT_STATE/lists/partial" \
             "$APT_STATE/cache/archives/partial" "$SRC_DIR"
    local signed=""
    [[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]] &&
        signed="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    printf 'deb-src %s%s %s main\n' "$signed" "$mirror" "$DEBIAN_SUITE" >"$APT_STATE/sources.list"
    private_apt update >&2 || die "apt-get update (private deb-src state) failed"
    dl="$(mktemp -d "$SRC_DIR/download.XXXXXX")"
    (cd "$dl" && private_apt source --download-only python3.13 >&2) ||
        { rm -rf "$dl"; die "apt-get source --download-only python3.13 failed"; }
    mv "$dl"/python3.13_* "$SRC_DIR"/
    rm -rf "$dl"
    orig="$(cached_orig)" || die "no python3.13 orig tarball in $SRC_DIR after download"
    printf '%s\n' "$orig"
}

build_from_debian() {
    install_build_deps
    local orig work src
    orig="$(fetch_source)"
    # We hold the lock, so any other build tree is a killed run's leftover.
    rm -rf "$TOOLS_DIR"/build.*
    work="$(mktemp -d "$TOOLS_DIR/build.XXXXXX")"
    # Build tree is throwaway; remove it however we exit (signals included).
    BUILD_WORK="$work"
    trap 'rm -rf "${BUILD_WORK:-}"' EXIT
    trap 'exit 130' INT TERM HUP
    # Only the upstream CPython source is needed, not Debian's patches.
    log "extracting $(basename "$orig")"
    tar -xf "$orig" -C "$work" ||
        { rm -f "$orig"; die "cannot extract $orig (removed it; rerun to re-download)"; }
    src="$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)"
    [[ -x "$src/configure" ]] || die "no configure script in $orig"

    # A prefix without the marker is a leftover of an interrupted build.
    rm -rf "$PREFIX"
    local start=$SECONDS
    log "configuring (--disable-gil --prefix=$PREFIX)"
    (cd "$src" && ./configure --disable-gil --prefix="$PREFIX" \
        --with-ensurepip=install >"$work/configure.log" 2>&1) ||
        { tail -n 40 "$work/configure.log" >&2; die "configure failed"; }
    log "building with make -j$BUILD_JOBS (several minutes)"
    (cd "$src" && make -j"$BUILD_JOBS" >"$work/make.log" 2>&1) ||
        { tail -n 60 "$work/make.log" >&2; die "make failed"; }
    # Report stdlib extensions that didn't build (e.g. missing -dev package).
    grep -A3 -E 'necessary bits to build these optional modules|Failed to build these modules' \
        "$work/make.log" >&2 || true
    log "installing into $PREFIX"
    (cd "$src" && make install >"$work/install.log" 2>&1) ||
        { tail -n 40 "$work/install.log" >&2; die "make install failed"; }
    [[ -x "$PY_BIN" ]] || die "make install did not produce $PY_BIN"
    verify "$PY_BIN" || die "freshly built $PY_BIN failed verification"
    touch "$MARKER"
    log "built and installed in $((SECONDS - start))s"
}

main() {
    try_path || true
    mkdir -p "$TOOLS_DIR"
    try_cache || true
    try_uv || true

    # Serialize builds: a concurrent run waits here, then finds the cache.
    exec 9>"$LOCK_FILE"
    if ! flock -n 9; then
        log "another run holds $LOCK_FILE (building?); waiting"
        flock 9
    fi
    try_cache || true
    build_from_debian
    found "$PY_BIN"
}

main "$@"
