#!/usr/bin/env bash
# run.sh VERSION PAYLOAD_SCRIPT [FILE|HOST=GUEST]...
#
# Runs PAYLOAD_SCRIPT as root in a stock Debian cloud kernel (VERSION =
# 5.10 | 6.1 | 6.12, see fetch.sh) under QEMU: fetch.sh, then initramfs.sh, then
# boot.sh. FILEs are put in the guest as initramfs.sh describes (binaries in
# /usr/local/bin, with their libraries). The kernel's modules that fetch.sh
# extracted (veth, and DCCP's before 6.16) are in the guest as
# /lib/modules/NAME.ko (`insmod /lib/modules/veth.ko`).
#
# stdout: the guest's console. stderr: progress and timings.
# Exit code: the payload's, or non-zero with a message when the guest did not
# get to report one (download failure, panic, timeout). A guest that fails
# before its payload starts is booted once more.
# Environment: BOOT_TIMEOUT (QEMU limit, default 300 s), PAYLOAD_TIMEOUT
# (default 240 s), PAYLOAD_ENV, BOOT_LOG, TCPSTATE_KERNEL_CACHE,
# TCPSTATE_QEMU_PARALLEL (see the other scripts).
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 5.10|6.1|6.12 PAYLOAD_SCRIPT [FILE|HOST=GUEST]..." >&2; exit 2; }
version=$1
payload=$2
shift 2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

vmlinuz=$("$here/fetch.sh" "$version")
kdir=$(dirname "$vmlinuz")

extra=()
while read -r m; do
    [ -s "$kdir/$m.ko" ] && extra+=("$kdir/$m.ko=/lib/modules/$m.ko")
done < "$kdir/modules"

initrd=$(mktemp "${TMPDIR:-/tmp}/tcpstate-initrd.XXXXXX.cpio")   # uncompressed: boots faster
trap 'rm -f "$initrd"' EXIT
"$here/initramfs.sh" "$initrd" "$payload" "${extra[@]}" "$@"

# A guest that dies or hangs without its payload's verdict (a kernel oops,
# seen once in a while under software emulation, before or during the
# payload; once a 5.10 guest that went silent between two runs until QEMU's
# timeout) gets one more boot; only the last boot's console is printed, and
# what the first one said goes to stderr. A real defect fails both boots.
log=$(mktemp "${TMPDIR:-/tmp}/tcpstate-boot-log.XXXXXX")
console=$(mktemp "${TMPDIR:-/tmp}/tcpstate-console.XXXXXX")
trap 'rm -f "$initrd" "$log" "$console"' EXIT
for attempt in 1 2; do
    rc=0
    BOOT_LOG=$log "$here/boot.sh" "$vmlinuz" "$initrd" "${BOOT_TIMEOUT:-300}" > "$console" || rc=$?
    died=$([ "$rc" -eq 125 ] || [ "$rc" -eq 124 ] || { [ "$rc" -ne 0 ] && ! grep -aq '@@PAYLOAD_START@@' "$log"; } && echo yes || true)
    if [ -z "$died" ] || [ "$attempt" -eq 2 ]; then
        break
    fi
    echo "run.sh: the guest died or hung without the payload's verdict (exit $rc); booting once more" >&2
    tail -n 40 "$console" | sed 's/^/run.sh:   /' >&2
done
cat "$console"
[ -n "${BOOT_LOG:-}" ] && cp "$log" "$BOOT_LOG"
exit "$rc"
