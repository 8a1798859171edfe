/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers of tcpstate.bpf.c, which includes this after its configuration and
 * maps: a socket's tuple, the filters, and putting a record in the ring.
 */
#ifndef TCPSTATE_BPF_H
#define TCPSTATE_BPF_H

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
 * Kernels built without network namespaces have no possible_net_t.net (the
 * netns is then reported as 0), and kernels without IPv6 no skc_v6_*: the
 * readers below touch those fields only where this kernel has them, so that
 * the object still loads there. libbpf poisons a relocation that fails, and
 * the verifier accepts it only on a path it can prove dead, so each guarded
 * access sits behind a barrier: the compiler would otherwise hoist the load
 * above its check.
 */
#define HAS_NETNS bpf_core_field_exists(possible_net_t, net)
#define HAS_IPV6 bpf_core_field_exists(struct sock_common, skc_v6_daddr)

/*
 * The tuple of a socket the verifier knows the type of (a tracepoint's
 * argument, or a bpf_core_cast() view), read with plain loads: the state
 * program runs this on every state change. The local port is the caller's:
 * a full socket's skc_num is already 0 at its final CLOSE, so full sockets
 * pass inet_sport, timewait sockets tw_sport.
 */
static __always_inline void read_tuple_typed(const struct sock_common *skc, __be16 sport,
					     struct tuple *t)
{
	t->family = skc->skc_family;
	t->sport = bpf_ntohs(sport);
	t->dport = bpf_ntohs(skc->skc_dport);
	if (t->family == AF_INET) {
		t->saddr[0] = skc->skc_rcv_saddr;
		t->daddr[0] = skc->skc_daddr;
	}
	if (HAS_NETNS) {
		barrier_var(skc);
		t->netns = skc->skc_net.net->ns.inum;
	}
	if (t->family == AF_INET || !HAS_IPV6)
		return;
	barrier_var(skc);
	for (int i = 0; i < 4; i++) {
		t->saddr[i] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[i];
		t->daddr[i] = skc->skc_v6_daddr.in6_u.u6_addr32[i];
	}
	fold_v4_mapped(t);
}

/* The same for a bare address (a kprobe's argument, a kernel without
 * bpf_rdonly_cast()): one probe read per field. */
static __always_inline void read_tuple_probed(const struct sock_common *skc, __be16 sport,
					      struct tuple *t)
{
	t->family = BPF_CORE_READ(skc, skc_family);
	t->sport = bpf_ntohs(sport);
	t->dport = bpf_ntohs(BPF_CORE_READ(skc, skc_dport));
	if (t->family == AF_INET) {
		t->saddr[0] = BPF_CORE_READ(skc, skc_rcv_saddr);
		t->daddr[0] = BPF_CORE_READ(skc, skc_daddr);
	}
	if (HAS_NETNS) {
		barrier_var(skc);
		t->netns = BPF_CORE_READ(skc, skc_net.net, ns.inum);
	}
	if (t->family == AF_INET || !HAS_IPV6)
		return;
	barrier_var(skc);
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
	return a[0] == server_ip[0] && a[1] == server_ip[1] && a[2] == server_ip[2] &&
	       a[3] == server_ip[3];
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

/* Family, namespace and port filters (-4/-6, --netns, -L, -D): cheap, so
 * they run first. */
static __always_inline bool passes_filters(const struct tuple *t)
{
	if (target_family && t->family != target_family)
		return false;
	if (netns_target && t->netns != netns_target)
		return false;
	if (nr_lports && !port_listed(t->sport, lports, nr_lports))
		return false;
	if (nr_rports && !port_listed(t->dport, rports, nr_rports))
		return false;
	return true;
}

/* Whether the socket is reported at all, and its side: with a server
 * configured, the original's rule decides both; without one every socket
 * that passes the filters is, with SIDE_UNKNOWN (user space decides). */
static __always_inline bool is_wanted(const struct tuple *t, __u8 *side)
{
	if (!passes_filters(t))
		return false;
	*side = has_server ? side_by_server(t) : SIDE_UNKNOWN;
	return !has_server || *side != SIDE_UNKNOWN;
}

/*
 * Transitions that only happen in the owning process's own system call, the
 * one moment the current task is the socket's owner: connect()
 * (CLOSE->SYN_SENT), listen() (CLOSE->LISTEN), close()/shutdown()
 * (->FIN_WAIT1, CLOSE_WAIT->LAST_ACK). Anything else may run in softirq on
 * top of an unrelated task.
 */
static __always_inline bool in_owner_context(int oldstate, int newstate)
{
	if (oldstate == TCP_CLOSE)
		return newstate == TCP_SYN_SENT || newstate == TCP_LISTEN;
	return newstate == TCP_FIN_WAIT1 || (oldstate == TCP_CLOSE_WAIT && newstate == TCP_LAST_ACK);
}

/* A zeroed record of `size` bytes in the ring (no byte of an earlier record
 * survives), its timestamp taken once it has its slot; NULL, counted in
 * `full`, when the ring is full. `size` is a constant at each call. */
static __always_inline void *reserve_bytes(__u64 size, enum counter full)
{
	struct event *e = bpf_ringbuf_reserve(&events, size, 0);

	if (!e) {
		count(full);
		return NULL;
	}
	__builtin_memset(e, 0, size);
	e->ts_ns = bpf_ktime_get_ns();
	return e;
}

static __always_inline struct event *reserve_record(enum counter full)
{
	return reserve_bytes(sizeof(struct event), full);
}

/*
 * --connections: a full socket's CLOSE record carries its counters, read
 * now, at its last moment as a full socket (tcp_done(), or tcp_time_wait()
 * handing it to a timewait socket), and the error that ended it: the
 * kernel sets sk_err before tcp_done() (tcp_reset(), tcp_write_err(), an
 * ICMP error in SYN_SENT). Plain loads through the typed tcp_sock.
 */
static __always_inline struct event *reserve_with_counters(const struct tcp_sock *tp)
{
	struct event_counters *r = reserve_bytes(sizeof(*r), CNT_RINGBUF_FULL);
	struct tcp_counters *c;

	if (!r)
		return NULL;
	c = &r->counters;
	c->bytes_sent = tp->bytes_sent;
	c->bytes_acked = tp->bytes_acked;
	c->bytes_received = tp->bytes_received;
	c->bytes_retrans = tp->bytes_retrans;
	c->segs_in = tp->segs_in;
	c->segs_out = tp->segs_out;
	c->total_retrans = tp->total_retrans;
	c->srtt_us = tp->srtt_us >> 3; /* kept scaled by 8 */
	c->min_rtt_us = tp->rtt_min.s[0].v;
	c->sk_err = tp->inet_conn.icsk_inet.sk.sk_err;
	if (tp->inet_conn.icsk_inet.sk.__sk_common.skc_flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE)))
		c->seq_flags |= SEQ_FIN_RECEIVED;
	if (tp->snd_una == tp->write_seq)
		c->seq_flags |= SEQ_ALL_ACKED;
	r->event.flags = EV_COUNTERS;
	return &r->event;
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

/* Queue a record without waking the reader (a wake-up per record costs an
 * interrupt per record; the reader polls on its own), unless wakeup_bytes
 * are already queued. */
static __always_inline void submit(struct event *e)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

#endif /* TCPSTATE_BPF_H */
