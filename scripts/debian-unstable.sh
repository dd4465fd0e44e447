#!/usr/bin/env bash
# Runs a command in the checkout inside a minimal Debian unstable root, for the interpreters
# this machine's Debian release does not ship (CPython 3.14 and 3.15, GIL builds):
#
#     scripts/debian-unstable.sh scripts/test-interpreter.sh 3.14
#
# The root is made once with `debootstrap --variant=minbase` and cached outside the
# checkout ($WARP_CACHE_TOOLS/debian-unstable, default ~/.cache/warp_cache/debian-unstable),
# with python3.X-dev/-venv for every X in PYTHONS and build-essential. For each run the
# checkout, the Rust toolchain (~/.cargo, ~/.rustup), /dev, /dev/shm and /proc are
# bind-mounted into it and the command runs under `chroot` (so: as root) in the checkout's
# own path; the mounts are undone however the run ends. The machine's resolv.conf, pip
# configuration and CA bundle are copied in, so pip inside reaches the same index.
#
# Environment:
#   WARP_CACHE_TOOLS          cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/warp_cache)
#   WARP_CACHE_DEBIAN_MIRROR  Debian archive URL (default: read from the apt sources)
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: scripts/debian-unstable.sh COMMAND [ARG...]" >&2; exit 2; }
cd "$(dirname "$0")/.."
CHECKOUT="$PWD"

TOOLS_DIR="${WARP_CACHE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/warp_cache}"
ROOT="$TOOLS_DIR/debian-unstable"
# Written only once the root is bootstrapped and every package is installed and checked;
# a root without it is an interrupted attempt's leftover and is made again.
MARKER="$ROOT/.complete"
PYTHONS=(3.14 3.15)
# redis-server: the Redis tier's tests start their own servers (tests/test_redis.py).
PACKAGES=(build-essential ca-certificates redis-server)
for v in "${PYTHONS[@]}"; do PACKAGES+=("python$v-dev" "python$v-venv"); done
CARGO_DIR="${CARGO_HOME:-$HOME/.cargo}"
RUSTUP_DIR="${RUSTUP_HOME:-$HOME/.rustup}"

log() { printf '[debian-unstable] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=lib/debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"

[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, mount, chroot)"

# Every mount point under the root, deepest first.
mounts_under_root() {
    findmnt -rn -o TARGET | awk -v r="$ROOT/" 'index($0, r) == 1' | sort -r
}

unmount_all() {
    local m
    while read -r m; do
        [[ -n "$m" ]] || continue
        umount "$m" 2>/dev/null || umount -l "$m" || log "could not unmount $m"
    done < <(mounts_under_root)
}

# The pip configuration files pip reads on this machine (global, site, user), if any.
pip_configs() {
    python3 -m pip config debug 2>/dev/null |
        awk '/, exists: True$/ { sub(/^[ \t]*/, ""); sub(/, exists: True$/, ""); print }'
}

# Copies what pip and apt need to reach the same servers as the machine does.
copy_network_config() {
    local f
    # resolv.conf may be a symlink (systemd-resolved): copy its content.
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    # How the machine's apt fetches (proxies; whether it accepts the archive's Release
    # files once their Valid-Until has passed, as a frozen mirror's are).
    apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy) ' \
        >"$ROOT/etc/apt/apt.conf.d/99machine-acquire" || true
    while read -r f; do
        [[ -n "$f" && -r "$f" ]] || continue
        mkdir -p "$ROOT$(dirname "$f")"
        cp -L "$f" "$ROOT$f"
    done < <(pip_configs)
}

# The CA bundle pip is told to use (PIP_CERT or the system's): after the packages, since
# ca-certificates rewrites the root's own bundle when it is installed.
copy_ca_bundle() {
    local bundle="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
    [[ -r "$bundle" ]] || return 0
    mkdir -p "$ROOT$(dirname "$bundle")"
    cp -L "$bundle" "$ROOT$bundle"
}

in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive "$@"
}

provision() {
    local mirror start=$SECONDS
    command -v debootstrap >/dev/null 2>&1 || {
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2 || {
            apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
        } || die "cannot install debootstrap"
    }
    mirror="$(debian_mirror)"
    unmount_all
    [[ -z "$(mounts_under_root)" ]] || die "mounts left under $ROOT; not removing it"
    rm -rf --one-file-system "$ROOT"
    mkdir -p "$ROOT"
    log "debootstrap --variant=minbase unstable ($mirror)"
    debootstrap --variant=minbase unstable "$ROOT" "$mirror" >"$TOOLS_DIR/debootstrap.log" 2>&1 ||
        { tail -n 30 "$TOOLS_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
    copy_network_config
    mount_base
    log "installing ${PACKAGES[*]}"
    local p apt_log="$TOOLS_DIR/debian-unstable-apt.log"
    in_root apt-get update -q >"$apt_log" 2>&1 ||
        { tail -n 20 "$apt_log" >&2; die "apt-get update in the root failed"; }
    for p in "${PACKAGES[@]}"; do
        in_root apt-cache show "$p" >/dev/null 2>&1 || die "Debian unstable has no package $p"
    done
    in_root apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$apt_log" 2>&1 ||
        { tail -n 30 "$apt_log" >&2; die "apt-get install in the root failed"; }
    in_root apt-get clean
    copy_ca_bundle
    for p in "${PYTHONS[@]}"; do
        in_root "python$p" -c 'import ssl, venv, ensurepip, sysconfig' ||
            die "python$p in the root is not usable"
    done
    echo "${PACKAGES[*]}" >"$MARKER"
    log "root ready in $((SECONDS - start))s: $ROOT"
}

mount_base() {
    mount --bind /dev "$ROOT/dev"
    mount --bind /dev/pts "$ROOT/dev/pts"
    mount --bind /dev/shm "$ROOT/dev/shm"
    mount -t proc proc "$ROOT/proc"
}

mount_work() {
    local dir
    for dir in "$CHECKOUT" "$CARGO_DIR" "$RUSTUP_DIR"; do
        mkdir -p "$ROOT$dir"
        mount --bind "$dir" "$ROOT$dir"
    done
}

# One run at a time per root: mounts and packages are the root's, not the run's. A run that
# holds the lock may remove any mount it finds: it is a killed run's leftover.
mkdir -p "$TOOLS_DIR"
exec 9>"$ROOT.lock"
flock 9
trap unmount_all EXIT
trap 'exit 130' INT TERM HUP
unmount_all
if [[ ! -f "$MARKER" ]]; then
    provision
else
    copy_network_config
    copy_ca_bundle
    mount_base
    # A root made for fewer packages gets the new ones (the marker lists what it has).
    if [[ "$(cat "$MARKER")" != "${PACKAGES[*]}" ]]; then
        log "installing ${PACKAGES[*]} (the root had: $(cat "$MARKER"))"
        in_root apt-get update -q >&2 &&
            in_root apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >&2 ||
            die "apt-get install in the root failed"
        in_root apt-get clean
        echo "${PACKAGES[*]}" >"$MARKER"
    fi
fi
mount_work
# PIP_* (index, certificate, timeouts) pass through; the toolchain is found by PATH.
pip_env=()
while IFS='=' read -r name value; do
    [[ $name == PIP_* ]] && pip_env+=("$name=$value")
done < <(env)
status=0
chroot "$ROOT" /usr/bin/env -i HOME="$HOME" LANG=C.UTF-8 CI="${CI:-}" \
    PATH="$CARGO_DIR/bin:/usr/local/bin:/usr/bin:/bin" \
    CARGO_HOME="$CARGO_DIR" RUSTUP_HOME="$RUSTUP_DIR" ${CARGO_BUILD_JOBS:+CARGO_BUILD_JOBS=$CARGO_BUILD_JOBS} \
    ${PYTHONDONTWRITEBYTECODE:+PYTHONDONTWRITEBYTECODE=$PYTHONDONTWRITEBYTECODE} \
    "${pip_env[@]}" \
    /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$CHECKOUT" "$@" || status=$?
exit "$status"
