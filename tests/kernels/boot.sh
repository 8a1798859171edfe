#!/usr/bin/env bash
# boot.sh VMLINUZ INITRD [TIMEOUT_S]
#
# Boots VMLINUZ with INITRD (built by initramfs.sh) in QEMU with software
# emulation (TCG; KVM hangs stock kernels on this machine kind), no NIC,
# serial console. Prints the guest's console output on stdout, with escape
# codes and carriage returns stripped, as it arrives. Exits with the payload's
# exit code taken from the "@@PAYLOAD_EXIT=<code>@@" line; when that line is
# missing (kernel panic, hang, QEMU error) it says why on stderr and exits
# non-zero (124 on timeout, 125 otherwise).
#
# TIMEOUT_S (default 300) bounds QEMU itself. Boots are serialised through a
# lock file (${TMPDIR:-/tmp}/tcpstate-qemu.lock) so that tests running on
# several threads do not share the 2 cores; waiting for the lock is not
# counted. TCPSTATE_QEMU_PARALLEL=1 turns the lock off.
# BOOT_LOG=FILE also keeps the cleaned console output in FILE.
set -euo pipefail

usage() { echo "usage: $0 VMLINUZ INITRD [TIMEOUT_S]" >&2; exit 2; }
if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
vmlinuz=$1
initrd=$2
timeout_s=${3:-300}
[[ "$timeout_s" =~ ^[0-9]+$ ]] || usage

log() { echo "boot.sh: $*" >&2; }
[ -f "$vmlinuz" ] || { log "ERROR: no kernel at $vmlinuz"; exit 2; }
[ -f "$initrd" ] || { log "ERROR: no initramfs at $initrd"; exit 2; }
qemu=$(command -v qemu-system-x86_64) || { log "ERROR: qemu-system-x86_64 missing: apt-get install qemu-system-x86"; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tcpstate-boot.XXXXXX")
consolelog=$tmp/console
trap 'rm -rf "$tmp"' EXIT

if [ "${TCPSTATE_QEMU_PARALLEL:-0}" != 1 ]; then
    exec 9>"${TMPDIR:-/tmp}/tcpstate-qemu.lock"
    flock 9
fi

# If we are interrupted or terminated, stop QEMU too: `timeout` runs in its
# own process group, so a Ctrl-C or a TERM to this script would not reach it.
# shellcheck disable=SC2317  # called through the trap
stop_qemu() {
    local pid
    pid=$(cat "$tmp/timeout.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    [ -n "${pipe_pid:-}" ] && wait "$pipe_pid" 2>/dev/null
    log "interrupted: stopped QEMU"
    exit 130
}
trap stop_qemu INT TERM HUP

t0=$(date +%s.%N)
# The sed strips CSI sequences (ESC [ params intermediates final: colours,
# cursor moves, screen clears), two-byte escapes (ESC c) and stray ESCs.
# The pipeline runs in the background so that the trap above can fire.
{
    timeout -k 10 "$timeout_s" "$qemu" \
        -accel tcg,thread=multi -m 1G -smp 2 -nic none \
        -kernel "$vmlinuz" -initrd "$initrd" \
        -nographic -no-reboot \
        -append 'console=ttyS0 panic=-1 quiet' </dev/null 2>&1 &
    echo $! > "$tmp/timeout.pid"
    rc=0
    wait $! || rc=$?
    echo "$rc" > "$tmp/qemu.rc" 2>/dev/null || true
} | tr -d '\r' \
  | LC_ALL=C sed -u -e 's#\x1b\[[0-?]*[ -/]*[@-~]##g' -e 's#\x1b[^[]##g' -e 's#\x1b##g' \
  | tee "$consolelog" &
pipe_pid=$!
wait "$pipe_pid" || true
t1=$(date +%s.%N)
qemu_rc=$(cat "$tmp/qemu.rc" 2>/dev/null || echo 255)
secs=$(awk "BEGIN{printf \"%.1f\", $t1-$t0}")

if [ -n "${BOOT_LOG:-}" ]; then
    cp "$consolelog" "$BOOT_LOG"
fi

marker=$(grep -a -o '@@PAYLOAD_EXIT=[0-9]*@@' "$consolelog" | tail -n 1 || true)
if [ -z "$marker" ]; then
    if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
        log "ERROR: no @@PAYLOAD_EXIT@@ marker: QEMU timed out after ${timeout_s}s"
        reason=124
    elif grep -aq 'Kernel panic' "$consolelog"; then
        log "ERROR: no @@PAYLOAD_EXIT@@ marker: kernel panic: $(grep -a -m1 'Kernel panic' "$consolelog")"
        reason=125
    else
        log "ERROR: no @@PAYLOAD_EXIT@@ marker (QEMU exit $qemu_rc after ${secs}s)"
        reason=125
    fi
    exit "$reason"
fi
rc=${marker#@@PAYLOAD_EXIT=}
rc=${rc%@@}
log "payload exit $rc; QEMU start to power-off ${secs}s (${vmlinuz##*/} $(basename "$(dirname "$vmlinuz")"))"
exit "$rc"
