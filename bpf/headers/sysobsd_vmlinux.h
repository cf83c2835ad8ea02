/* Hand-written CO-RE view of the few kernel types sysobsd reads.
 *
 * Every struct carries preserve_access_index, so field offsets are relocated
 * against the running kernel's BTF at load time: only the fields named here
 * must exist, not this layout. Kept small on purpose (a full vmlinux.h is
 * 2.8 MB and ties the object to one architecture's pt_regs).
 */
#ifndef SYSOBSD_VMLINUX_H
#define SYSOBSD_VMLINUX_H

#include <linux/types.h>
#include <linux/bpf.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef _Bool bool;
#define true 1
#define false 0

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long orig_ax;
	/* syscall arguments: still in place at sys_exit */
	unsigned long di, si, dx, r10, r8, r9;
};
struct thread_info {
	u32 status; /* TS_COMPAT: the current syscall came through the i386 entry */
};
#define TS_COMPAT 0x0002
#elif defined(__TARGET_ARCH_arm64)
struct pt_regs {
	s32 syscallno; /* an int in the kernel's arm64 pt_regs: 8 bytes would read past it */
	u64 regs[31];  /* x0 holds the return value at sys_exit; orig_x0 the first argument */
	u64 orig_x0;
};
struct thread_info {
	unsigned long flags; /* TIF_32BIT: an AArch32 task */
};
#define TIF_32BIT 22
#else
#error "sysobsd's BPF programs support x86 and arm64"
#endif

typedef struct {
	int counter;
} atomic_t;

struct signal_struct {
	atomic_t live; /* threads not yet exited: 0 once the whole group is gone */
};

struct kernfs_node {
	const char *name;
	u64 id; /* the cgroup id: bpf_get_current_cgroup_id(), the cgroup2 directory's inode */
};

struct cgroup_subsys_state {
	struct cgroup_subsys_state *parent;
};

struct cgroup_root;

struct cgroup {
	struct cgroup_subsys_state self; /* first member: a css pointer is its cgroup */
	struct kernfs_node *kn;
	struct cgroup_root *root; /* its hierarchy: cgroup2's is every task's dfl_cgrp's */
};

struct css_set {
	struct cgroup *dfl_cgrp; /* the task's cgroup on the cgroup2 hierarchy */
};

struct task_struct {
	struct thread_info thread_info;
	int pid;
	int tgid;
	struct task_struct *group_leader;
	struct signal_struct *signal;
	struct css_set *cgroups;
	char comm[16];
	u64 self_exec_id;     /* incremented by every exec: splits counts before and after */
	u64 start_time;       /* the thread's; a leader's is the process's (exec keeps it) */
	unsigned int __state; /* TASK_* bits (Linux 5.14; before, state) */
};

/* Before Linux 5.14 the state was a long named state. */
struct task_struct___pre514 {
	long state;
};

struct seq_file;

struct bpf_iter_meta {
	union {
		struct seq_file *seq;
	};
	u64 session_id;
	u64 seq_num;
};

/* The context of an iter/task program: each task in turn, NULL at the end. */
struct bpf_iter__task {
	union {
		struct bpf_iter_meta *meta;
	};
	union {
		struct task_struct *task;
	};
};

#pragma clang attribute pop

#endif
