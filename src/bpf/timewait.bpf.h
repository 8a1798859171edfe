/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Timewait sockets, for tcpstate.bpf.c's TIME_WAIT programs (included after
 * its configuration and maps, and after tcpstate.bpf.h).
 *
 * An active close hands the connection from its full socket to a struct
 * inet_timewait_sock (tcp_time_wait(), net/ipv4/tcp_minisocks.c), which no
 * state tracepoint ever mentions. The programs report what they see of it as
 * raw records (enum source); user space tells FIN_WAIT2 -> TIME_WAIT -> CLOSE
 * from them.
 */
#ifndef TIMEWAIT_BPF_H
#define TIMEWAIT_BPF_H

#define TCP_TIMEWAIT_SECONDS 60 /* TCP_TIMEWAIT_LEN is 60 * HZ jiffies */
#define NSEC_PER_SEC 1000000000ULL
/* HZ outside this range is not a kernel's: tw_armed_ns is then not known. */
#define HZ_PLAUSIBLE_MIN 10
#define HZ_PLAUSIBLE_MAX 10000

/*
 * Whether a socket is TCP's: before 6.16, DCCP shares inet_twsk_alloc(),
 * the hashdance, __inet_twsk_schedule(), tw_timer_handler() and
 * inet_twsk_free() with TCP. sk_protocol lies beyond struct sock_common, so a
 * timewait socket has none; its proto's name ("TCP", "TCPv6"; DCCP's are
 * "DCCP", "DCCPv6") is what full and timewait sockets both carry. On
 * timewait events only: plain loads through a typed view, or two probe reads.
 */
static __always_inline bool is_tcp_name(const char *name)
{
	return name[0] == 'T' && name[1] == 'C' && name[2] == 'P';
}

static __always_inline bool is_tcp(const struct sock_common *skc)
{
	const struct proto *prot = BPF_CORE_READ(skc, skc_prot);
	char name[3] = {};

	if (!prot || bpf_probe_read_kernel(name, sizeof(name), &prot->name))
		return false;
	return is_tcp_name(name);
}

/*
 * When a timewait socket in TIME_WAIT last had its timer armed, in
 * bpf_ktime_get_ns() time; 0 in FIN_WAIT2, or when HZ is not known or the
 * result makes no sense. In TIME_WAIT the timer is always (re)armed for
 * TCP_TIMEWAIT_LEN, so it was armed at jiffy expires - TCP_TIMEWAIT_LEN.
 * The timer kind needs this: when the FIN that turns a parked FIN_WAIT2 into
 * TIME_WAIT re-arms the timer into the same timer-wheel bucket, __mod_timer()
 * (kernel/time/timer.c, checked in 6.12) only updates timer->expires in
 * place ("If the timer ends up in the same bucket, then we just update the
 * expiry time") and fires no timer tracepoint; this time is then the only
 * trace of the change. HZ comes from user space (.rodata): a __kconfig
 * extern makes libbpf refuse the object where the system has no kernel
 * config file.
 */
static __always_inline __u64 tw_armed_ns(__u8 substate, unsigned long expires, __u64 now_ns)
{
	__u64 len = TCP_TIMEWAIT_SECONDS * hz, elapsed_ns;
	__s64 elapsed;

	if (substate != TCP_TIME_WAIT || hz < HZ_PLAUSIBLE_MIN || hz > HZ_PLAUSIBLE_MAX)
		return 0;
	elapsed = (__s64)(bpf_jiffies64() - (expires - len));
	if (elapsed < 0 || elapsed > 2 * len)
		return 0;
	elapsed_ns = elapsed * NSEC_PER_SEC / hz;
	return elapsed_ns < now_ns ? now_ns - elapsed_ns : 0;
}

/*
 * A network namespace being dismantled has dropped its last reference
 * (cleanup_net() runs after that, and purges its timewait sockets). The
 * count is ns.__ns_ref from 6.18, ns.count before, and net.count before the
 * namespace common part had one. Timewait deaths only: two probe reads.
 */
struct ns_common___count {
	refcount_t count;
};

struct net___count {
	refcount_t count;
};

static __always_inline bool netns_dying(const struct sock_common *skc)
{
	struct net *net;

	if (!HAS_NETNS)
		return false;
	barrier_var(skc);
	net = BPF_CORE_READ(skc, skc_net.net);
	if (!net)
		return false;
	if (bpf_core_field_exists(struct ns_common, __ns_ref))
		return BPF_CORE_READ(net, ns.__ns_ref.refs.counter) == 0;
	if (bpf_core_field_exists(struct ns_common___count, count))
		return BPF_CORE_READ((struct ns_common___count *)&net->ns, count.refs.counter) == 0;
	if (bpf_core_field_exists(struct net___count, count))
		return BPF_CORE_READ((struct net___count *)net, count.refs.counter) == 0;
	return false;
}

/* How a record finds tw_armed_ns: its probe runs as the timer is being
 * armed, or it reads the timer's expiry. */
enum armed {
	ARMED_NOW,
	ARMED_AT_EXPIRY_MINUS_LEN,
};

/* Every timewait record: the whole record zeroed, TCP only (checked by the
 * callers), the cookie the one the connection had as a full socket. Where
 * tracing programs cannot generate cookies (before 5.12), a cookie that some
 * other user made would name some sockets of a connection and not others: no
 * record carries one then, and user space claims timewait sockets by tuple.
 * A timewait socket has no cgroup: with --cgroup, the record carries the one
 * its full socket left (cgroup.bpf.h); else none (user space carries it). */
static __always_inline int report_tw_record(__u64 twaddr, __u64 cookie, const struct tuple *t,
					    __u8 substate, __u8 source, enum armed armed,
					    unsigned long expires, __u8 flags)
{
	__u64 cgroup_id = 0;
	struct event *e;
	__u8 side;

	if (!is_wanted(t, &side) || !tw_in_target(cookie, t, source, &cgroup_id))
		return 0;
	e = reserve_record(CNT_TW_RINGBUF_FULL);
	if (!e)
		return 0;
	fill_tuple(e, t);
	e->skaddr = twaddr;
	e->cookie = cookies ? cookie : 0;
	e->cgroup_id = cgroup_id;
	e->side = side;
	e->oldstate = substate;
	e->newstate = substate;
	e->tw_substate = substate;
	e->source = source;
	e->flags = flags;
	if (armed == ARMED_NOW)
		e->tw_armed_ns = substate == TCP_TIME_WAIT ? e->ts_ns : 0;
	else
		e->tw_armed_ns = tw_armed_ns(substate, expires, e->ts_ns);
	submit(e);
	return 0;
}

/*
 * A timewait socket's record from its own fields: the tuple in __tw_common,
 * the local port in tw_sport, tw_cookie a copy of its full socket's cookie
 * (inet_twsk_alloc()). Kernels with bpf_rdonly_cast() (6.2+) give a typed
 * view read with plain loads; older ones take a probe read per field.
 */
static __always_inline int report_tw(const struct inet_timewait_sock *tw, __u8 source,
				     enum armed armed)
{
	const struct inet_timewait_sock *typed;
	struct tuple t = {};
	unsigned long expires;
	__u8 substate, flags = 0;
	__u64 cookie;

	if (bpf_ksym_exists(bpf_rdonly_cast)) {
		typed = bpf_core_cast(tw, struct inet_timewait_sock);
		if (!is_tcp_name(typed->__tw_common.skc_prot->name))
			return 0;
		read_tuple_typed(&typed->__tw_common, typed->tw_sport, &t);
		substate = typed->tw_substate;
		cookie = typed->__tw_common.skc_cookie.counter;
		expires = typed->tw_timer.expires;
	} else {
		if (!is_tcp(&tw->__tw_common))
			return 0;
		read_tuple_probed(&tw->__tw_common, BPF_CORE_READ(tw, tw_sport), &t);
		substate = BPF_CORE_READ(tw, tw_substate);
		cookie = BPF_CORE_READ(tw, __tw_common.skc_cookie.counter);
		expires = BPF_CORE_READ(tw, tw_timer.expires);
	}
	/* A death (or what may be one) says whether its namespace is going. */
	if (source != SRC_TW_ARM && source != SRC_TW_ALLOC && netns_dying(&tw->__tw_common))
		flags = EV_NETNS_DYING;
	return report_tw_record((__u64)tw, cookie, &t, substate, source, armed, expires, flags);
}

/*
 * A timewait socket born: tcp_time_wait() hands it sk's connection in the
 * hashdance. The tuple and cookie are read from sk (the IPv6 addresses reach
 * tw only after inet_twsk_alloc(), and tw_cookie is a copy of sk's), the
 * substate from tw. Its timer is armed in the same call (6.10+) or just
 * before it. Probe reads: one birth per connection, and the kprobe kind has
 * bare addresses.
 */
static __always_inline int report_tw_birth(const struct inet_timewait_sock *tw,
					   const struct sock *sk)
{
	struct tuple t = {};

	if (!tw || !sk || !is_tcp(&sk->__sk_common))
		return 0;
	read_tuple_probed(&sk->__sk_common, BPF_CORE_READ((struct inet_sock *)sk, inet_sport), &t);
	return report_tw_record((__u64)tw, BPF_CORE_READ(sk, __sk_common.skc_cookie.counter), &t,
				BPF_CORE_READ(tw, tw_substate), SRC_TW_ALLOC, ARMED_NOW, 0, 0);
}

/*
 * The timer re-armed for a live timewait socket (inet_twsk_reschedule() from
 * tcp_timewait_state_process()): a parked FIN_WAIT2 receiving the FIN, whose
 * substate is already TIME_WAIT by then, or a segment in TIME_WAIT. The birth
 * arm (rearm false) is reported by the birth probe instead.
 */
static __always_inline int report_tw_rearm(const struct inet_timewait_sock *tw, bool rearm)
{
	return rearm ? report_tw(tw, SRC_TW_ARM, ARMED_NOW) : 0;
}

/*
 * A timewait socket freed, whatever ended it (expiry, reuse, RST/SYN,
 * namespace exit). On inet_twsk_put() (the fallback where inet_twsk_free()
 * is not a symbol) only a drop of the last reference frees, so the others
 * are skipped; that fallback is not exact: the count read at entry races
 * with another CPU's drop (both may see 2, or both 1), and frees through
 * sock_gen_put() never pass there (user space forgets a timewait socket
 * whose death it never saw after 10 minutes, and counts it).
 */
static __always_inline int report_tw_free(const struct inet_timewait_sock *tw)
{
	if (tw_free_on_put && BPF_CORE_READ(tw, __tw_common.skc_refcnt.refs.counter) != 1)
		return 0;
	return report_tw(tw, SRC_TW_FREE, ARMED_AT_EXPIRY_MINUS_LEN);
}

/* The timewait socket whose timer this is, or NULL: every timer in the
 * system passes here, so one plain load decides. */
static __always_inline const struct inet_timewait_sock *tw_of_timer(const struct timer_list *timer)
{
	if (!tw_timer_fn || (__u64)timer->function != tw_timer_fn)
		return NULL;
	return (const void *)timer - bpf_core_field_offset(struct inet_timewait_sock, tw_timer);
}

static __always_inline int report_tw_timer(const struct timer_list *timer, __u8 source)
{
	const struct inet_timewait_sock *tw = tw_of_timer(timer);

	return tw ? report_tw(tw, source, ARMED_AT_EXPIRY_MINUS_LEN) : 0;
}

#endif /* TIMEWAIT_BPF_H */
