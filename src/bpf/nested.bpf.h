/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The backup for nested state changes, for tcpstate.bpf.c's last two
 * programs (included after its configuration and maps).
 *
 * Since 6.1 (commit 05b24ff9b2cf, "bpf: Prevent bpf program recursion for raw
 * tracepoint probes") __bpf_trace_run() skips a program whose tracepoint
 * fires while that program already runs on the CPU, and only counts a
 * recursion miss: a softirq changing one socket's state on top of another
 * socket's tcp_set_state() loses the event. The backup is a second program
 * on the same tracepoint, with a prog->active of its own, so it runs then; it
 * reports the event exactly when the main program's prog->active is raised
 * on this CPU, which is the kernel's very condition for the skip. User space
 * loads it only on kernels that skip (they have bpf_prog_inc_misses_counter,
 * which that commit introduced) and attaches it only once find_main_prog has
 * found the guard; otherwise the kernel's count of skips is reported as lost.
 * Why not simpler: README, "The C side".
 */
#ifndef NESTED_BPF_H
#define NESTED_BPF_H

/* What the backup needs of struct bpf_prog: `int __percpu *active`. CO-RE
 * matches the field by name and kind (a pointer), and its size is checked;
 * the pointee's type is not (bpf_core_type_matches() needs LLVM 15; clang 14
 * fails on it). */
struct bpf_prog___guard {
	int *active;
} __attribute__((preserve_access_index));

static __always_inline bool kernel_has_guard(void)
{
	return bpf_core_field_exists(struct bpf_prog___guard, active) &&
	       bpf_core_field_size(struct bpf_prog___guard, active) == sizeof(void *);
}

/* A pointer's value as a number: the verifier forbids arithmetic on map
 * value pointers, so the value is copied out through the stack. */
static __always_inline __u64 pointer_value(const void *ptr)
{
	__u64 value = 0;

	bpf_probe_read_kernel(&value, sizeof(value), &ptr);
	return value;
}

/* This CPU's per-CPU area offset, which the kernel does not hand to BPF:
 * where pcpu_anchor's element is on this CPU, minus its per-CPU address. */
static __always_inline bool derive_cpu_offset(__u64 *offset)
{
	__u32 zero = 0;
	void *here = bpf_map_lookup_elem(&pcpu_anchor, &zero);

	if (!here || !anchor_pcpu)
		return false;
	*offset = pointer_value(here) - anchor_pcpu;
	return true;
}

/* cpu_offsets' slot for cpu < OFFSET_TABLE_CPUS. The mask never changes the
 * index, but older verifiers lose the caller's bound; the barrier keeps the
 * compiler from dropping the mask. */
static __always_inline __u64 *cpu_offset_slot(__u32 cpu)
{
	barrier_var(cpu);
	return &cpu_offsets[cpu & (OFFSET_TABLE_CPUS - 1)];
}

/* From the table where find_main_prog learned it (a load), else derived. */
static __always_inline bool this_cpu_offset(__u64 *offset)
{
	__u32 cpu = bpf_get_smp_processor_id();

	if (cpu < OFFSET_TABLE_CPUS) {
		*offset = *cpu_offset_slot(cpu);
		if (*offset)
			return true;
	}
	return derive_cpu_offset(offset);
}

/* The int at a kernel address: one plain load through a typed view where
 * the kernel has bpf_rdonly_cast() (6.2+; any struct that starts with an int
 * will do, and the JIT guards the load like a probe read), else a probe read. */
static __always_inline int read_kernel_int(__u64 addr)
{
	int value = 0;

	if (bpf_ksym_exists(bpf_rdonly_cast))
		return bpf_core_cast((void *)addr, struct refcount_struct)->refs.counter;
	bpf_probe_read_kernel(&value, sizeof(value), (void *)addr);
	return value;
}

/* Whether the kernel counts the main program as running on this CPU. */
static __always_inline bool main_prog_running(void)
{
	__u64 offset;

	if (!main_guard_pcpu || !this_cpu_offset(&offset))
		return false;
	return read_kernel_int(main_guard_pcpu + offset) > 0;
}

#endif /* NESTED_BPF_H */
