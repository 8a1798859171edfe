/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The ABI shared by the BPF programs (tcpstate.bpf.c, which includes this
 * after vmlinux.h) and user space: the ring record, and every constant both
 * sides use. User space reads all of it through the generated skeleton types
 * (src/trace/abi.rs), so a change here changes both sides or fails the build.
 * Add record fields at the end.
 */
#ifndef TCPSTATE_H
#define TCPSTATE_H

/* Sizes. An enum rather than #defines so that the skeleton carries them.
 * (TASK_COMM_LEN comes from the kernel's types, vmlinux.h.) */
enum abi_limits {
	MAX_PORTS = 16, /* -L/-D ports per filter */
};

/* Address families (macros in the kernel, so not in vmlinux.h). */
enum address_family {
	AF_INET = 2,
	AF_INET6 = 10,
};

/* Which end of the connection the socket is, by the original's rule.
 * SIDE_UNKNOWN when no server is configured: user space then decides. */
enum side {
	SIDE_UNKNOWN = 0,
	SIDE_SERVER = 1,
	SIDE_CLIENT = 2,
};

/* What produced a record. Everything but SRC_SET_STATE concerns a timewait
 * socket (struct inet_timewait_sock): the kernel has no state tracepoint for
 * those, so each TIME_WAIT probe kind reports what it saw and user space
 * turns the raw stream into coherent FIN_WAIT2 -> TIME_WAIT -> CLOSE. */
enum source {
	SRC_SET_STATE = 0, /* tracepoint inet_sock_set_state */
	SRC_TW_ALLOC = 1,  /* timewait socket created and handed the connection */
	SRC_TW_ARM = 2,    /* its timer armed or re-armed (substate may change) */
	SRC_TW_CANCEL = 3, /* its timer removed: a death unless re-armed or expiring */
	SRC_TW_EXPIRE = 4, /* its timer fired: death */
	SRC_TW_FREE = 5,   /* freed: death */
	SRC_RESET_SENT = 6,     /* --connections: a full socket sent a reset */
	SRC_RESET_RECEIVED = 7, /* --connections: a full socket received one */
};

/* Bits of struct event's flags. */
enum event_flags {
	EV_COUNTERS = 1,    /* struct tcp_counters follows the record */
	EV_NETNS_DYING = 2, /* timewait deaths: the socket's network namespace
			       is being dismantled (its last reference gone) */
};

struct event {
	__u64 ts_ns;       /* bpf_ktime_get_ns() (CLOCK_MONOTONIC), taken once the
			      record has its ring slot */
	__u64 cookie;      /* the socket's cookie, tcpstate's connection id (a
			      timewait socket carries its full socket's); 0: none */
	__u64 skaddr;      /* kernel address of the sock or timewait sock */
	__u64 tw_armed_ns; /* timewait records in TIME_WAIT: when the timer was
			      last armed for TCP_TIMEWAIT_LEN (a timer kind
			      cancel that is part of a re-arm: the previous
			      arming); 0: not known */
	__u32 pid;         /* the acting process (tgid) when the change runs in
			      the owner's own system call; else 0 */
	__u32 netns;       /* network namespace inode; 0: not known */
	__u8 saddr[16];    /* local address: IPv4 in the first 4 bytes */
	__u8 daddr[16];    /* remote address */
	__u16 sport;       /* local port, host order */
	__u16 dport;       /* remote port, host order */
	__u16 family;      /* AF_INET or AF_INET6 (v4-mapped IPv6 reports AF_INET) */
	__u8 side;         /* enum side */
	__u8 oldstate;
	__u8 newstate;
	__u8 source;       /* enum source */
	__u8 tw_substate;  /* timewait records: TIME_WAIT or FIN_WAIT2 */
	__u8 flags;        /* enum event_flags */
	char comm[TASK_COMM_LEN]; /* that process's comm; all 0 when pid is 0 */
	__u32 reset_cause; /* reset records: enum reset_cause; else 0 */
	__u64 cgroup_id;   /* full sockets: the socket's own cgroup v2 id
			      (sk->sk_cgrp_data, the cgroup's kernfs id, which
			      is its directory's inode number); timewait
			      records (no cgroup of their own): the full
			      socket's with --cgroup; 0: not known. At offset
			      104: no padding */
};

/* What a reset sent says of who wanted it, from the kernel's reason (6.10+,
 * enum sk_rst_reason, whose numbers are the kernel's to change: the kernel
 * side translates them with CO-RE). */
enum reset_cause {
	RESET_UNTOLD = 0,    /* no reason, or one that says nothing either way */
	RESET_APP_ABORT = 1, /* the application's close() or disconnect */
	RESET_KERNEL = 2,    /* the kernel's own decision */
};

/*
 * A full socket's counters (struct tcp_sock) at its last moment as a full
 * socket: its state change to CLOSE, which is also its hand-off to a
 * timewait socket. With --connections those records are a struct
 * event_counters, flagged EV_COUNTERS.
 */
struct tcp_counters {
	__u64 bytes_sent;     /* payload sent, retransmissions included */
	__u64 bytes_acked;    /* payload the peer acknowledged */
	__u64 bytes_received; /* payload received in order */
	__u64 bytes_retrans;  /* payload retransmitted */
	__u32 segs_in;        /* segments, SYN, FIN and pure ACKs included */
	__u32 segs_out;
	__u32 total_retrans;  /* segments retransmitted */
	__u32 srtt_us;        /* smoothed RTT (srtt_us >> 3); 0: no sample */
	__u32 min_rtt_us;     /* windowed minimum RTT; ~0: no sample */
	__u32 sk_err;         /* the error that ended it (an errno); 0: none */
	__u32 seq_flags;      /* enum seq_flags: what of SYN and FIN the byte
				 counts include (they count sequence space) */
	__u32 reserved;       /* 0 */
};

/* The kernel's byte counts advance with the sequence numbers, and a SYN and
 * a FIN take one each: bytes_received counts a FIN received, bytes_acked the
 * peer's ack of our SYN (active open) and of our FIN. */
enum seq_flags {
	SEQ_FIN_RECEIVED = 1, /* a FIN was received (SOCK_DONE) */
	SEQ_ALL_ACKED = 2,    /* everything sent, a FIN included, is acked */
};

struct event_counters {
	struct event event;
	struct tcp_counters counters;
};

/* Indexes of the `counters` array (.bss) user space reads for its summary. */
enum counter {
	CNT_RINGBUF_FULL = 0,    /* a state change dropped: ring buffer full */
	CNT_RECOVERED = 1,       /* state changes the kernel skipped the main program
				    for that the backup program reported */
	CNT_TW_RINGBUF_FULL = 2, /* a TIME_WAIT probe record dropped: ring full */
	CNT_MAX = 3,
};

#endif /* TCPSTATE_H */
