#!/bin/sh
# nginx-guest [PORT [BODY]]   (installed in the guest as /usr/local/bin/nginx-guest)
#
# Writes an nginx config for the QEMU guest under /tmp/nginx-PORT/, starts
# nginx in the background listening on 127.0.0.1:PORT (default 8080) and
# returning BODY (default "ok") for every request, waits until it listens
# (without opening a connection) and prints its pid on stdout.
# Stop it with `kill PID`.
# Runs under busybox sh: POSIX only. The guest runs as root.
set -eu

port=${1:-8080}
body=${2:-ok}
dir=/tmp/nginx-$port
mkdir -p "$dir"

cat > "$dir/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
user root;
pid $dir/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type text/plain;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$port;
        location / { return 200 "$body\n"; }
    }
}
EOF

nginx -e stderr -p /tmp -c "$dir/nginx.conf" </dev/null >"$dir/out.log" 2>&1 &
pid=$!

# Wait up to ~10 s (TCG is slow) for the listener. Looks at /proc/net/tcp
# (state 0A = LISTEN) rather than connecting, so that no probe connection
# shows up in a trace.
hexport=$(printf '%04X' "$port")
listening() {
    grep -q "^ *[0-9]*: 0100007F:$hexport 00000000:0000 0A " /proc/net/tcp
}
i=0
while ! listening; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "nginx-guest: nginx exited:" >&2
        cat "$dir/out.log" >&2
        exit 1
    fi
    i=$((i + 1))
    if [ "$i" -ge 100 ]; then
        echo "nginx-guest: nginx not answering on 127.0.0.1:$port" >&2
        cat "$dir/out.log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "$pid"
