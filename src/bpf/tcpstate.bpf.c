// SPDX-License-Identifier: GPL-2.0
/*
 * tcpstate: every TCP state transition, labelled server or client, and
 * TIME_WAIT followed to its end.
 *
 * Only what cannot be done later happens here, inline with the TCP stack:
 * read the tuple, decide whether the socket is wanted, take the time, name
 * the process while it is the one changing the state. Owners, sides and
 * time in state are user space's. Reasoning: README, "The C side".
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tcpstate.h"

char LICENSE[] SEC("license") = "GPL";

#define SOCK_STREAM 1                /* a macro in the kernel, so not in vmlinux.h */
#define DEFAULT_RING_BYTES (1 << 20) /* user space sets --ringbuf-kb */
#define OFFSET_TABLE_CPUS 1024       /* NR_CPUS may be 8192: CPUs beyond derive theirs */

/* ---- Configuration: written by user space into .rodata before load, so the
 * verifier sees constants and prunes what they switch off. ---- */
const volatile bool has_server = false;     /* false: every TCP socket */
const volatile __u16 server_family = 0;     /* AF_INET or AF_INET6 */
const volatile __u32 server_ip[4] = {};     /* network order; IPv4 in [0] */
const volatile __u16 server_port = 0;       /* host order */
const volatile __u16 target_family = 0;     /* 0: both families */
const volatile __u32 nr_lports = 0;
const volatile __u16 lports[MAX_PORTS] = {};
const volatile __u32 nr_rports = 0;
const volatile __u16 rports[MAX_PORTS] = {};
const volatile __u64 wakeup_bytes = 0;      /* wake the reader once this much is queued */
const volatile __u64 tw_timer_fn = 0;       /* timer kind: address of tw_timer_handler */
const volatile bool tw_free_on_put = false; /* free probes sit on inet_twsk_put */
const volatile __u32 hz = 0;                /* CONFIG_HZ; 0: not known */
const volatile bool want_counters = false;  /* --connections: CLOSE records carry counters */
const volatile bool cookies = false;        /* tracing may call bpf_get_socket_cookie() (5.12+) */
const volatile __u32 netns_target = 0;      /* --netns: the namespace's inode; 0: every one */
const volatile __u64 cgroup_target = 0;     /* --cgroup: the cgroup v2's id; 0: every cgroup */
const volatile __u32 cgroup_level = 0;      /* its depth below the root cgroup (level 0) */
const volatile __u32 tw_slot_mask = 0;      /* --cgroup with cookies: tw_slots' size - 1 */

/* ---- Maps and globals ---- */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DEFAULT_RING_BYTES);
} events SEC(".maps");

/* --cgroup: the connections of the target cgroup that may be handed to a
 * timewait socket, with their cgroup id (see cgroup.bpf.h). User space sizes
 * the one this kernel uses: tw_slots where tracing gets socket cookies, else
 * tw_cgroup. A connection whose entry is overwritten or pushed out is one
 * whose end is not seen (user space forgets it after 10 minutes, and counts
 * it). */
struct tw_slot {
	__u64 cookie;    /* the socket's cookie; 0: free */
	__u64 cgroup_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tw_slot);
} tw_slots SEC(".maps");

struct tw_key {
	__u32 saddr[4];  /* the namespace and tuple */
	__u32 daddr[4];
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 reserved;  /* 0 */
	__u32 netns;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	/* Per-CPU LRU lists: an update takes no lock shared by every CPU (the
	 * state program adds an entry for each closing connection). Lookups
	 * still find an entry from any CPU. */
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 1);
	__type(key, struct tw_key);
	__type(value, __u64);
} tw_cgroup SEC(".maps");

/* Nested backup: one per-CPU element whose addresses give each CPU's
 * per-CPU offset (its value is never used). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} pcpu_anchor SEC(".maps");

/* enum counter, in .bss: user space reads them through its mapping, with no
 * system call, so also after --user dropped every privilege. */
__u64 counters[CNT_MAX] = {};

/* Nested backup, filled by find_main_prog; 0: not found or not learned. */
__u32 main_prog_id = 0;                    /* written by user space first */
__u64 main_guard_pcpu = 0;                 /* per-CPU address: main's prog->active */
__u64 anchor_pcpu = 0;                     /* per-CPU address: pcpu_anchor's element */
__u64 cpu_offsets[OFFSET_TABLE_CPUS] = {}; /* each CPU's per-CPU area offset */

/* The ABI's types, so that the generated skeleton carries them. */
struct event _event = {};
enum abi_limits _abi_limits = 0;
enum address_family _address_family = 0;
enum side _side = 0;
enum source _source = 0;
enum counter _counter = 0;
enum event_flags _event_flags = 0;
enum seq_flags _seq_flags = 0;
enum reset_cause _reset_cause = 0;
struct event_counters _event_counters = {};

/* ---- Helpers ---- */
#include "tcpstate.bpf.h"
#include "cgroup.bpf.h"
#include "timewait.bpf.h"
#include "nested.bpf.h"

/* ---- The state program ---- */

/*
 * A record of a full TCP socket in `state` that passes the filters, its
 * identity filled in (cookie, address, tuple, side, cgroup); NULL for any
 * other socket, or when the ring is full. bpf_skc_to_tcp_sock() is the
 * protocol check (a helper call) and a typed view of the tcp_sock in one.
 * With --cgroup, a socket that may be handed to a timewait socket next is
 * remembered for it (or forgotten) even when the ring is full.
 */
static __always_inline struct event *full_socket_record(const struct sock *sk, int state, bool with_counters)
{
	const struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
	const struct sock_common *skc;
	const struct cgroup *cgrp;
	struct tuple t = {};
	__u64 cookie = 0, cgroup_id;
	struct event *e;
	__u8 side;

	if (!tp || sk->sk_type != SOCK_STREAM)
		return NULL;
	skc = &tp->inet_conn.icsk_inet.sk.__sk_common;
	read_tuple_typed(skc, tp->inet_conn.icsk_inet.inet_sport, &t);
	if (!is_wanted(&t, &side))
		return NULL;
	cgroup_id = sock_cgroup_id(sk, &cgrp);
	if (!in_target_cgroup(cgrp, cgroup_id)) {
		tw_forget_tuple(&t, state);
		return NULL;
	}
	/* The cookie once generated is a plain load; the helper generates it.
	 * Without the helper no record carries one (see report_tw_record()). */
	if (cookies)
		cookie = skc->skc_cookie.counter ?: bpf_get_socket_cookie((void *)sk);
	if (may_hand_to_tw(state))
		tw_remember(cookie, &t, cgroup_id);
	e = with_counters ? reserve_with_counters(tp) : reserve_record(CNT_RINGBUF_FULL);
	if (!e)
		return NULL;
	e->cookie = cookie;
	e->skaddr = (__u64)sk;
	fill_tuple(e, &t);
	e->side = side;
	e->cgroup_id = cgroup_id;
	return e;
}

static __always_inline int report_state_change(const struct sock *sk, int oldstate, int newstate)
{
	struct event *e = full_socket_record(sk, newstate, want_counters && newstate == TCP_CLOSE);

	if (!e)
		return 0;
	if (in_owner_context(oldstate, newstate)) {
		e->pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(&e->comm, sizeof(e->comm));
	}
	e->oldstate = oldstate;
	e->newstate = newstate;
	e->source = SRC_SET_STATE;
	submit(e);
	return 0;
}

/* Mirrors inet_sk_state_store()/inet_sk_set_state() (net/ipv4/af_inet.c). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	return report_state_change(sk, oldstate, newstate);
}

/* ---- Resets, for --connections: why a connection ended. The state
 * program's CLOSE says that it ended; a reset seen just before (received)
 * or around it (sent) says how. ---- */

/*
 * A full socket's reset; listeners (answering a segment for no connection
 * of theirs), request and timewait sockets are skipped. Its state tells an
 * application's abort from the kernel's own reset: close() with SO_LINGER 0
 * or with unread data, and disconnect, set CLOSE before they send it.
 */
static __always_inline int report_reset(const struct sock *sk, __u8 source, __u32 cause)
{
	struct event *e;
	__u8 state;

	if (!sk)
		return 0;
	state = sk->__sk_common.skc_state;
	if (state == TCP_LISTEN)
		return 0;
	e = full_socket_record(sk, state, false);
	if (!e)
		return 0;
	e->oldstate = state;
	e->newstate = state;
	e->source = source;
	e->reset_cause = cause;
	submit(e);
	return 0;
}

/* Mirrors tcp_send_active_reset() and tcp_v4/v6_send_reset() before 6.10,
 * whose tracepoint gives no reason. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcp_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	return report_reset(sk, SRC_RESET_SENT, RESET_UNTOLD);
}

/* Whether the application asked for the reset: close() with unread data
 * (ABORT_ON_CLOSE), close() in FIN_WAIT2 with TCP_LINGER2 < 0
 * (ABORT_ON_LINGER), a disconnect with data unsent. TCP_STATE (any other
 * disconnect, SO_LINGER 0 among them) and NOT_SPECIFIED say nothing either
 * way: the socket's state then tells (see report_reset()). */
static __always_inline __u32 reset_cause(int reason)
{
	if (!bpf_core_enum_value_exists(enum sk_rst_reason, SK_RST_REASON_TCP_ABORT_ON_CLOSE))
		return RESET_UNTOLD;
	if (reason == bpf_core_enum_value(enum sk_rst_reason, SK_RST_REASON_TCP_ABORT_ON_CLOSE) ||
	    reason == bpf_core_enum_value(enum sk_rst_reason, SK_RST_REASON_TCP_ABORT_ON_LINGER) ||
	    reason == bpf_core_enum_value(enum sk_rst_reason, SK_RST_REASON_TCP_DISCONNECT_WITH_DATA))
		return RESET_APP_ABORT;
	if (reason == bpf_core_enum_value(enum sk_rst_reason, SK_RST_REASON_NOT_SPECIFIED) ||
	    reason == bpf_core_enum_value(enum sk_rst_reason, SK_RST_REASON_TCP_STATE))
		return RESET_UNTOLD;
	return RESET_KERNEL;
}

/* The same from 6.10, with the kernel's reason. User space loads one of the
 * two, by the tracepoint's fields in tracefs. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcp_send_reset_reason, const struct sock *sk, const struct sk_buff *skb, int reason)
{
	return report_reset(sk, SRC_RESET_SENT, reset_cause(reason));
}

/* Mirrors tcp_reset(): a reset received, just before sk_err and CLOSE. */
SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tcp_receive_reset, const struct sock *sk)
{
	return report_reset(sk, SRC_RESET_RECEIVED, RESET_UNTOLD);
}

/* ---- TIME_WAIT programs (timewait.bpf.h). User space loads one kind:
 * fentry, kprobe or timer (whose tracepoints' arguments past the timer
 * differ between kernels: only the first is used). ---- */

/* Mirrors inet_twsk_hashdance_schedule() (6.10+) or inet_twsk_hashdance(). */
SEC("fentry")
int BPF_PROG(tw_birth_fentry, struct inet_timewait_sock *tw, struct sock *sk)
{
	return report_tw_birth(tw, sk);
}

/* Mirrors __inet_twsk_schedule(). */
SEC("fentry/__inet_twsk_schedule")
int BPF_PROG(tw_rearm_fentry, struct inet_timewait_sock *tw, int timeo, __u64 rearm)
{
	return report_tw_rearm(tw, (__u8)rearm);
}

/* Mirrors inet_twsk_free(), or inet_twsk_put() where that is not a symbol. */
SEC("fentry")
int BPF_PROG(tw_free_fentry, struct inet_timewait_sock *tw)
{
	return report_tw_free(tw);
}

/* Mirrors inet_twsk_hashdance_schedule() (6.10+) or inet_twsk_hashdance(). */
SEC("kprobe")
int BPF_KPROBE(tw_birth_kprobe, struct inet_timewait_sock *tw, struct sock *sk)
{
	return report_tw_birth(tw, sk);
}

/* Mirrors __inet_twsk_schedule(). */
SEC("kprobe")
int BPF_KPROBE(tw_rearm_kprobe, struct inet_timewait_sock *tw, int timeo, __u64 rearm)
{
	return report_tw_rearm(tw, (__u8)rearm);
}

/* Mirrors inet_twsk_free(), or inet_twsk_put() where that is not a symbol. */
SEC("kprobe")
int BPF_KPROBE(tw_free_kprobe, struct inet_timewait_sock *tw)
{
	return report_tw_free(tw);
}

/* Mirrors enqueue_timer() (kernel/time/timer.c): a timer armed or re-armed. */
SEC("tp_btf/timer_start")
int BPF_PROG(tw_timer_start, struct timer_list *timer)
{
	return report_tw_timer(timer, SRC_TW_ARM);
}

/* Mirrors detach_timer(): a timer removed (re-arm, expiry, or early death). */
SEC("tp_btf/timer_cancel")
int BPF_PROG(tw_timer_cancel, struct timer_list *timer)
{
	return report_tw_timer(timer, SRC_TW_CANCEL);
}

/* Mirrors call_timer_fn(): a timer firing, for a timewait socket its death. */
SEC("tp_btf/timer_expire_entry")
int BPF_PROG(tw_timer_expire, struct timer_list *timer)
{
	return report_tw_timer(timer, SRC_TW_EXPIRE);
}

/* ---- The nested-event backup (nested.bpf.h). find_main_prog runs once, then
 * once on each CPU: it finds the main program's prog->active and learns each
 * CPU's per-CPU offset. ---- */

/* Mirrors inet_sk_state_store()/inet_sk_set_state() when the main run was skipped. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state_nested, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	if (!main_prog_running())
		return 0;
	count(CNT_RECOVERED);
	return report_state_change(sk, oldstate, newstate);
}

/* Mirrors bpf_prog_seq_show() (kernel/bpf/prog_iter.c), run by user space. */
SEC("iter/bpf_prog")
int find_main_prog(struct bpf_iter__bpf_prog *ctx)
{
	struct bpf_prog *prog = ctx->prog;
	__u64 pptrs = pointer_value(&pcpu_anchor) + bpf_core_field_offset(struct bpf_array, pptrs);
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 offset;

	if (!anchor_pcpu)
		bpf_probe_read_kernel(&anchor_pcpu, sizeof(anchor_pcpu), (void *)pptrs);
	if (cpu < OFFSET_TABLE_CPUS && derive_cpu_offset(&offset))
		*cpu_offset_slot(cpu) = offset;
	if (!prog || !kernel_has_guard() || BPF_CORE_READ(prog, aux, id) != main_prog_id)
		return 0;
	barrier_var(prog); /* keeps the guarded read behind its check */
	main_guard_pcpu = (__u64)BPF_CORE_READ((struct bpf_prog___guard *)prog, active);
	return 0;
}
