// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel facts the TIME_WAIT probes need before tcpstate.bpf.c is loaded:
 * the address of a few functions (the timer kind compares timer callbacks
 * with tw_timer_handler) and their BTF ids (fentry needs the function in
 * BTF, and a two-instruction fexit program tells whether this kernel lets
 * fentry/fexit load at all).
 *
 * A syscall program asks the kernel directly, by name:
 * bpf_kallsyms_lookup_name() and bpf_btf_find_by_name_kind(). The
 * alternative, reading /proc/kallsyms, makes the kernel format over a
 * hundred thousand lines and was half of tcpstate's start-up CPU. Kernels
 * without these helpers (before 5.16) refuse this program; user space then
 * falls back to /proc/kallsyms (src/kernel.rs).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_NAMES 8
#define NAME_LEN 64

/* Written by user space before the run: NUL-terminated names, and each
 * name's length including the NUL (the helpers want it exact). */
char names[MAX_NAMES][NAME_LEN] = {};
__u32 name_sizes[MAX_NAMES] = {};

/* Read by user space after the run: 0 / negative when not found. */
__u64 addrs[MAX_NAMES] = {};
__s64 btf_ids[MAX_NAMES] = {};

SEC("syscall")
int lookup(void *ctx)
{
	for (int i = 0; i < MAX_NAMES; i++) {
		__u32 size = name_sizes[i];

		if (size < 2 || size > NAME_LEN)
			continue;
		bpf_kallsyms_lookup_name(names[i], size, 0, &addrs[i]);
		btf_ids[i] = bpf_btf_find_by_name_kind(names[i], size, BTF_KIND_FUNC, 0);
	}
	return 0;
}
