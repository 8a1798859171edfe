#!/bin/sh
# Shell functions every guest payload shares; initramfs.sh installs this as
# /usr/local/lib/guest-lib.sh and payloads source it (`. /usr/local/lib/guest-lib.sh`).

# wait_until SECONDS COMMAND...: polls COMMAND every 0.1 s.
wait_until() {
    limit=$(( $1 * 10 )); shift
    n=0
    until "$@"; do
        n=$((n + 1))
        [ "$n" -lt "$limit" ] || return 1
        sleep 0.1
    done
}

# attached ERR_FILE: tcpstate -v said which TIME_WAIT probes it attached.
attached() { grep -q 'TIME_WAIT probes:' "$1"; }
