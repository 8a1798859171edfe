#!/bin/sh
# Guest payload of tests/kernels.rs. For each run in $RUNS, written
# KIND[:FUNC][+SCENARIO] (FUNC makes the fentry/kprobe kinds watch FUNC for
# frees; SCENARIO defaults to nginx), traces one scenario in a private network
# namespace with `--tw-probe KIND`, then leaves the namespace so that the
# kernel ends its timewait sockets:
#   nginx     three curl -> nginx requests (JSON)
#   parallel  two loops of $PARALLEL connections at once, one per vCPU, to
#             twhelper's two server processes (JSON)
#   dccp      one DCCP connection that keeps its own TIME_WAIT on the traced
#             port (--raw JSON: nothing may show); prints "note: dccp
#             timewaited N", the timewait timers armed meanwhile (tracefs:
#             DCCP's timewait sockets arm the same timer as TCP's; TcpExt's
#             TW count would do on 6.x, but 5.10 counts one only at its end)
#   parked    a client parked in FIN_WAIT2 that the server's FIN turns into
#             TIME_WAIT 300 ms later (--raw JSON)
#   cgroup    (--cgroup $cg/tcpstate) nginx in cgroup $cg/tcpstate-srv, three
#             curl requests from $cg/tcpstate/clients, below the traced one;
#             prints "note: cgroup ID" of the clients' cgroup (JSON)
#   records   (--connections JSON) a connect refused (nothing listens yet),
#             three curl -> nginx requests for a body of $RECORDS_BODY bytes,
#             and a connection that twhelper aborts (SO_LINGER 0); prints
#             "note: curl LOCAL_PORT SIZE_REQUEST SIZE_HEADER SIZE_DOWNLOAD"
#             per request (curl's -w) and "note: abort LOCAL_PORT BYTES"
# Prints each run's output between @@BEGIN <run>@@ and @@END <run>@@, its
# stderr prefixed with "stderr: "; the Rust test asserts on them.
set -eu

port=8080
PARALLEL=${PARALLEL:-40}
RECORDS_BODY=${RECORDS_BODY:-1000}
runs=${RUNS:-"fentry fentry+parallel fentry+dccp fentry+parked
               kprobe kprobe+parallel kprobe+dccp kprobe+parked
               timer timer+dccp timer+parked timer+records timer+cgroup
               auto auto+records auto+cgroup fentry:inet_twsk_put kprobe:inet_twsk_put"}

# The cgroup scenario's cgroups, on a cgroup2 mount of the guest's own.
cg=/sys/fs/cgroup
grep -q "^[^ ]* $cg cgroup2 " /proc/mounts || mount -t cgroup2 none $cg
mkdir -p $cg/tcpstate/clients $cg/tcpstate-srv

for m in dccp dccp_ipv4; do
    if [ -e /lib/modules/$m.ko ]; then insmod /lib/modules/$m.ko; fi
done
# Functions for the scenarios' namespace shells (`. /tmp/netns.sh`).
cat > /tmp/netns.sh <<'SH'
# stop PID: kills PID and waits up to 10 s for it to be gone.
stop() {
    kill "$1"
    n=0
    while kill -0 "$1" 2>/dev/null; do
        n=$((n + 1))
        [ "$n" -lt 100 ] || return 1
        sleep 0.1
    done
}
# curl_nginx PORT BODY N: N curl requests to nginx-guest on PORT returning
# BODY, each noted as "note: curl LOCAL_PORT SIZE_REQUEST SIZE_HEADER
# SIZE_DOWNLOAD"; then nginx stopped.
curl_nginx() {
    pid=$(nginx-guest "$1" "$2")
    for i in $(seq "$3"); do
        curl -s -o /dev/null --max-time 10 \
            -w 'note: curl %{local_port} %{size_request} %{size_header} %{size_download}\n' \
            "http://127.0.0.1:$1/"
    done
    stop "$pid"
}
# in_cgroup DIR COMMAND...: runs COMMAND in cgroup DIR.
in_cgroup() {
    dir=$1; shift
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$dir" "$@"
}
SH

. /usr/local/lib/guest-lib.sh   # wait_until, attached
deaths_seen() { [ "$(grep -c '"old":"TIME_WAIT","new":"CLOSE"' "$1")" -ge "$2" ]; }
records_seen() { [ "$(grep -c '"end":' "$1")" -ge "$2" ]; }

# Each scenario runs in a namespace that dies with its last process.
scenario_nginx() {
    unshare -n sh -c "
        . /tmp/netns.sh
        ip link set lo up
        curl_nginx $port ok 3
    "
    wait_until 30 deaths_seen "$1" 3 || echo "timed out waiting for TIME_WAIT:CLOSE"
}

scenario_parallel() {
    unshare -n sh -c "
        ip link set lo up
        twhelper tcp-serve $port 2 &
        server=\$!
        sleep 0.3
        taskset -c 0 twhelper tcp-clients $port $PARALLEL &
        taskset -c 1 twhelper tcp-clients $port $PARALLEL
        wait \$!
        sleep 0.5
        kill \$server
        wait \$server || true
    "
    wait_until 60 deaths_seen "$1" $((2 * PARALLEL)) || echo "timed out waiting for TIME_WAIT:CLOSE"
}

# tw_timers COMMAND...: runs COMMAND, then prints how many timewait timers
# were armed meanwhile, from a tracefs instance of its own.
tw_timers() {
    i=/sys/kernel/tracing/instances/tw-timers
    mkdir "$i"
    echo 1 > "$i/events/timer/timer_start/enable"
    "$@" >&2
    echo 0 > "$i/events/timer/timer_start/enable"
    grep -c 'function=tw_timer_handler' "$i/trace" || true
    rmdir "$i"
}

dccp_connection() {
    unshare -n sh -c "
        ip link set lo up
        twhelper dccp-serve $port &
        sleep 0.3
        twhelper dccp-client $port
        wait
    "
}

scenario_dccp() {
    echo "note: dccp timewaited $(tw_timers dccp_connection)"
    sleep 1.5
}

# Nine records: the refused client, three curl and three nginx sockets, and
# both sides of the abort.
scenario_records() {
    body=$(printf "%0${RECORDS_BODY}d" 0)
    unshare -n sh -c "
        . /tmp/netns.sh
        ip link set lo up
        curl -s -o /dev/null --max-time 10 http://127.0.0.1:$port/
        curl_nginx $port $body 3
        echo \"note: abort \$(twhelper tcp-abort $port)\"
    "
    wait_until 30 records_seen "$1" 9 || echo "note: timed out waiting for the records"
}

scenario_cgroup() {
    unshare -n sh -c "
        . /tmp/netns.sh
        ip link set lo up
        pid=\$(in_cgroup $cg/tcpstate-srv nginx-guest $port ok)
        for i in 1 2 3; do
            in_cgroup $cg/tcpstate/clients curl -s -o /dev/null --max-time 10 http://127.0.0.1:$port/
        done
        stop \$pid
    "
    wait_until 30 deaths_seen "$1" 3 || echo "timed out waiting for TIME_WAIT:CLOSE"
    echo "note: cgroup $(stat -c %i $cg/tcpstate/clients)"
}

scenario_parked() {
    unshare -n sh -c "
        ip link set lo up
        twhelper tcp-parked $port
    "
    sleep 1.5
}

for run in $runs; do
    kind=${run%%+*}
    scenario=nginx
    case $run in *+*) scenario=${run#*+} ;; esac
    out=/tmp/out.$run
    err=/tmp/err.$run
    set -- --tw-probe "${kind%%:*}"
    case $kind in *:*) set -- "$@" --tw-free-fn "${kind#*:}" ;; esac
    case $scenario in
        dccp|parked) set -- "$@" --raw ;;
        records) set -- "$@" --connections ;;
        cgroup) set -- "$@" --cgroup $cg/tcpstate ;;
    esac
    tcpstate 127.0.0.1 "$port" -o json --skaddr -v "$@" >"$out" 2>"$err" &
    tracer=$!
    # Attaching takes seconds under software emulation: wait for -v's line.
    if ! wait_until 60 attached "$err"; then
        echo "tcpstate --tw-probe $kind did not attach:"; cat "$err"; exit 1
    fi
    note=$(scenario_"$scenario" "$out")
    sleep 0.3
    kill -INT "$tracer"
    wait "$tracer" || echo "tcpstate exited with $?"
    echo "@@BEGIN $run@@"
    cat "$out"
    sed 's/^/stderr: /' "$err"
    [ -n "$note" ] && echo "$note"
    echo "@@END $run@@"
done
