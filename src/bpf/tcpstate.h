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
	__u8 reserved;     /* 0 */
	char comm[TASK_COMM_LEN]; /* that process's comm; all 0 when pid is 0 */
	__u32 reserved2;   /* 0: makes the tail padding a field */
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
