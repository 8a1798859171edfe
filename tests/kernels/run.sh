#!/usr/bin/env bash
# run.sh VERSION PAYLOAD_SCRIPT [FILE|HOST=GUEST]...
#
# Runs PAYLOAD_SCRIPT as root in a stock Debian bookworm cloud kernel
# (VERSION = 6.1 | 6.12) under QEMU: fetch.sh, then initramfs.sh, then
# boot.sh. FILEs are put in the guest as initramfs.sh describes (binaries in
# /usr/local/bin, with their libraries). The kernel's veth module is always in
# the guest as /lib/modules/veth.ko (`insmod /lib/modules/veth.ko`).
#
# stdout: the guest's console. stderr: progress and timings.
# Exit code: the payload's, or non-zero with a message when the guest did not
# get to report one (download failure, panic, timeout).
# Environment: BOOT_TIMEOUT (QEMU limit, default 300 s), PAYLOAD_TIMEOUT
# (default 240 s), PAYLOAD_ENV, BOOT_LOG, TCPSTATE_KERNEL_CACHE,
# TCPSTATE_QEMU_PARALLEL (see the other scripts).
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 6.1|6.12 PAYLOAD_SCRIPT [FILE|HOST=GUEST]..." >&2; exit 2; }
version=$1
payload=$2
shift 2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

vmlinuz=$("$here/fetch.sh" "$version")
kdir=$(dirname "$vmlinuz")

extra=()
[ -s "$kdir/veth.ko" ] && extra+=("$kdir/veth.ko=/lib/modules/veth.ko")

initrd=$(mktemp "${TMPDIR:-/tmp}/tcpstate-initrd.XXXXXX.cpio")   # uncompressed: boots faster
trap 'rm -f "$initrd"' EXIT
"$here/initramfs.sh" "$initrd" "$payload" "${extra[@]}" "$@"

rc=0
"$here/boot.sh" "$vmlinuz" "$initrd" "${BOOT_TIMEOUT:-300}" || rc=$?
exit "$rc"
