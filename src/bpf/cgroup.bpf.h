/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Containers, for tcpstate.bpf.c (included after its configuration and maps,
 * and after tcpstate.bpf.h): a socket's cgroup v2, and --cgroup.
 *
 * The cgroup is the socket's own, never the current task's: the state
 * program often runs in softirq on top of a bystander. cgroup_sk_alloc()
 * (kernel/cgroup/cgroup.c) gives a socket its creator's cgroup when it is
 * made, cgroup_sk_clone() gives an accepted socket its listener's, and it
 * never changes after that. Its id is the cgroup's kernfs id, the inode
 * number of its directory in the cgroup2 mount.
 */
#ifndef CGROUP_BPF_H
#define CGROUP_BPF_H

/*
 * Before 5.15 (5.10 has it), struct sock_cgroup_data is a union of the
 * cgroup pointer (val) and net_cls/net_prio data: the low two bits flag the
 * data (is_data) or a socket made while cgroup data was disabled
 * (no_refcnt), and sock_cgroup_ptr() then answers the root cgroup for any
 * socket: its own is not known. libbpf finds val inside the kernel's
 * anonymous union by name. (preserve_access_index: the plain load below is
 * relocated, as vmlinux.h's types are.)
 */
struct sock_cgroup_data___v510 {
	__u64 val;
} __attribute__((preserve_access_index));

struct sock___v510 {
	struct sock_cgroup_data___v510 sk_cgrp_data;
} __attribute__((preserve_access_index));

#define SOCK_CGROUP_DATA_FLAGS 3ULL

/* Before 6.0 a cgroup keeps the ids of its ancestors, itself included,
 * rather than pointers to them. */
struct cgroup___v510 {
	__u64 ancestor_ids[0];
};

/* cgroup_id(): its kernfs node's id (a u64 since 5.5); 0 for none. Probe
 * reads, for a cgroup the verifier knows only as a number. */
static __always_inline __u64 cgroup_id_probed(const struct cgroup *cgrp)
{
	return cgrp ? BPF_CORE_READ(cgrp, kn, id) : 0;
}

/*
 * The socket's cgroup id, and in *cgrp its cgroup (sock_cgroup_ptr()); 0
 * and NULL where the kernel keeps none (CONFIG_SOCK_CGROUP_DATA off) or does
 * not know it. `sk` is typed (the state and reset programs' argument): from
 * 5.15 the cgroup pointer and its id are plain loads, on every state
 * change; before, the union's value is a number to the verifier, so the
 * cgroup behind it takes probe reads.
 */
static __always_inline __u64 sock_cgroup_id(const struct sock *sk, const struct cgroup **cgrp)
{
	const struct cgroup *own;
	__u64 val;

	*cgrp = NULL;
	if (!bpf_core_field_exists(struct sock, sk_cgrp_data))
		return 0;
	barrier_var(sk);
	if (bpf_core_field_exists(struct sock_cgroup_data, cgroup)) {
		own = sk->sk_cgrp_data.cgroup;
		*cgrp = own;
		return own ? own->kn->id : 0;
	}
	barrier_var(sk);
	val = ((const struct sock___v510 *)sk)->sk_cgrp_data.val;
	if (val & SOCK_CGROUP_DATA_FLAGS)
		return 0;
	*cgrp = (const struct cgroup *)val;
	return cgroup_id_probed(*cgrp);
}

/* The id of cgrp's ancestor at `level` (cgrp itself at its own level), as
 * cgroup_ancestor() finds it: ancestors[] from 6.0, ancestor_ids[] before.
 * The caller checked that cgrp is that deep. */
static __always_inline __u64 ancestor_id(const struct cgroup *cgrp, __u32 level)
{
	const struct cgroup *ancestor = NULL;
	__u64 id = 0;

	if (bpf_core_field_exists(struct cgroup, ancestors)) {
		bpf_probe_read_kernel(&ancestor, sizeof(ancestor),
				      (void *)cgrp + bpf_core_field_offset(struct cgroup, ancestors) +
					      level * sizeof(ancestor));
		return cgroup_id_probed(ancestor);
	}
	if (bpf_core_field_exists(struct cgroup___v510, ancestor_ids))
		bpf_probe_read_kernel(&id, sizeof(id),
				      (void *)cgrp + bpf_core_field_offset(struct cgroup___v510, ancestor_ids) +
					      level * sizeof(id));
	return id;
}

/* --cgroup: the socket's cgroup (`id`, at `cgrp`) is the target or below
 * it, the test cgroup_is_descendant() makes. Without --cgroup every socket
 * passes; with it a socket whose cgroup is not known does not. */
static __always_inline bool in_target_cgroup(const struct cgroup *cgrp, __u64 id)
{
	if (!cgroup_target || id == cgroup_target)
		return true;
	if (!cgrp || BPF_CORE_READ(cgrp, level) < (int)cgroup_level)
		return false;
	return ancestor_id(cgrp, cgroup_level) == cgroup_target;
}

/*
 * --cgroup on timewait records. A struct inet_timewait_sock has no
 * sk_cgrp_data: inet_twsk_alloc() copies the tuple and the cookie of the
 * full socket, not its cgroup, and the timer kind sees nothing else. But
 * tcp_time_wait() (net/ipv4/tcp_minisocks.c) is only ever called for a
 * full socket in FIN_WAIT2 or CLOSING (from tcp_fin(),
 * tcp_rcv_state_process(), tcp_close()): the state program remembers each
 * socket of the target cgroup that enters one of them (tw_remember()),
 * keyed by what its timewait socket carries too, and timewait records pass
 * only when remembered, every probe kind's alike (the fentry and kprobe
 * births, which see the full socket too, find it remembered: the state
 * changed before tcp_time_wait()); a death (expiry, free) forgets.
 *
 * Where tracing gets the cookie (5.12+), the key is the cookie, and the
 * memory a direct-mapped array (tw_slots): slot cookie % size. Cookies are
 * numbered by one counter, in the order sockets first ask for one (where
 * gen_cookie_next() of include/linux/cookie.h numbers them, each CPU takes
 * 4096 at a time), so the slot of a connection is taken again only by a
 * socket about that many cookies younger:
 * the array keeps the most recent connections, as an LRU would, for the
 * price of a store, where an LRU hash update cost this program more than
 * all else it does for a connection. A slot holds its cookie, so an older
 * connection's slot taken by a younger one lets nothing else through. (Two
 * target sockets that share a slot and close at the same instant may write
 * it together: the pair read could then mix their cgroup ids.)
 *
 * Before, the key is the namespace and tuple, in an LRU hash (tw_cgroup),
 * which a later socket may take: a socket that enters FIN_WAIT2 or CLOSING
 * outside the target deletes its tuple's entry, so a stale one (a
 * connection that never reached TIME_WAIT) lets no other cgroup's timewait
 * socket through. What is never forgotten by a death (a timer kind's early
 * death is a cancel, which may be a re-arm) is pushed out by newer entries,
 * in both.
 */
static __always_inline struct tw_slot *tw_slot_of(__u64 cookie)
{
	__u32 index = cookie & tw_slot_mask;

	return bpf_map_lookup_elem(&tw_slots, &index);
}

static __always_inline void tw_key_of(struct tw_key *key, const struct tuple *t)
{
	__builtin_memset(key, 0, sizeof(*key));
	__builtin_memcpy(key->saddr, t->saddr, sizeof(key->saddr));
	__builtin_memcpy(key->daddr, t->daddr, sizeof(key->daddr));
	key->sport = t->sport;
	key->dport = t->dport;
	key->family = t->family;
	key->netns = t->netns;
}

/* Whether tcp_time_wait() may hand over a full socket in this state. */
static __always_inline bool may_hand_to_tw(int state)
{
	return state == TCP_FIN_WAIT2 || state == TCP_CLOSING;
}

/* A socket of the target cgroup: its timewait socket's records will pass. */
static __always_inline void tw_remember(__u64 cookie, const struct tuple *t, __u64 cgroup_id)
{
	struct tw_slot *slot;
	struct tw_key key;

	if (!cgroup_target)
		return;
	if (cookies) {
		slot = tw_slot_of(cookie);
		if (slot && cookie) {
			slot->cookie = cookie;
			slot->cgroup_id = cgroup_id;
		}
		return;
	}
	tw_key_of(&key, t);
	bpf_map_update_elem(&tw_cgroup, &key, &cgroup_id, BPF_ANY);
}

/* A full socket outside the target entered `state`: a stale entry for its
 * tuple (never one for a cookie) must not let its timewait socket pass. */
static __always_inline void tw_forget_tuple(const struct tuple *t, int state)
{
	struct tw_key key;

	if (!cgroup_target || cookies || !may_hand_to_tw(state))
		return;
	tw_key_of(&key, t);
	bpf_map_delete_elem(&tw_cgroup, &key);
}

/* Whether a timewait record is of the target cgroup (always, without
 * --cgroup), and the cgroup id its full socket left. A death forgets. */
static __always_inline bool tw_in_target(__u64 cookie, const struct tuple *t, __u8 source,
					 __u64 *cgroup_id)
{
	bool dies = source == SRC_TW_EXPIRE || source == SRC_TW_FREE;
	struct tw_slot *slot;
	struct tw_key key;
	__u64 *remembered;

	if (!cgroup_target)
		return true;
	if (cookies) {
		slot = tw_slot_of(cookie);
		if (!slot || !cookie || slot->cookie != cookie)
			return false;
		*cgroup_id = slot->cgroup_id;
		if (dies)
			slot->cookie = 0;
		return true;
	}
	tw_key_of(&key, t);
	remembered = bpf_map_lookup_elem(&tw_cgroup, &key);
	if (!remembered)
		return false;
	*cgroup_id = *remembered;
	if (dies)
		bpf_map_delete_elem(&tw_cgroup, &key);
	return true;
}

#endif /* CGROUP_BPF_H */
