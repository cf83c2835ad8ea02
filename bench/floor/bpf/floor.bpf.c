// SPDX-License-Identifier: GPL-2.0
/* The floor of sysobsd's overhead benchmark: empty programs on the two
 * syscall tracepoints sysobsd hooks (tp_btf/sys_enter, tp_btf/sys_exit).
 * Attaching any program puts every thread on the kernel's slower syscall path
 * (syscall_regfunc); what sysobsd's programs add beyond these is its own cost.
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
