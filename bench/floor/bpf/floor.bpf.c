// SPDX-License-Identifier: GPL-2.0
/* The floor of sysobsd's overhead benchmark: empty programs on the two
 * syscall tracepoints sysobsd hooks (tp_btf/sys_enter, tp_btf/sys_exit).
 * Attaching any program puts every thread on the kernel's slower syscall path
 * (syscall_regfunc); what sysobsd's programs add beyond these is its own cost.
 * clock_enter/clock_exit add only what timing a call needs at the least: a
 * clock read at entry, kept per CPU, and one at exit (the part of sysobsd's
 * cost no design can avoid while it measures latency).
 * Bench only: never loaded by the daemon. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sys_enter")
int floor_enter(void *ctx)
{
	return 0;
}

SEC("tp_btf/sys_exit")
int floor_exit(void *ctx)
{
	return 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* 0: last entry time, 1: sum of durations */
	__type(key, __u32);
	__type(value, __u64);
} clock_times SEC(".maps");

SEC("tp_btf/sys_enter")
int clock_enter(void *ctx)
{
	__u32 key = 0;
	__u64 *start = bpf_map_lookup_elem(&clock_times, &key);

	if (start)
		*start = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/sys_exit")
int clock_exit(void *ctx)
{
	__u32 key = 0, sum_key = 1;
	__u64 *start = bpf_map_lookup_elem(&clock_times, &key);
	__u64 *sum = bpf_map_lookup_elem(&clock_times, &sum_key);

	if (start && sum)
		*sum += bpf_ktime_get_ns() - *start;
	return 0;
}
