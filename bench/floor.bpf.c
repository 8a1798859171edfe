// SPDX-License-Identifier: GPL-2.0
/*
 * The benchmark's floor: the cheapest tracer of inet_sock_set_state that
 * still answers "how many transitions of the bench's sockets happened".
 * It filters on the same port tcpstate filters on and bumps one counter:
 * no ring buffer, no user-space work per event. Whatever tcpstate costs
 * above this row is the price of its ring buffer and decoding.
 *
 * The empty programs below are attached only on request (floor --backup,
 * --timers). They have tcpstate's attachment points and no body, so the
 * rows that use them show what merely having those programs called costs:
 * the least any tracer can pay that catches nested events (a second
 * program on the same tracepoint) and follows TIME_WAIT with tracepoints.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* The bench server's port, network byte order; set by the loader. */
const volatile __u16 port_be = 0;

/* Transitions of sockets whose local or remote port is port_be. */
__u64 transitions = 0;

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(count_transition, const struct sock *sk, int oldstate, int newstate)
{
	/* inet_sport, not skc_num: at the final ->CLOSE the port is already
	 * released and skc_num is 0, while inet_sport (what the tracepoint
	 * itself reports as sport) still holds it. */
	__u16 sport = BPF_CORE_READ((const struct inet_sock *)sk, inet_sport);
	__u16 dport = sk->__sk_common.skc_dport;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (sport != port_be && dport != port_be)
		return 0;
	__sync_fetch_and_add(&transitions, 1);
	return 0;
}

/* An attached program that does nothing: the price of being called there. */
#define EMPTY_PROGRAM(name, tracepoint)		\
	SEC("tp_btf/" tracepoint)			\
	int BPF_PROG(name)				\
	{						\
		return 0;				\
	}

/* Where tcpstate attaches its nested-event backup. */
EMPTY_PROGRAM(empty_backup, "inet_sock_set_state")

/* Where tcpstate's tracepoint-only TIME_WAIT probes attach. */
EMPTY_PROGRAM(empty_timer_start, "timer_start")
EMPTY_PROGRAM(empty_timer_cancel, "timer_cancel")
EMPTY_PROGRAM(empty_timer_expire, "timer_expire_entry")
