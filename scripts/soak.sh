#!/usr/bin/env bash
# make soak (not in CI): about 10 million transitions through tcpstate.
# Runs the bench load generator ROUNDS times (N connections each, client
# closes first, each round in a fresh network namespace whose exit ends its
# TIME_WAIT sockets) under one tcpstate, and checks that
#   - every transition arrived: tcpstate's count == what the storms caused
#     (+1 TIME_WAIT:CLOSE per TIME_WAIT socket), nothing lost;
#   - memory stays flat: RSS after each round, past the warm-up rounds,
#     stays within 10 % of the RSS after warm-up.
# It also reads tcpstate's own --metrics to know when a round is over.
# Usage: scripts/soak.sh TCPSTATE LOADGEN [ROUNDS] [N]   (as root)
set -euo pipefail

tcpstate=${1:?usage: $0 TCPSTATE LOADGEN [ROUNDS] [N]}
loadgen=${2:?usage: $0 TCPSTATE LOADGEN [ROUNDS] [N]}
rounds=${3:-20}
n=${4:-50000}
warmup=3
port=$(( 30000 + RANDOM % 5000 ))
work=$(mktemp -d)
trap 'kill -INT "$tracer" 2>/dev/null || true; rm -rf "$work"' EXIT

metrics=127.0.0.1:$(( port + 1 ))
"$tcpstate" 127.0.0.1 "$port" -o json -v --metrics "$metrics" > /dev/null 2> "$work/err" &
tracer=$!
for _ in $(seq 100); do ls -l "/proc/$tracer/fd" 2>/dev/null | grep -q bpf_link && break; sleep 0.1; done

expected=0
rss=()
for round in $(seq "$rounds"); do
    out=$("$loadgen" -n "$n" -p "$port" --deadline 300 | tail -1)
    got=$(grep -o '"expected_transitions":[0-9]*' <<<"$out" | cut -d: -f2)
    tw=$(grep -o '"time_wait_created":[0-9]*' <<<"$out" | cut -d: -f2)
    expected=$(( expected + got + tw ))
    # The namespace's TIME_WAIT sockets die as the kernel cleans it up (in
    # the background, seconds for tens of thousands): wait until tcpstate
    # has seen them all go, so that rounds do not overlap.
    for _ in $(seq 600); do
        alive=$(curl -s "http://$metrics/metrics" | awk '/^tcpstate_timewait_sockets / {print $2}')
        [ "${alive:-1}" = 0 ] && break
        sleep 0.1
    done
    rss+=("$(awk '/^VmRSS/ {print $2}' "/proc/$tracer/status")")
    echo "soak: round $round/$rounds: $got transitions + $tw TIME_WAIT:CLOSE; tcpstate RSS ${rss[-1]} kB"
done
kill -INT "$tracer"
wait "$tracer"
tracer=
summary=$(grep '^tcpstate: [0-9]* transitions' "$work/err")
echo "$summary"
received=$(awk '{print $2}' <<<"$summary")
fail=0
if [ "$received" != "$expected" ]; then
    echo "soak: FAIL: received $received transitions, the storms caused $expected"; fail=1
fi
grep -q 'lost 0:' <<<"$summary" || { echo "soak: FAIL: events were lost"; fail=1; }
base=${rss[$((warmup - 1))]}
for i in "${!rss[@]}"; do
    if [ "$i" -ge "$warmup" ] && [ "${rss[$i]}" -gt $(( base * 11 / 10 )) ]; then
        echo "soak: FAIL: RSS grew from $base kB after warm-up to ${rss[$i]} kB in round $((i + 1))"; fail=1
    fi
done
[ "$fail" = 0 ] && echo "soak: OK: $received transitions, none lost, RSS flat at ${rss[-1]} kB (${base} kB after warm-up)"
exit "$fail"
