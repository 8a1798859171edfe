#!/usr/bin/env bash
# make demo: trace one curl -> nginx request and draw it as timeline.svg.
# The connection runs in a private network namespace that is deleted right
# after the request, so TIME_WAIT ends early instead of after 60 s.
# Usage: scripts/demo.sh TCPSTATE_BINARY OUTPUT.svg   (as root)
set -euo pipefail

bin=${1:?usage: $0 TCPSTATE_BINARY OUTPUT.svg}
out=${2:?usage: $0 TCPSTATE_BINARY OUTPUT.svg}
port=8089
ns=tcpstate-demo-$$
work=$(mktemp -d)
tracer=

cleanup() {
    [ -n "$tracer" ] && kill -INT "$tracer" 2>/dev/null || true
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# wait_until SECONDS COMMAND...
wait_until() {
    local limit=$(( $1 * 20 )) n=0; shift
    until "$@"; do
        n=$((n + 1)); [ "$n" -lt "$limit" ] || return 1; sleep 0.05
    done
}
attached() { ls -l "/proc/$tracer/fd" 2>/dev/null | grep -q bpf_link; }
listening() { ip netns exec "$ns" grep -q ":$(printf '%04X' "$port") 00000000:0000 0A" /proc/net/tcp; }
ended() { grep -q '"old":"TIME_WAIT","new":"CLOSE"' "$work/trace.json"; }

cat > "$work/nginx.conf" <<CONF
daemon off;
pid $work/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $work/body; proxy_temp_path $work/proxy; fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
    server { listen 127.0.0.1:$port; location / { return 200 "hello from nginx\n"; } }
}
CONF

ip netns add "$ns"
ip -n "$ns" link set lo up
"$bin" 127.0.0.1 "$port" -o json -q --plot "$out" > "$work/trace.json" &
tracer=$!
wait_until 20 attached || { echo "demo: tcpstate did not attach" >&2; exit 1; }
ip netns exec "$ns" nginx -c "$work/nginx.conf" -p "$work" -e stderr &
wait_until 10 listening || { echo "demo: nginx did not start" >&2; exit 1; }
ip netns exec "$ns" curl -s "http://127.0.0.1:$port/"
sleep 0.2
# End the namespace: nginx goes, and the kernel kills the timewait socket.
# (A worker may exit on its own between listing and kill: not an error.)
ip netns pids "$ns" | xargs -r kill 2>/dev/null || true
wait_until 10 sh -c "[ -z \"\$(ip netns pids $ns)\" ]"
ip netns del "$ns"
wait_until 10 ended || echo "demo: TIME_WAIT did not end in time" >&2
sleep 0.1
kill -INT "$tracer"
wait "$tracer"
tracer=
echo "demo: $(wc -l < "$work/trace.json") transitions traced, picture in $out"
