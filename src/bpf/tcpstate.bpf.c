// SPDX-License-Identifier: GPL-2.0
/*
 * tcpstate: every TCP state transition, labelled server or client.
 *
 * The kernel side only does what cannot be done later: it reads the tuple
 * and decides which sockets are wanted (so unwanted ones cost one tuple
 * read), takes the timestamp, and names the process when the change happens
 * in that process's own system call (the only moment it is knowable). It
 * keeps no per-socket state: remembering owners, sides and time spent in a
 * state is user space's job (src/sockets.rs), as are naming, formatting and
 * the TIME_WAIT lifecycle. Every instruction here runs inline with the TCP
 * stack, on every state change of every socket.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tcpstate.h"

/* Not in vmlinux.h: macros, and BTF only carries types. */
#define SOCK_STREAM 1

char LICENSE[] SEC("license") = "GPL";

/*
 * Configuration. user space writes these into .rodata before load, so the
 * verifier sees them as constants and prunes the branches they switch off.
 */
const volatile bool has_server = false;   /* false: report every TCP socket */
const volatile __u16 server_family = 0;   /* AF_INET or AF_INET6 */
const volatile __u32 server_ip[4] = {};   /* network order; IPv4 in [0] */
const volatile __u16 server_port = 0;     /* host order */
const volatile __u16 target_family = 0;   /* 0: both families */
const volatile __u32 nr_lports = 0;
const volatile __u16 lports[MAX_PORTS] = {};
const volatile __u32 nr_rports = 0;
const volatile __u16 rports[MAX_PORTS] = {};
const volatile __u64 wakeup_bytes = 0;    /* wake the reader once this much is queued */

/* Resized by user space (--ringbuf-kb) before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
} events SEC(".maps");

/* enum counter. In .bss, which user space reads through its mmap: no
 * system call, so it still works after --user dropped every privilege. */
__u64 counters[CNT_MAX] = {};

/* Make the ABI's types appear in the generated skeleton (src/trace/abi.rs). */
struct event _event = {};
enum abi_limits _abi_limits = 0;
enum address_family _address_family = 0;
enum side _side = 0;
enum source _source = 0;
enum counter _counter = 0;

/* A socket's addresses and ports, with v4-mapped IPv6 folded into IPv4. */
struct tuple {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u32 netns;
};

static __always_inline void count(enum counter which)
{
	if (which < CNT_MAX)
		__sync_fetch_and_add(&counters[which], 1);
}

static __always_inline bool is_v4_mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

/* A dual-stack socket talking IPv4 is an IPv4 connection to its users. */
static __always_inline void fold_v4_mapped(struct tuple *t)
{
	if (t->family != AF_INET6 || !(is_v4_mapped(t->saddr) || is_v4_mapped(t->daddr)))
		return;
	t->family = AF_INET;
	t->saddr[0] = t->saddr[3];
	t->daddr[0] = t->daddr[3];
	t->saddr[1] = t->saddr[2] = t->saddr[3] = 0;
	t->daddr[1] = t->daddr[2] = t->daddr[3] = 0;
}

/*
 * The tuple of a socket the verifier knows the type of (a tracepoint's
 * argument, or a bpf_core_cast() view): plain loads, which the JIT emits as
 * single faulting loads. The state program runs this on every state change,
 * so it avoids the bpf_probe_read_kernel() call per field that read_tuple()
 * pays. The local port is passed in because its reliable home differs: a
 * full socket's skc_num is already 0 at its final CLOSE (inet_put_port
 * ran), so callers pass inet_sport, as the original tool did.
 */
static __always_inline void read_tuple_typed(const struct sock_common *skc, __be16 sport,
					     struct tuple *t)
{
	t->family = skc->skc_family;
	t->sport = bpf_ntohs(sport);
	t->dport = bpf_ntohs(skc->skc_dport);
	t->netns = skc->skc_net.net->ns.inum;
	if (t->family == AF_INET) {
		t->saddr[0] = skc->skc_rcv_saddr;
		t->daddr[0] = skc->skc_daddr;
		return;
	}
	for (int i = 0; i < 4; i++) {
		t->saddr[i] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[i];
		t->daddr[i] = skc->skc_v6_daddr.in6_u.u6_addr32[i];
	}
	fold_v4_mapped(t);
}

/*
 * The same for raw addresses (kprobe arguments, a timer's container) where
 * no typed view is available: one probe read per field.
 */
static __always_inline void read_tuple(const struct sock_common *skc, __be16 sport,
				       struct tuple *t)
{
	t->family = BPF_CORE_READ(skc, skc_family);
	t->sport = bpf_ntohs(sport);
	t->dport = bpf_ntohs(BPF_CORE_READ(skc, skc_dport));
	t->netns = BPF_CORE_READ(skc, skc_net.net, ns.inum);
	if (t->family == AF_INET) {
		t->saddr[0] = BPF_CORE_READ(skc, skc_rcv_saddr);
		t->daddr[0] = BPF_CORE_READ(skc, skc_daddr);
		return;
	}
	BPF_CORE_READ_INTO(&t->saddr, skc, skc_v6_rcv_saddr.in6_u.u6_addr32);
	BPF_CORE_READ_INTO(&t->daddr, skc, skc_v6_daddr.in6_u.u6_addr32);
	fold_v4_mapped(t);
}

static __always_inline bool is_server_ip(const __u32 *a, __u16 family)
{
	if (family != server_family)
		return false;
	if (family == AF_INET)
		return a[0] == server_ip[0];
	return a[0] == server_ip[0] && a[1] == server_ip[1] &&
	       a[2] == server_ip[2] && a[3] == server_ip[3];
}

static __always_inline bool is_any(const __u32 *a)
{
	return (a[0] | a[1] | a[2] | a[3]) == 0;
}

/* The original tool's rule: bound to the server's address (or the wildcard)
 * and port is the server; talking to the server's address and port is the
 * client; anything else is not ours. */
static __always_inline __u8 side_by_server(const struct tuple *t)
{
	if (t->sport == server_port && (is_any(t->saddr) || is_server_ip(t->saddr, t->family)))
		return SIDE_SERVER;
	if (t->dport == server_port && is_server_ip(t->daddr, t->family))
		return SIDE_CLIENT;
	return SIDE_UNKNOWN;
}

static __always_inline bool port_listed(__u16 port, const volatile __u16 *ports, __u32 nr)
{
	for (int i = 0; i < MAX_PORTS; i++) {
		if (i >= nr)
			break;
		if (ports[i] == port)
			return true;
	}
	return false;
}

/* Family and port filters (-4/-6, -L, -D): cheap, so they run first. */
static __always_inline bool tuple_wanted(const struct tuple *t)
{
	if (target_family && t->family != target_family)
		return false;
	if (nr_lports && !port_listed(t->sport, lports, nr_lports))
		return false;
	if (nr_rports && !port_listed(t->dport, rports, nr_rports))
		return false;
	return true;
}

/*
 * Decides whether the socket is wanted: the family and port filters, then,
 * with a server configured, the original's side rule. *side is SIDE_UNKNOWN
 * without a server (decided later from the socket's history).
 */
static __always_inline bool classify(const struct tuple *t, __u8 *side)
{
	if (!tuple_wanted(t))
		return false;
	*side = has_server ? side_by_server(t) : SIDE_UNKNOWN;
	return !has_server || *side != SIDE_UNKNOWN;
}

/*
 * Transitions that only happen in the owning process's own system call, the
 * one moment the current task is the socket's owner:
 * connect() (CLOSE->SYN_SENT), listen() (CLOSE->LISTEN), close()/shutdown()
 * (->FIN_WAIT1, CLOSE_WAIT->LAST_ACK). Everything else may run in softirq on
 * top of an unrelated task (on loopback, the peer's), so the current task
 * is named only here; user space carries it to the socket's later events
 * and to the children of a listener.
 */
static __always_inline bool in_owner_context(int oldstate, int newstate)
{
	if (oldstate == TCP_CLOSE)
		return newstate == TCP_SYN_SENT || newstate == TCP_LISTEN;
	return newstate == TCP_FIN_WAIT1 ||
	       (oldstate == TCP_CLOSE_WAIT && newstate == TCP_LAST_ACK);
}

/* Queue an event, waking the reader only when the ring fills up: a wake-up
 * per event costs an interrupt per event; the reader polls on its own,
 * sooner as events come faster (src/app.rs, Pacer). */
static __always_inline void submit(struct event *e)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void fill_tuple(struct event *e, const struct tuple *t)
{
	e->family = t->family;
	e->sport = t->sport;
	e->dport = t->dport;
	e->netns = t->netns;
	__builtin_memcpy(e->saddr, t->saddr, sizeof(e->saddr));
	__builtin_memcpy(e->daddr, t->daddr, sizeof(e->daddr));
}

static __always_inline int handle_set_state(const struct sock *sk, int oldstate, int newstate)
{
	/* NULL unless a full TCP socket: the protocol check, for free. */
	const struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
	struct tuple t = {};
	struct event *e;
	__u8 side = SIDE_UNKNOWN;

	if (!tp || sk->sk_type != SOCK_STREAM)
		return 0;
	read_tuple_typed(&tp->inet_conn.icsk_inet.sk.__sk_common, tp->inet_conn.icsk_inet.inet_sport, &t);
	if (!classify(&t, &side))
		return 0;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CNT_RINGBUF_FULL);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->cookie = bpf_get_socket_cookie((void *)sk);
	e->skaddr = (__u64)sk;
	fill_tuple(e, &t);
	if (in_owner_context(oldstate, newstate)) {
		e->pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(&e->comm, sizeof(e->comm));
	}
	e->side = side;
	e->oldstate = oldstate;
	e->newstate = newstate;
	e->source = SRC_SET_STATE;
	submit(e);
	return 0;
}

/* Per CPU: 1 while the main program's body runs (the fallback signal for
 * the backup program below). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} in_main SEC(".maps");

/*
 * Mirrors inet_sk_state_store()/inet_sk_set_state() in net/ipv4/af_inet.c,
 * which fire this tracepoint on every TCP state change of a full socket.
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u32 zero = 0;
	__u32 *busy = bpf_map_lookup_elem(&in_main, &zero);

	if (busy)
		*busy = 1;
	handle_set_state(sk, oldstate, newstate);
	if (busy)
		*busy = 0;
	return 0;
}

/* --------------------------------------------------------------------------
 * Nested events
 *
 * The kernel skips a program when its tracepoint fires again while that
 * program already runs on the CPU (__bpf_trace_run() checks prog->active and
 * only counts a recursion miss). On a busy machine that happens when a
 * softirq on top of one socket's tcp_set_state() changes another socket's
 * state. A second program on the same tracepoint has its own prog->active,
 * so it does run then; it reports the event only when the main program is
 * active on this CPU, i.e. exactly when the main program was skipped.
 * ------------------------------------------------------------------------ */

/* Found once by find_main_prog (0 until then, and where not found: the
 * flag above is used instead). Per-CPU pointers must be offset by the CPU's
 * per-CPU area, which this kernel hides from BPF; in_main's element 0 gives
 * it: its per-CPU pointer (in_main_pcpu) versus the address a lookup returns
 * on this CPU. */
__u64 main_active = 0;   /* per-CPU pointer: the main program's prog->active */
__u64 in_main_pcpu = 0;  /* per-CPU pointer: in_main's element 0 */
/* The main program's id, written by user space before running the iterator. */
__u32 main_prog_id = 0;
/* Each CPU's per-CPU area offset, learned by the same iterator, which user
 * space runs once on every CPU: the backup program then needs one probe
 * read a run instead of two and a map lookup. 0: not learned. */
#define MAX_CPUS 1024
__u64 cpu_offset[MAX_CPUS] = {};

/* A pointer's value as a plain number: the verifier forbids arithmetic on
 * map and map value pointers, so read the value back through the stack. */
static __always_inline __u64 address_of(const void *ptr)
{
	__u64 addr = 0;

	bpf_probe_read_kernel(&addr, sizeof(addr), &ptr);
	return addr;
}

/* cpu_offset's slot for a CPU below MAX_CPUS. The mask is a no-op, but it
 * is a bound older verifiers keep where they lose the caller's check; the
 * barrier stops the compiler from dropping it as redundant. */
static __always_inline __u64 *cpu_offset_slot(__u32 cpu)
{
	barrier_var(cpu);
	return &cpu_offset[cpu & (MAX_CPUS - 1)];
}

/* This CPU's per-CPU area offset, from in_main's element on this CPU. */
static __always_inline __u64 this_cpu_offset(const __u32 *busy)
{
	return address_of(busy) - in_main_pcpu;
}

/* The int at a kernel address. This runs on every state change, so where
 * the kernel has bpf_rdonly_cast() (6.2+) it is one plain load through a
 * typed view (any struct that starts with an int will do; the JIT guards
 * the load like a probe read) instead of a bpf_probe_read_kernel() call. */
static __always_inline int read_kernel_int(__u64 addr)
{
	int value = 0;

	if (bpf_ksym_exists(bpf_rdonly_cast))
		return bpf_core_cast((void *)addr, struct refcount_struct)->refs.counter;
	bpf_probe_read_kernel(&value, sizeof(value), (void *)addr);
	return value;
}

static __always_inline bool main_is_running(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 offset = cpu < MAX_CPUS ? *cpu_offset_slot(cpu) : 0;
	__u32 zero = 0;
	__u32 *busy;

	if (main_active && offset)
		return read_kernel_int(main_active + offset) > 0;
	busy = bpf_map_lookup_elem(&in_main, &zero);
	if (!busy)
		return false;
	if (main_active && in_main_pcpu)
		return read_kernel_int(main_active + this_cpu_offset(busy)) > 0;
	return *busy;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state_nested, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	if (!main_is_running())
		return 0;
	count(CNT_RECOVERED);
	return handle_set_state(sk, oldstate, newstate);
}

/* Run by user space once on each CPU: finds the main program's struct
 * bpf_prog among all programs and keeps the per-CPU address of its
 * recursion guard, and this CPU's per-CPU area offset. */
SEC("iter/bpf_prog")
int find_main_prog(struct bpf_iter__bpf_prog *ctx)
{
	struct bpf_prog *prog = ctx->prog;
	__u64 pptrs = address_of(&in_main) + bpf_core_field_offset(struct bpf_array, pptrs);
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 zero = 0;
	__u32 *busy;

	if (in_main_pcpu && cpu < MAX_CPUS) {
		busy = bpf_map_lookup_elem(&in_main, &zero);
		if (busy)
			*cpu_offset_slot(cpu) = this_cpu_offset(busy);
	}
	if (!prog || !bpf_core_field_exists(prog->active))
		return 0;
	if (BPF_CORE_READ(prog, aux, id) != main_prog_id)
		return 0;
	bpf_probe_read_kernel(&in_main_pcpu, sizeof(in_main_pcpu), (void *)pptrs);
	main_active = (__u64)BPF_CORE_READ(prog, active);
	return 0;
}

/* --------------------------------------------------------------------------
 * TIME_WAIT
 *
 * An active close hands the connection from its full socket to a small
 * struct inet_timewait_sock (tcp_time_wait() in net/ipv4/tcp_minisocks.c);
 * the full socket then goes FIN_WAIT2 -> CLOSE and no state tracepoint ever
 * mentions the timewait socket. Each probe kind below reports its birth and
 * death as raw events; user space (src/lifecycle.rs) turns them into
 * FIN_WAIT2 -> TIME_WAIT -> CLOSE. User space picks one kind at run time and
 * turns the others' autoload off, so only the kind in use is ever loaded.
 * ------------------------------------------------------------------------ */

const volatile __u64 tw_timer_fn = 0;           /* address of tw_timer_handler */
const volatile bool tw_free_checks_ref = false; /* free probe sits on inet_twsk_put */

static __always_inline int report_tw(__u64 twaddr, __u64 cookie, const struct tuple *t,
				     __u8 substate, __u8 source)
{
	struct event *e;
	__u8 side = SIDE_UNKNOWN;

	if (!classify(t, &side))
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CNT_TW_RINGBUF_FULL);
		return 0;
	}
	/* Owner and time in state come from the full socket, in user space. */
	__builtin_memset(e, 0, sizeof(*e));
	fill_tuple(e, t);
	e->ts_ns = bpf_ktime_get_ns();
	e->skaddr = twaddr;
	e->cookie = cookie;
	e->side = side;
	e->oldstate = substate;
	e->newstate = substate;
	e->tw_substate = substate;
	e->source = source;
	submit(e);
	return 0;
}

/* A timewait socket's own view of itself: the tuple lives in __tw_common,
 * the local port in tw_sport. Kernels with bpf_rdonly_cast() (6.2+) give a
 * typed view of any address, read with plain loads; older ones take a
 * probe read per field. */
static __always_inline int report_tw_self(const struct inet_timewait_sock *tw, __u8 source)
{
	const struct inet_timewait_sock *typed;
	struct tuple t = {};
	__u8 substate;

	if (bpf_ksym_exists(bpf_rdonly_cast)) {
		typed = bpf_core_cast(tw, struct inet_timewait_sock);
		read_tuple_typed(&typed->__tw_common, typed->tw_sport, &t);
		substate = typed->tw_substate;
	} else {
		read_tuple(&tw->__tw_common, BPF_CORE_READ(tw, tw_sport), &t);
		substate = BPF_CORE_READ(tw, tw_substate);
	}
	return report_tw((__u64)tw, BPF_CORE_READ(tw, __tw_common.skc_cookie.counter), &t, substate,
			 source);
}

/* A full socket handing over to a timewait socket: its tuple, read with
 * probe reads, which serve the fexit's typed argument and the kretprobe's
 * saved address alike (births are rare: one per connection). */
static __always_inline int report_tw_born(__u64 twaddr, const struct sock *sk, __u8 substate)
{
	struct tuple t = {};

	read_tuple(&sk->__sk_common, BPF_CORE_READ((struct inet_sock *)sk, inet_sport), &t);
	return report_tw(twaddr, BPF_CORE_READ(sk, __sk_common.skc_cookie.counter), &t, substate,
			 SRC_TW_ALLOC);
}

/*
 * Birth, fentry kind. Mirrors inet_twsk_alloc() (net/ipv4/inet_timewait_sock.c),
 * called by tcp_time_wait() with the full socket and the substate (TIME_WAIT,
 * or FIN_WAIT2 when the FIN_WAIT2 timeout is parked in a timewait socket).
 * The tuple is read from the full socket: for IPv6, tcp_time_wait() copies
 * the addresses into the timewait socket only after this returns.
 */
SEC("fexit/inet_twsk_alloc")
int BPF_PROG(tw_alloc_fexit, const struct sock *sk, struct inet_timewait_death_row *dr,
	     const int state, struct inet_timewait_sock *tw)
{
	if (!tw)
		return 0;
	return report_tw_born((__u64)tw, sk, state);
}

/* Birth, kprobe kind: a kretprobe sees only the result, so the entry probe
 * keeps the arguments per thread until the return. */
struct alloc_args {
	__u64 sk;
	__s32 state;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct alloc_args);
} tw_allocs SEC(".maps");

SEC("kprobe/inet_twsk_alloc")
int BPF_KPROBE(tw_alloc_kprobe, const struct sock *sk, void *dr, const int state)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct alloc_args args = { .sk = (__u64)sk, .state = state };

	bpf_map_update_elem(&tw_allocs, &tid, &args, BPF_ANY);
	return 0;
}

SEC("kretprobe/inet_twsk_alloc")
int BPF_KRETPROBE(tw_alloc_kretprobe, struct inet_timewait_sock *tw)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct alloc_args *args = bpf_map_lookup_elem(&tw_allocs, &tid);
	const struct sock *sk;

	if (!args)
		return 0;
	sk = (const struct sock *)args->sk;
	if (tw)
		report_tw_born((__u64)tw, sk, args->state);
	bpf_map_delete_elem(&tw_allocs, &tid);
	return 0;
}

/*
 * Death, fentry and kprobe kinds. Mirrors inet_twsk_free(), which frees the
 * timewait socket whatever ended it (expiry, reuse, RST/SYN, namespace
 * exit). Kernels that lack it as a symbol get inet_twsk_put() instead,
 * which runs on every reference drop: only a drop of the last reference
 * frees, so the others are skipped. User space sets the target.
 */
static __always_inline int tw_freed(const struct inet_timewait_sock *tw)
{
	if (tw_free_checks_ref &&
	    BPF_CORE_READ(tw, __tw_common.skc_refcnt.refs.counter) != 1)
		return 0;
	return report_tw_self(tw, SRC_TW_FREE);
}

SEC("fentry/inet_twsk_free")
int BPF_PROG(tw_free_fentry, struct inet_timewait_sock *tw)
{
	return tw_freed(tw);
}

SEC("kprobe/inet_twsk_free")
int BPF_KPROBE(tw_free_kprobe, struct inet_timewait_sock *tw)
{
	return tw_freed(tw);
}

/*
 * Birth, re-arm and death, timer kind: tracepoints only, for kernels without
 * fentry or kprobes. Every timewait socket arms tw->tw_timer, whose callback
 * is tw_timer_handler (address from /proc/kallsyms). Mirrors
 * __inet_twsk_schedule() (timer_start: armed, or re-armed when FIN_WAIT2
 * becomes TIME_WAIT or a FIN is retransmitted), inet_twsk_deschedule_put()
 * (timer_cancel alone: killed early) and tw_timer_handler() itself
 * (timer_cancel then timer_expire_entry: expired). Only the first argument
 * is used: timer_start has three on 6.1 and two on 6.18.
 */
static __always_inline const struct inet_timewait_sock *tw_of(const struct timer_list *timer)
{
	/* Every timer in the system passes here: one plain load decides. */
	if (!tw_timer_fn || (__u64)timer->function != tw_timer_fn)
		return NULL;
	return (const void *)timer - bpf_core_field_offset(struct inet_timewait_sock, tw_timer);
}

static __always_inline int report_tw_timer(const struct timer_list *timer, __u8 source)
{
	const struct inet_timewait_sock *tw = tw_of(timer);

	return tw ? report_tw_self(tw, source) : 0;
}

SEC("tp_btf/timer_start")
int BPF_PROG(tw_timer_start, struct timer_list *timer)
{
	return report_tw_timer(timer, SRC_TW_ARM);
}

SEC("tp_btf/timer_cancel")
int BPF_PROG(tw_timer_cancel, struct timer_list *timer)
{
	return report_tw_timer(timer, SRC_TW_CANCEL);
}

SEC("tp_btf/timer_expire_entry")
int BPF_PROG(tw_timer_expire, struct timer_list *timer)
{
	return report_tw_timer(timer, SRC_TW_EXPIRE);
}
