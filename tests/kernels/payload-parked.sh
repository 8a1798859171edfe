#!/bin/sh
# Guest payload of tests/kernels_parked.rs: for each TIME_WAIT probe kind in
# $KINDS, trace one parked-fin-wait2 connection per way of parking the
# client ($VARIANTS, the helper's -m), each in a network namespace of its own
# (`unshare -n`) that dies with the helper, and its TIME_WAIT socket with it.
# Prints each kind's JSON output between @@BEGIN <kind>@@ and @@END <kind>@@,
# its stderr prefixed with "stderr: " and the helper's report of each variant
# with "helper <variant>: " (its exit code last, as "exit=N").
#   tests/kernels/run.sh 6.12 tests/kernels/payload-parked.sh target/release/tcpstate /path/to/parked-fin-wait2
set -eu

port=8080
kinds=${KINDS:-fentry kprobe timer}
variants=${VARIANTS:-unacked late}
bucket=${BUCKET:-same}   # the helper's -b: same (issue 12), or other for comparison

. /usr/local/lib/guest-lib.sh   # wait_until, attached
# The client's end, whatever it says (FIN_WAIT2 -> CLOSE today).
ends_seen() { [ "$(grep '"side":"client"' "$1" | grep -c '"new":"CLOSE"')" -ge "$2" ]; }

for kind in $kinds; do
    out=/tmp/out.$kind
    err=/tmp/err.$kind
    tcpstate 127.0.0.1 "$port" -o json --skaddr -v --tw-probe "$kind" >"$out" 2>"$err" &
    tracer=$!
    # Attaching takes seconds under software emulation: wait for -v's line.
    if ! wait_until 60 attached "$err"; then
        echo "tcpstate --tw-probe $kind did not attach:"; cat "$err"; exit 1
    fi
    n=0
    for v in $variants; do
        rc=0
        unshare -n sh -c "ip link set lo up && exec parked-fin-wait2 -t -m $v -b $bucket $port" >"/tmp/helper.$kind.$v" 2>&1 || rc=$?
        echo "exit=$rc" >>"/tmp/helper.$kind.$v"
        n=$((n + 1))
        wait_until 20 ends_seen "$out" "$n" || echo "timed out waiting for the client's end ($kind, $v)"
    done
    sleep 0.3
    kill -INT "$tracer"
    wait "$tracer" || echo "tcpstate exited with $?"
    echo "@@BEGIN $kind@@"
    cat "$out"
    sed 's/^/stderr: /' "$err"
    for v in $variants; do sed "s/^/helper $v: /" "/tmp/helper.$kind.$v"; done
    echo "@@END $kind@@"
done
