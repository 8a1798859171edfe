/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The event ABI shared by the BPF programs (tcpstate.bpf.c) and user space
 * (src/event.rs decodes `struct event` byte for byte through the generated
 * skeleton types). Keep the two in step: add fields at the end, never reorder.
 */
#ifndef TCPSTATE_H
#define TCPSTATE_H

#define TASK_COMM_LEN 16
#define MAX_PORTS 16

/* Which end of the connection the socket is, by the original's rule.
 * SIDE_UNKNOWN when no server is configured: user space then decides from
 * how the socket began (src/sockets.rs). */
enum side {
	SIDE_UNKNOWN = 0,
	SIDE_SERVER = 1,
	SIDE_CLIENT = 2,
};

/* What produced an event. Everything but SRC_SET_STATE concerns a timewait
 * socket (struct inet_timewait_sock): the kernel has no state tracepoint for
 * those, so each TIME_WAIT probe kind reports what it saw and user space turns
 * the raw stream into coherent FIN_WAIT2 -> TIME_WAIT -> CLOSE transitions. */
enum source {
	SRC_SET_STATE = 0, /* tracepoint inet_sock_set_state */
	SRC_TW_ALLOC = 1,  /* timewait socket created (fexit/kretprobe inet_twsk_alloc) */
	SRC_TW_ARM = 2,    /* tw timer armed or re-armed (timer_start) */
	SRC_TW_CANCEL = 3, /* tw timer removed (timer_cancel): death unless re-armed or expiring */
	SRC_TW_EXPIRE = 4, /* tw timer fired (timer_expire_entry): death */
	SRC_TW_FREE = 5,   /* last reference dropped (fentry/kprobe inet_twsk_put): death */
};

/* event.flags */
#define EV_NESTED (1 << 0) /* caught by the backup program (recursion miss of the main one) */

struct event {
	__u64 ts_ns;         /* bpf_ktime_get_ns() at program entry (CLOCK_MONOTONIC) */
	__u64 skaddr;        /* kernel address of the sock or timewait sock */
	__u32 pid;           /* the acting process (tgid) when the change runs in the
				owner's own system call (connect, listen, close); else 0 */
	__u32 netns;         /* network namespace inode */
	__u8 saddr[16];      /* local address: IPv4 in the first 4 bytes */
	__u8 daddr[16];      /* remote address */
	__u16 sport;         /* local port, host order */
	__u16 dport;         /* remote port, host order */
	__u16 family;        /* AF_INET or AF_INET6 (v4-mapped IPv6 reports AF_INET) */
	__u8 side;           /* enum side */
	__u8 oldstate;
	__u8 newstate;
	__u8 source;         /* enum source */
	__u8 flags;          /* EV_* */
	__u8 tw_substate;    /* tw events: tw_substate (TIME_WAIT or FIN_WAIT2) */
	char comm[TASK_COMM_LEN]; /* that process's comm; meaningless when pid is 0 */
};

/* Indexes of the `counters` array (.bss) user space reads for its summary. */
enum counter {
	CNT_RINGBUF_FULL = 0,    /* bpf_ringbuf_reserve() failed: event dropped */
	CNT_NESTED = 1,          /* state changes the main program missed and the backup took */
	CNT_TW_RINGBUF_FULL = 2, /* a TIME_WAIT probe event dropped (ring full) */
	CNT_MAX = 3,
};

#endif /* TCPSTATE_H */
