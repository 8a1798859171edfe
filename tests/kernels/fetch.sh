#!/usr/bin/env bash
# fetch.sh VERSION  (VERSION = 5.10 | 6.1 | 6.12)
#
# Downloads the newest stock Debian cloud kernel of that series (5.10 from
# bullseye, 6.1 and 6.12 from bookworm) through apt and extracts what the
# QEMU tests need into the cache directory
# .kernels/VERSION/ at the repository root (override the root with
# TCPSTATE_KERNEL_CACHE). Prints the absolute path of the vmlinuz on stdout;
# everything else goes to stderr.
#
# Cache layout (.kernels/VERSION/):
#   vmlinuz   the kernel image          config    its .config
#   veth.ko   the veth module, uncompressed (load it in the guest with insmod)
#   dccp.ko, dccp_ipv4.ko  DCCP (before 6.16), uncompressed; insmod in that order
#   modules   the modules above that this kernel has, one a line
#   release   the kernel release (uname -r)
#   package   "NAME VERSION" of the Debian package it came from
#
# The newest package is found through the meta package's Depends
# (linux-image-cloud-amd64 for 5.10 and 6.1, linux-image-6.12-cloud-amd64 for
# 6.12). A cache whose package matches is reused without touching the network.
# `apt-get update` runs only when apt knows nothing about the meta package,
# or when a download fails (stale lists), never otherwise.
#
# 6.1 and 6.12 come from the machine's own apt sources (bookworm). Bullseye's
# 5.10 comes through a private apt configuration kept in .kernels/.apt-bullseye/
# (its own sources list, package lists and cache, the archive's keyring): the
# machine's apt sources are never changed.
set -euo pipefail

usage() { echo "usage: $0 5.10|6.1|6.12" >&2; exit 2; }
[ $# -eq 1 ] || usage
version=$1
suite=
case "$version" in
    5.10) meta=linux-image-cloud-amd64; suite=bullseye ;;
    6.1)  meta=linux-image-cloud-amd64 ;;
    6.12) meta=linux-image-6.12-cloud-amd64 ;;
    *)    usage ;;
esac

log() { echo "fetch.sh[$version]: $*" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache_root=${TCPSTATE_KERNEL_CACHE:-$root/.kernels}
dir=$cache_root/$version
mkdir -p "$cache_root"

# Serialise concurrent callers (cargo runs tests on several threads).
exec 8>"$cache_root/.lock"
flock 8

export DEBIAN_FRONTEND=noninteractive
# apt_dirs: every apt-get and apt-cache call's options (the suite's private
# configuration, if any); apt_opts: apt-get download's.
apt_dirs=()
if [ -n "$suite" ]; then
    apt_dir=$cache_root/.apt-$suite
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
        > "$apt_dir/sources.list"
    apt_dirs=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
fi
apt_opts=("${apt_dirs[@]}")
[ "$(id -u)" -eq 0 ] && apt_opts+=(-o APT::Sandbox::User=root)

# The modules taken from the package (each may be missing from a kernel).
modules=(veth dccp dccp_ipv4)

cache_ok() {
    [ -s "$dir/vmlinuz" ] && [ -s "$dir/package" ] && [ -s "$dir/release" ] && [ -e "$dir/modules" ]
}

# Resolves the meta package to "IMAGE_PACKAGE VERSION" on stdout, or fails
# when apt does not know the meta package. Prefers the "-unsigned" twin of the
# image package (identical kernel, no Secure Boot signature). Two apt-cache
# calls only (each costs about 0.5 s here). No `| grep -q` anywhere: under
# pipefail an early-closing reader can fail the pipeline with SIGPIPE.
resolve() {
    local deps dep pol
    deps=$(apt-cache "${apt_dirs[@]}" depends "$meta" 2>/dev/null) || true
    dep=$(awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }' <<<"$deps")
    [ -n "$dep" ] || return 1
    pol=$(apt-cache "${apt_dirs[@]}" policy "$dep-unsigned" "$dep" 2>/dev/null) || true
    awk -v want1="$dep-unsigned:" -v want2="$dep:" '
        /^[^ ]/ { pkg = $1 }
        $1 == "Candidate:" && $2 != "(none)" { cand[pkg] = $2 }
        END {
            if (want1 in cand) { sub(/:$/, "", want1); print want1, cand[want1 ":"]; exit 0 }
            if (want2 in cand) { sub(/:$/, "", want2); print want2, cand[want2 ":"]; exit 0 }
            exit 1
        }' <<<"$pol"
}

if ! want=$(resolve); then
    if cache_ok; then
        # No package lists (fresh machine) but a usable cache: stay offline.
        log "apt knows no $meta; reusing cached $(cat "$dir/package")"
        echo "$dir/vmlinuz"
        exit 0
    fi
    log "apt knows no $meta: running apt-get update"
    apt-get "${apt_opts[@]}" update -qq >&2
    want=$(resolve) || { log "ERROR: $meta not found even after apt-get update"; exit 1; }
fi

if cache_ok && [ "$(cat "$dir/package")" = "$want" ]; then
    log "cached: $want ($(cat "$dir/release"))"
    echo "$dir/vmlinuz"
    exit 0
fi

pkg=${want% *}
log "downloading $want"
work=$(mktemp -d "$cache_root/.fetch-$version.XXXXXX")
trap 'rm -rf "$work"' EXIT

t0=$(date +%s.%N)
if ! (cd "$work" && apt-get download -q "${apt_opts[@]}" "$pkg" >&2); then
    log "download failed; refreshing package lists and retrying once"
    apt-get "${apt_opts[@]}" update -qq >&2
    want=$(resolve) || { log "ERROR: cannot resolve $meta after apt-get update"; exit 1; }
    pkg=${want% *}
    (cd "$work" && apt-get download -q "${apt_opts[@]}" "$pkg" >&2)
fi
t1=$(date +%s.%N)

deb=$(find "$work" -maxdepth 1 -name '*.deb' -print -quit)
[ -n "$deb" ] || { log "ERROR: apt-get download produced no .deb"; exit 1; }

# Only the few files we need: the image, its config and the modules.
mkdir -p "$work/x"
dpkg-deb --fsys-tarfile "$deb" \
    | tar -x -C "$work/x" --wildcards './boot/vmlinuz-*' './boot/config-*' \
          '*/drivers/net/veth.ko*' '*/net/dccp/dccp.ko*' '*/net/dccp/dccp_ipv4.ko*' 2>/dev/null \
    || true   # a kernel without DCCP has no such files: tar then complains

vmlinuz=$(find "$work/x/boot" -name 'vmlinuz-*' -print -quit)
[ -n "$vmlinuz" ] || { log "ERROR: no boot/vmlinuz-* in $deb"; exit 1; }
release=${vmlinuz##*/vmlinuz-}

mkdir -p "$work/out"
mv "$vmlinuz" "$work/out/vmlinuz"
mv "$work/x/boot/config-$release" "$work/out/config"
: > "$work/out/modules"
for m in "${modules[@]}"; do
    ko=$(find "$work/x" -name "$m.ko*" -print -quit)
    case "$ko" in
        *.ko.xz) xz -dc "$ko" > "$work/out/$m.ko" ;;
        *.ko.zst) zstd -qdc "$ko" > "$work/out/$m.ko" ;;
        *.ko)    mv "$ko" "$work/out/$m.ko" ;;
        *)       log "note: no $m module in $pkg"; continue ;;
    esac
    echo "$m" >> "$work/out/modules"
done
echo "$release" > "$work/out/release"
echo "$want" > "$work/out/package"

rm -rf "$dir"
mv "$work/out" "$dir"
t2=$(date +%s.%N)
log "$want -> $dir (kernel $release; download $(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s, extract $(awk "BEGIN{printf \"%.1f\", $t2-$t1}") s)"
echo "$dir/vmlinuz"
