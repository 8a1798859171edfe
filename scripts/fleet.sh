#!/usr/bin/env bash
# make fleet (not in CI): one host of a fleet, end to end, with numbers.
# tcpstate runs as deploy/clickhouse/systemd's drop-in runs it (its own JSON
# keys into a spool, a file handed over every ROTATE seconds, metrics on),
# a loader inserts the handed-over files into ClickHouse as
# tcpstate-load.timer does, and Prometheus scrapes the metrics with
# deploy/prometheus's rules, while the bench load generator makes N
# connections (client closes first, in a network namespace whose exit ends
# their TIME_WAIT). Then it checks that ClickHouse holds every transition
# caused and Prometheus counted them all, and prints what it cost.
# Usage: scripts/fleet.sh TCPSTATE LOADGEN [N] [ROTATE]   (as root)
set -euo pipefail

tcpstate=${1:?usage: $0 TCPSTATE LOADGEN [N] [ROTATE]}
loadgen=${2:?usage: $0 TCPSTATE LOADGEN [N] [ROTATE]}
n=${3:-20000}
rotate=${4:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
port=$(( 30000 + RANDOM % 5000 ))
ch_port=$(( port + 1 )) metrics=127.0.0.1:$(( port + 2 )) prom=127.0.0.1:$(( port + 3 ))
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# ClickHouse, private to this run, with the shipped schema.
mkdir -p "$work/ch/data" "$work/spool"
cat > "$work/ch/config.xml" <<EOF
<yandex><logger><level>warning</level><log>$work/ch/server.log</log><errorlog>$work/ch/error.log</errorlog></logger>
<listen_host>127.0.0.1</listen_host><tcp_port>$ch_port</tcp_port><http_port>$(( port + 4 ))</http_port>
<path>$work/ch/data/</path><tmp_path>$work/ch/tmp/</tmp_path><users_config>$work/ch/users.xml</users_config>
<default_profile>default</default_profile><default_database>default</default_database>
<mark_cache_size>5368709120</mark_cache_size></yandex>
EOF
cat > "$work/ch/users.xml" <<EOF
<yandex><profiles><default/></profiles><quotas><default/></quotas>
<users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users></yandex>
EOF
/usr/sbin/clickhouse-server --config-file="$work/ch/config.xml" > /dev/null 2>&1 &
pids+=($!)
ch() { clickhouse-client --port "$ch_port" "$@"; }
for _ in $(seq 120); do ch --query 'SELECT 1' > /dev/null 2>&1 && break; sleep 0.5; done
ch --multiquery < "$here/deploy/clickhouse/schema.sql"

# tcpstate, as the drop-in runs it (the loader's files are its).
"$tcpstate" 127.0.0.1 "$port" -o json --hostname=fleet-demo -w "$work/spool/events.json" --rotate-secs "$rotate" \
    --metrics "$metrics" 2> "$work/tcpstate.err" &
tracer=$!
pids+=("$tracer")
for _ in $(seq 100); do ls -l "/proc/$tracer/fd" 2>/dev/null | grep -q bpf_link && break; sleep 0.1; done

# Prometheus, scraping it every second, with the shipped rules.
cat > "$work/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [$here/deploy/prometheus/tcpstate.rules.yml]
scrape_configs: [{job_name: tcpstate, static_configs: [{targets: ['$metrics']}]}]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" --web.listen-address="$prom" \
    > /dev/null 2>&1 &
pids+=($!)
promql() { curl -s --get "http://$prom/api/v1/query" --data-urlencode "query=$1" | grep -o '"value":\[[^]]*\]' | cut -d'"' -f4; }
for _ in $(seq 60); do [ -n "$(promql up)" ] && break; sleep 0.5; done

# The loader, as tcpstate-load.timer runs it (every ROTATE seconds here).
( while :; do "$here/deploy/clickhouse/load.sh" "$work/spool/events.json" tcpstate.transitions --port "$ch_port"; sleep "$rotate"; done ) &
pids+=($!)
loader=$!

start=$(date +%s.%N)
out=$("$loadgen" -n "$n" -p "$port" --deadline 300 | tail -1)
caused=$(( $(grep -o '"expected_transitions":[0-9]*' <<<"$out" | cut -d: -f2) \
         + $(grep -o '"time_wait_created":[0-9]*' <<<"$out" | cut -d: -f2) ))
# The namespace's TIME_WAIT sockets end as the kernel cleans it up.
for _ in $(seq 600); do
    alive=$(curl -s "http://$metrics/metrics" | awk '/^tcpstate_timewait_sockets / {print $2}')
    [ "${alive:-1}" = 0 ] && break
    sleep 0.1
done
sleep 2 # a last scrape
counted=$(promql 'sum(tcpstate_transitions_total)')
cpu_ticks=$(awk '{print $14 + $15}' "/proc/$tracer/stat")
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$tracer/status")
kill -INT "$tracer"
wait "$tracer" || true
kill "$loader" 2>/dev/null || true
"$here/deploy/clickhouse/load.sh" "$work/spool/events.json" tcpstate.transitions --port "$ch_port"
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}')

loaded=$(ch --query 'SELECT count() FROM tcpstate.transitions')
bytes=$(ch --query "SELECT sum(data_compressed_bytes), sum(data_uncompressed_bytes) FROM system.columns WHERE database = 'tcpstate' AND table = 'transitions'")
hz=$(getconf CLK_TCK)
printf '%s\n' "connections:            $n (loadgen, client closes first)" \
    "transitions caused:     $caused" \
    "in ClickHouse:          $loaded" \
    "counted by Prometheus:  ${counted%%.*} (sum of tcpstate_transitions_total)" \
    "tcpstate:               $(tail -1 "$work/tcpstate.err")" \
    "tcpstate CPU:           $(awk -v t="$cpu_ticks" -v hz="$hz" -v c="$caused" 'BEGIN {printf "%.2f s for the run, %.3f s per 100k transitions", t / hz, t / hz * 100000 / c}'), peak RSS $(( rss_kib / 1024 )) MiB" \
    "ClickHouse bytes:       $(awk '{printf "%.1f compressed, %.1f uncompressed per transition", $1 / '"$loaded"', $2 / '"$loaded"'}' <<<"$bytes")" \
    "wall time:              $elapsed s"
[ "$loaded" = "$caused" ] && [ "${counted%%.*}" = "$caused" ] || { echo "MISMATCH" >&2; exit 1; }
