#!/usr/bin/env bash
# initramfs.sh OUT[.gz] PAYLOAD_SCRIPT [FILE...]
#
# Builds a newc initramfs (gzip'd when OUT ends in .gz) for the QEMU tests:
#   - busybox-static as /bin/busybox with a symlink per applet;
#   - nginx (from nginx-light) and curl with their shared libraries, plus
#     /usr/local/bin/nginx-guest (see nginx-guest.sh) to start nginx, and
#     /usr/local/lib/guest-lib.sh (the payloads' shared shell functions);
#   - each FILE: a plain path (a binary) goes to /usr/local/bin/BASENAME (in
#     PATH) and, when given as an absolute path outside /tmp, the same path
#     is a symlink to it; HOST=GUEST copies HOST to the absolute guest path GUEST. Dynamic ELF
#     files bring their `ldd` libraries and the loader at the host's paths;
#   - /payload (the PAYLOAD_SCRIPT) and an /init that mounts proc, sysfs,
#     devtmpfs, tmpfs /tmp, bpffs, tracefs, debugfs, brings lo up, runs
#     /payload (cwd /tmp, stdin /dev/null) under a time limit, prints
#     "@@PAYLOAD_EXIT=<code>@@" and powers off.
#
# The payload runs through its shebang; use #!/bin/sh (busybox ash) or add
# /bin/bash to FILE... for bash. Environment:
#   PAYLOAD_TIMEOUT  seconds before the payload is killed (default 240;
#                    exit code 137 then, and "@@PAYLOAD_TIMEOUT@@" is printed)
#   PAYLOAD_ENV      extra "K=V K2=V2" exported to the payload (no spaces in V)
set -euo pipefail

usage() { echo "usage: $0 OUT[.gz] PAYLOAD_SCRIPT [FILE|HOST=GUEST]..." >&2; exit 2; }
[ $# -ge 2 ] || usage
out=$1
payload=$2
shift 2

log() { echo "initramfs.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
payload_timeout=${PAYLOAD_TIMEOUT:-240}
payload_env=${PAYLOAD_ENV:-}
[[ "$payload_timeout" =~ ^[0-9]+$ ]] || die "PAYLOAD_TIMEOUT must be a number of seconds"
[ -f "$payload" ] || die "payload $payload not found"

busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox missing: apt-get install busybox-static"
if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked: apt-get install busybox-static"
fi
for tool in cpio gzip ldd; do
    command -v "$tool" >/dev/null || die "$tool missing"
done
nginx=$(command -v nginx || true)
[ -z "$nginx" ] && [ -x /usr/sbin/nginx ] && nginx=/usr/sbin/nginx
[ -n "$nginx" ] || die "nginx missing: apt-get install nginx-light"
curl=$(command -v curl) || die "curl missing: apt-get install curl"

t0=$(date +%s.%N)
stage=$(mktemp -d "${TMPDIR:-/tmp}/tcpstate-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,dev,proc,sys,tmp,run,etc,root,lib/modules,var/log,var/lib/nginx}
chmod 1777 "$stage/tmp"

# busybox and its applets (not "busybox" itself: a self-symlink breaks /init).
cp "$busybox" "$stage/bin/busybox"
while read -r applet; do
    if [ -z "$applet" ] || [ "$applet" = busybox ]; then continue; fi
    [ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
done < <("$busybox" --list)

# Copies a file's shared libraries (and the loader) to the same paths.
copy_libs() {
    local f=$1 lib
    ldd "$f" >/dev/null 2>&1 || return 0   # static or not ELF
    while read -r lib; do
        [ -n "$lib" ] || continue
        [ -e "$stage$lib" ] && continue
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done < <(ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

# copy_file HOST GUEST: copies HOST to GUEST with its libraries.
copy_file() {
    local src=$1 dst=$2
    [ -e "$src" ] || die "$src not found"
    [[ "$dst" == /* ]] || die "guest path $dst must be absolute"
    mkdir -p "$stage$(dirname "$dst")"
    cp -L "$src" "$stage$dst"
    copy_libs "$src"
}

copy_file "$nginx" /usr/sbin/nginx
copy_file "$curl" /usr/bin/curl
copy_file "$here/nginx-guest.sh" /usr/local/bin/nginx-guest
chmod 755 "$stage/usr/local/bin/nginx-guest"
copy_file "$here/guest-lib.sh" /usr/local/lib/guest-lib.sh
# The loader is normally pulled in by ldd; make sure it is there anyway.
if [ -e /lib64/ld-linux-x86-64.so.2 ] && [ ! -e "$stage/lib64/ld-linux-x86-64.so.2" ]; then
    mkdir -p "$stage/lib64"
    cp -L /lib64/ld-linux-x86-64.so.2 "$stage/lib64/"
fi

for arg in "$@"; do
    if [[ "$arg" == *=* ]]; then
        copy_file "${arg%%=*}" "${arg#*=}"
    else
        name=$(basename "$arg")
        copy_file "$arg" "/usr/local/bin/$name"
        # (Not under /tmp: the guest mounts a fresh tmpfs there.)
        if [[ "$arg" == /* ]] && [[ "$arg" != /tmp/* ]] && [ "$arg" != "/usr/local/bin/$name" ] && [ ! -e "$stage$arg" ]; then
            mkdir -p "$stage$(dirname "$arg")"
            ln -s "/usr/local/bin/$name" "$stage$arg"
        fi
    fi
done

# Users for nginx and anything else that looks names up (glibc's files NSS is built in).
cat > "$stage/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$stage/etc/group" <<'EOF'
root:x:0:
www-data:x:33:
nogroup:x:65534:
EOF
printf '127.0.0.1 localhost\n::1 localhost\n' > "$stage/etc/hosts"
printf 'hosts: files\n' > "$stage/etc/nsswitch.conf"

cp "$payload" "$stage/payload"
chmod 755 "$stage/payload"

cat > "$stage/init" <<EOF
#!/bin/sh
# Generated by tests/kernels/initramfs.sh
export PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb
PAYLOAD_TIMEOUT=$payload_timeout
PAYLOAD_ENV="$payload_env"
EOF
cat >> "$stage/init" <<'EOF'
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /sys/fs/bpf /sys/kernel/tracing /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
ip link set lo up
for kv in $PAYLOAD_ENV; do export "$kv"; done
cd /tmp
echo "@@PAYLOAD_START@@ $(uname -r)"
timeout -s KILL "$PAYLOAD_TIMEOUT" /payload </dev/null
rc=$?
if [ "$rc" -eq 137 ]; then
    echo "@@PAYLOAD_TIMEOUT@@ killed after ${PAYLOAD_TIMEOUT}s"
fi
if [ "$rc" -ne 0 ]; then
    echo "---- last kernel messages ----"
    dmesg | tail -n 40
    echo "------------------------------"
fi
echo "@@PAYLOAD_EXIT=$rc@@"
sync
poweroff -f
EOF
chmod 755 "$stage/init"

mknod -m 600 "$stage/dev/console" c 5 1 2>/dev/null || true
mknod -m 666 "$stage/dev/null" c 1 3 2>/dev/null || true

mkdir -p "$(dirname "$out")"
# OUT ending in .gz is gzip'd; any other name gets a plain cpio archive, which
# the kernel unpacks without decompressing (a little faster under TCG).
compress=(cat)
[[ "$out" == *.gz ]] && compress=(gzip -1 -n)
(cd "$stage" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet | "${compress[@]}") > "$out.tmp.$$"
mv "$out.tmp.$$" "$out"
t1=$(date +%s.%N)
log "$out: $(du -h "$out" | cut -f1) in $(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s"
