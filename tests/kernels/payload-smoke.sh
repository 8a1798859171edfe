#!/bin/sh
# Smoke payload for run.sh: proves the guest can serve nginx to curl over
# loopback, run dynamically linked binaries, and shows what the kernel offers
# to BPF tracing. Exits non-zero on the first real failure.
#   tests/kernels/run.sh 6.12 tests/kernels/payload-smoke.sh [target/release/tcpstate] [/tmp/hello]
# Any tcpstate given is run with --help; any hello is run as is.
set -eu

fail() { echo "SMOKE FAIL: $*"; exit 1; }

echo "== kernel"
cat /proc/version

echo "== nginx + curl"
pid=$(nginx-guest 8080 hello-from-guest)
for i in 1 2 3; do
    body=$(curl -s --max-time 10 http://127.0.0.1:8080/) || fail "curl $i failed"
    echo "curl $i: $body"
    [ "$body" = hello-from-guest ] || fail "unexpected body from nginx: $body"
done
kill "$pid"
echo "nginx answered curl 3 times"

echo "== tracing"
ev=/sys/kernel/tracing/available_events
echo "timer_start events: $(grep -c ':timer_start$' "$ev")"
echo "sock:inet_sock_set_state: $(grep -c '^sock:inet_sock_set_state$' "$ev")"
[ -e /sys/kernel/btf/vmlinux ] && echo "BTF: yes ($(wc -c < /sys/kernel/btf/vmlinux) bytes)" || echo "BTF: no"
if [ -e /sys/kernel/tracing/kprobe_events ]; then echo "kprobes: yes"; else echo "kprobes: no"; fi
ff=/sys/kernel/tracing/available_filter_functions
for fn in inet_twsk_alloc inet_twsk_put tcp_set_state tw_timer_handler; do
    echo "ftrace-able $fn: $(grep -c "^$fn\( \|$\)" "$ff" || true)"
done
echo "tw_timer_handler in kallsyms: $(grep -c ' tw_timer_handler$' /proc/kallsyms || true)"
echo "tcp_tw_reuse=$(cat /proc/sys/net/ipv4/tcp_tw_reuse)"

echo "== veth module"
if [ -e /lib/modules/veth.ko ]; then
    if insmod /lib/modules/veth.ko && ip link add vt0 type veth peer name vt1; then
        echo "veth: works"
        ip link del vt0
    else
        echo "veth: FAILED (not fatal)"
    fi
fi

echo "== binaries"
if command -v hello >/dev/null; then
    hello || fail "hello failed"
fi
if command -v tcpstate >/dev/null; then
    tcpstate --help || fail "tcpstate --help failed"
fi
echo "SMOKE OK"
