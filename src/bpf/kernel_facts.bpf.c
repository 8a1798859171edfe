// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel facts tcpstate.bpf.c's set-up needs before it is loaded: the
 * address of a few functions (the timer kind compares timer callbacks with
 * tw_timer_handler; bpf_prog_inc_misses_counter tells whether the kernel
 * skips nested raw tracepoint runs) and their BTF ids (fentry needs the
 * function in BTF, and a two-instruction fentry program tells whether this
 * kernel lets fentry/fexit load at all); and jiffies and the monotonic
 * clock at one moment, which tell the tick rate (CONFIG_HZ). A second
 * program, loaded only where they cannot, measures a jiffy.
 *
 * A syscall program asks the kernel directly, by name:
 * bpf_kallsyms_lookup_name() and bpf_btf_find_by_name_kind(). The
 * alternative, reading /proc/kallsyms, makes the kernel format over a
 * hundred thousand lines and was half of tcpstate's start-up CPU. Kernels
 * without these helpers (before 5.16) refuse this program; user space then
 * falls back to /proc/kallsyms (src/trace/kernel.rs).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_NAMES 12
#define NAME_LEN 64
#define MAX_SPINS (1 << 23) /* bpf_loop's limit: far more than a few jiffies */

/* Written by user space before the run: NUL-terminated names, and each
 * name's length including the NUL (the helpers want it exact). */
char names[MAX_NAMES][NAME_LEN] = {};
__u32 name_sizes[MAX_NAMES] = {};

/* Read by user space after the run: 0 / negative when not found. */
__u64 addrs[MAX_NAMES] = {};
__s64 btf_ids[MAX_NAMES] = {};

/* Read back from measure_jiffy: a jiffy's length in ns, 0 when not measured. */
__u64 jiffy_ns = 0;

/* Read back: jiffies and CLOCK_MONOTONIC at one moment (user space tells
 * the tick rate from them where it can, without spinning). */
__u64 jiffies_now = 0;
__u64 mono_now = 0;

/* A read gap longer than this means the spin was preempted or interrupted:
 * the moment of that jiffies edge is not known. */
#define MAX_GAP_NS 20000

/* The watch's state. Globals rather than the callback's context: on 6.1 a
 * timestamp stored through that context read back as 0, and no measurement
 * ever came out. */
static __u64 last_jiffies, last_ns, first_jiffies, first_ns;
static bool seen_edge;

/* One spin: when jiffies moves, an edge; the time between two edges over
 * the jiffies between them is a jiffy. An edge counts only when the spin
 * ran without a gap around it, so that its time is the tick's. */
static long watch_jiffies(__u64 i, void *ctx)
{
	__u64 before = bpf_ktime_get_ns();
	__u64 now = bpf_jiffies64();
	__u64 after = bpf_ktime_get_ns();
	bool timed = before - last_ns < MAX_GAP_NS && after - before < MAX_GAP_NS;

	last_ns = after;
	if (now == last_jiffies)
		return 0;
	last_jiffies = now;
	if (!timed)
		return 0;
	if (!seen_edge) {
		seen_edge = true;
		first_jiffies = now;
		first_ns = after;
		return 0;
	}
	jiffy_ns = (after - first_ns) / (now - first_jiffies);
	return 1;
}

SEC("syscall")
int lookup(void *ctx)
{
	jiffies_now = bpf_jiffies64();
	mono_now = bpf_ktime_get_ns();
	for (int i = 0; i < MAX_NAMES; i++) {
		__u32 size = name_sizes[i];

		if (size < 2 || size > NAME_LEN)
			continue;
		bpf_kallsyms_lookup_name(names[i], size, 0, &addrs[i]);
		btf_ids[i] = bpf_btf_find_by_name_kind(names[i], size, BTF_KIND_FUNC, 0);
	}
	return 0;
}

/* Spins until jiffies has moved twice (bpf_loop() is 5.17+: where it is
 * missing, this program does not load and nothing is measured). */
SEC("syscall")
int measure_jiffy(void *ctx)
{
	last_jiffies = bpf_jiffies64();
	last_ns = bpf_ktime_get_ns();
	bpf_loop(MAX_SPINS, watch_jiffies, NULL, 0);
	return 0;
}
