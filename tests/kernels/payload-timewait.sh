#!/bin/sh
# Guest payload of tests/kernels.rs: for each TIME_WAIT probe kind in $KINDS
# (KIND, or KIND:FUNC to make the fentry/kprobe kinds watch FUNC for frees),
# trace three curl -> nginx requests made in a private network namespace,
# then leave the namespace so that the kernel ends their timewait sockets.
# Prints each kind's JSON output between @@BEGIN <kind>@@ and @@END <kind>@@,
# its stderr prefixed with "stderr: "; the Rust test asserts on them.
set -eu

port=8080
kinds=${KINDS:-fentry kprobe timer auto fentry:inet_twsk_put kprobe:inet_twsk_put}

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

attached() { grep -q 'TIME_WAIT probes:' "$1"; }
deaths_seen() { [ "$(grep -c '"old":"TIME_WAIT","new":"CLOSE"' "$1")" -ge "$2" ]; }

for kind in $kinds; do
    out=/tmp/out.$kind
    err=/tmp/err.$kind
    set -- --tw-probe "${kind%%:*}"
    case $kind in *:*) set -- "$@" --tw-free-fn "${kind#*:}" ;; esac
    tcpstate 127.0.0.1 "$port" -o json -v "$@" >"$out" 2>"$err" &
    tracer=$!
    # Attaching takes seconds under software emulation: wait for -v's line.
    if ! wait_until 60 attached "$err"; then
        echo "tcpstate --tw-probe $kind did not attach:"; cat "$err"; exit 1
    fi
    # The namespace dies with its last process, and its timewait sockets with it.
    unshare -n sh -c "
        ip link set lo up
        pid=\$(nginx-guest $port)
        for i in 1 2 3; do curl -s -o /dev/null --max-time 10 http://127.0.0.1:$port/; done
        kill \$pid
        while kill -0 \$pid 2>/dev/null; do sleep 0.05; done
    "
    wait_until 30 deaths_seen "$out" 3 || echo "timed out waiting for TIME_WAIT:CLOSE"
    sleep 0.3
    kill -INT "$tracer"
    wait "$tracer" || echo "tcpstate exited with $?"
    echo "@@BEGIN $kind@@"
    cat "$out"
    sed 's/^/stderr: /' "$err"
    echo "@@END $kind@@"
done
