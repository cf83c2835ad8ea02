// SPDX-License-Identifier: GPL-2.0
/* sysobsd: every syscall on the host, counted in the kernel.
 *
 * Programs
 *   sys_enter        tp_btf/sys_enter: stores the entry time in the thread's
 *                    start slot (only attached when latency is measured).
 *   sys_exit         tp_btf/sys_exit: counts the completed call per process,
 *                    exec generation and syscall; errors by errno; latency.
 *   *_raw            the same two on raw tracepoints, for kernels where
 *                    tp_btf cannot attach.
 *   process_fork, process_exec, task_rename, cgroup_attach, process_exit,
 *   cgroup_mkdir, cgroup_rmdir
 *                    lifecycle records on the ring buffer, so the daemon knows
 *                    each process's name and cgroup, and when its entries can
 *                    be folded; with a process filter set, they also decide
 *                    whether the process is counted (process_listed).
 *
 * Maps
 *   call_slots       per CPU, an open-addressed table of struct call_slot
 *                    {tgid, exec_id, nr, abi, 0} -> {calls, ns, bytes} and
 *                    {tgid, exec_id, nr, abi, errno} -> {failed calls, 0, 0}
 *                    in a plain array the daemon maps into its memory: CPU c owns
 *                    slots [c << call_slot_bits, (c + 1) << call_slot_bits);
 *                    a key is in one of CALL_SLOT_PROBES slots from its hash
 *                    (call_slot_hash), or in more than one after a free slot
 *                    opened before it: a reader sums them. Where all are
 *                    taken, the call goes to syscall_stats (an error to
 *                    syscall_errors). An inlined array lookup instead of a
 *                    hash lookup: 0.74x the added cost with latency off,
 *                    0.88x with it; a failed call's 0.87x (docs/benchmarks.md).
 *   syscall_stats    per-CPU hash, the same keys and values: calls that found
 *                    no slot in call_slots (or all calls, the table off);
 *                    exec_id is the process generation (generation_of)
 *   syscall_errors   per-CPU hash {tgid, exec_id, nr, abi, errno} -> count:
 *                    errors that found no slot in call_slots
 *   latency_hist     per-CPU array [abi][nr] -> histogram, power-of-two seconds
 *   group_stats / group_errors
 *                    per-CPU hashes {cgroup, process name, nr, abi, errno}:
 *                    calls whose per-process entry could not be created (map
 *                    full), so every label but pid stays exact
 *   overflow_stats / overflow_errors
 *                    per-CPU, by [abi][nr] (errors: and errno): calls that fit
 *                    in neither of the above, so totals stay exact
 *   start_slots      array by thread id (tid & start_slot_mask): the entry
 *                    time of the thread's current syscall
 *   start_times      task storage: the same, for a thread whose slot another
 *                    thread holds (only when pid_max exceeds the slots)
 *   lifecycle        ring buffer of struct lifecycle_event
 *   drops            per-CPU array of loss counters, indexed by enum drop_reason
 *   entry_keys       ring buffer of struct errno_key: each call_slots slot
 *                    when claimed (err 0: calls; N: errors with errno N),
 *                    each syscall_stats entry (err 0) and each
 *                    syscall_errors entry when it is created, so
 *                    the daemon can fold an exited process by its keys instead
 *                    of reading the whole map; never wakes the reader
 *   entry_keys_lost  per-CPU count of those records not sent (buffer full):
 *                    no count is lost, the daemon reads the whole map instead
 *   filter_settings  one entry: which filters are on (all off by default)
 *   filter_pids, filter_comms, filter_cgroup_ids, filter_cgroup_names
 *                    what the config includes or excludes (MATCH_* bits)
 *   process_listed   tgids whose verdict differs from the filter's default
 *   syscall_allowed  per [abi][nr]: 1 if counted while the syscall filter is on
 *   notable_events   ring buffer of struct notable_event: failed and slow calls
 *                    with their arguments (and path), when filter_settings asks
 *   errno_notable    per errno: 1 if a call failing with it is notable
 *   path_arg         per [abi][nr]: 1 + the index of the path argument, 0 none
 *   notable_budget   per-CPU rate limit of notable events
 *
 * A reader may assume: a call is counted once, at exit, in exactly one of
 * call_slots, syscall_stats, group_stats or overflow_stats, and a failed
 * call's errno once in exactly one of call_slots, syscall_errors,
 * group_errors or overflow_errors (or drops: error_uncounted); every way a
 * count, a latency or a record could be lost increments drops; an exit
 * record for a tgid is reserved after every sys_exit of that process, so the
 * process's entries are final then.
 */
#include "headers/sysobsd_vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "headers/byte_calls.h"

char LICENSE[] SEC("license") = "GPL";

#define MAX_ERRNO 4095

/* Sizes the daemon shares with these programs. An enum, not #defines, so
 * that bpf2go emits them to Go (sysobsdLayout*): the Go side never copies a
 * number by hand. */
enum layout {
	/* syscall numbers per ABI in the array maps; larger ones share the last slot */
	NR_SLOTS = 1024,
	ABIS = 2,
	HIST_BUCKETS = 40, /* see latency_bucket: power-of-two seconds from 2^-30 to 2^9 */
	COMM_LEN = 16,
	CGROUP_NAME_LEN = 64,
	CGROUP_DEPTH = 8, /* ancestors checked against the cgroup filters */
	CGROUP_PATH_LEN = 256,
	PATH_CAPTURE = 512,   /* the most path_max may be */
	CALL_SLOT_PROBES = 4, /* slots of call_slots a key may be in, from its hash */
};

#if defined(__TARGET_ARCH_x86)
#define RT_SIGRETURN        15  /* x86_64 */
#define RT_SIGRETURN_COMPAT 173 /* i386 */
#else
#define RT_SIGRETURN        139 /* arm64 */
#define RT_SIGRETURN_COMPAT 173 /* arm */
#endif

enum abi {
	ABI_NATIVE = 0,
	ABI_COMPAT = 1,
};

enum drop_reason {
	DROP_RINGBUF_FULL = 0,    /* a lifecycle record was not sent */
	DROP_STATS_MAP_FULL = 1,  /* a call counted in overflow_stats instead of its process */
	DROP_ERRORS_MAP_FULL = 2, /* an error counted in overflow_errors instead of its process */
	DROP_NO_START_TIME = 3,   /* a call counted without its duration: its entry was not seen */
	DROP_START_STORAGE = 4,   /* task storage refused an entry time (memory or busy) */
	DROP_LISTED_MAP_FULL = 5, /* a process's filter verdict not stored: it gets the default */
	DROP_NOTABLE_RATE_LIMITED = 6, /* a notable event over the per-CPU rate limit, not sent */
	DROP_NOTABLE_RINGBUF_FULL = 7, /* a notable event not sent: its ring buffer was full */
	DROP_GROUP_STATS_FULL = 8,     /* a call counted in overflow_stats: group_stats full too */
	DROP_GROUP_ERRORS_FULL = 9, /* an error counted in overflow_errors: group_errors full too */
	DROP_ERROR_UNCOUNTED = 10,  /* an error not counted at all: overflow_errors full */
	DROP_REASONS = 11,
};

enum lifecycle_kind {
	LIFECYCLE_FORK = 1,        /* a new process (not a thread); comm inherited */
	LIFECYCLE_EXEC = 2,        /* exec_id is the new generation, comm the new name */
	LIFECYCLE_RENAME = 3,      /* prctl(PR_SET_NAME) or /proc/PID/comm on a leader */
	LIFECYCLE_EXIT = 4,        /* the last thread of the process has exited */
	LIFECYCLE_CGROUP = 5,      /* the process moved to another cgroup2 cgroup */
	LIFECYCLE_CGROUP_GONE = 6, /* a cgroup2 cgroup was removed: only cgroup_id is set */
	LIFECYCLE_CGROUP_NEW = 7,  /* a cgroup2 cgroup was made: struct cgroup_new_event */
};

enum process_filter {
	FILTER_OFF = 0,
	FILTER_ONLY_LISTED = 1,   /* include lists set: only listed processes are counted */
	FILTER_EXCEPT_LISTED = 2, /* exclude lists only: listed processes are not counted */
};

/* Bits of a filter map's value. */
enum match_bits {
	MATCH_INCLUDE = 1,
	MATCH_EXCLUDE = 2,
};

/* Dimensions of include_mask and dims. */
enum filter_dim {
	DIM_PID = 1,
	DIM_COMM = 2,
	DIM_CGROUP = 4,
};

struct syscall_key {
	u32 tgid;
	u32 exec_id;
	u16 nr;
	u16 abi;
};

struct errno_key {
	u32 tgid;
	u32 exec_id;
	u16 nr;
	u16 abi;
	u32 err;
};

/* A call counted without its process (per-process map full): by what the
 * labels other than pid are made of, so they stay exact. */
struct group_key {
	u64 cgroup_id;
	char comm[COMM_LEN]; /* the process's name, NUL-padded */
	u16 nr;
	u16 abi;
	u32 err; /* 0 in group_stats */
};

struct syscall_stats_value {
	u64 calls;
	u64 ns;
	u64 bytes; /* sum of the successful return values of calls that move bytes */
};

/* One slot of call_slots: a key and its counts, a cache line. err 0: the
 * calls of a process and syscall; otherwise how many of them failed with
 * that errno, in v.calls (ns and bytes stay 0). */
struct call_slot {
	u64 state; /* enum call_slot_state; 64 bits for the atomics of -mcpu=v2 */
	struct errno_key key;
	struct syscall_stats_value v;
	u64 pad[2];
};
/* The daemon maps the table by this size (loader.callSlot). */
_Static_assert(sizeof(struct call_slot) == 64, "a call_slot is one cache line");

/* A slot's life: the CPU it belongs to claims a free one (compare and swap,
 * so a program preempted on that CPU cannot claim it twice), writes the key
 * and zero counts, then makes it live; the counts only grow from then on.
 * Only the daemon frees a slot, once its process generation is gone and its
 * counts folded: nothing writes the slot then, and the next claim writes
 * every field. */
enum call_slot_state {
	CALL_SLOT_FREE = 0,
	CALL_SLOT_CLAIMED = 1,
	CALL_SLOT_LIVE = 2,
};

struct latency_hist_value {
	u64 buckets[HIST_BUCKETS];
};

struct lifecycle_event {
	u32 kind;
	u32 tgid;
	u32 exec_id;
	u32 pad;
	u64 cgroup_id;
	char comm[COMM_LEN];
};

/* LIFECYCLE_CGROUP_NEW's record, longer than the others: the new cgroup's
 * path, so that calls in a unit or container gone before the daemon could
 * find it by walking the tree still get its labels. */
struct cgroup_new_event {
	struct lifecycle_event head; /* kind and cgroup_id set, the rest zero */
	char path[CGROUP_PATH_LEN];  /* from the hierarchy's root; "" if longer */
};

struct filter_settings_value {
	u32 process_filter; /* enum process_filter */
	u32 include_mask;   /* DIM_* with an include list: a counted process matches each */
	u32 syscall_filter; /* 1: only syscalls marked in syscall_allowed are counted */
	u32 follow_forks;   /* 1: a listed process's children are listed at fork */
	u32 notable;        /* NOTABLE_* bits: which calls become notable events */
	u32 notable_rate;   /* notable events per CPU per ~second (2^30 ns); 0: no limit */
	u64 slow_ns;        /* a call at least this long is notable (NOTABLE_SLOW) */
	u32 path_max;       /* bytes of a path argument captured, NUL included */
	u32 dims;           /* DIM_* that some include or exclude list names */
};

/* Bits of filter_settings_value.notable: which calls are notable events. */
enum notable_kind {
	NOTABLE_ERRORS = 1,
	NOTABLE_SLOW = 2,
};

struct notable_event {
	u64 ts_ns; /* bpf_ktime_get_ns() at exit */
	u64 duration_ns;
	s64 ret;
	u64 args[6];
	u64 cgroup_id;
	u32 tgid;
	u32 tid;
	u32 exec_id;
	u16 nr;
	u16 abi;
	s32 path_len; /* bytes read into path, NUL included; <= 0: none */
	u32 pad;
	char comm[COMM_LEN]; /* the process's (thread-group leader's) name */
	char path[PATH_CAPTURE];
};

/* A thread's entry time. ns is 0 while the owner is not in a call, so a slot
 * whose owner is between calls (or gone) may be taken over. */
struct start_slot {
	u32 tid;
	u32 entry_jiffies; /* sampled latency: jiffies at entry, low 32 bits */
	u64 ns;
};

/* A thread inside a syscall, as the in_flight iterator reports it. */
struct in_flight_record {
	u64 start_ns; /* bpf_ktime_get_ns() at the call's entry (sampled latency,
	               * a call not timed: from its jiffies, within a tick, low bit set) */
	u64 args[6];
	u32 tgid;
	u32 tid;
	u32 exec_id;
	u32 state; /* enum thread_state */
	u16 nr;
	u16 abi;
	u32 pad;
	char comm[COMM_LEN]; /* the thread's name */
};

/* What a thread inside a call is doing, from its TASK_* bits. */
enum thread_state {
	THREAD_RUNNING = 0,  /* on a CPU or waiting for one */
	THREAD_SLEEPING = 1, /* interruptible wait (S): epoll_wait, futex, read on a socket */
	THREAD_UNINTERRUPTIBLE = 2, /* uninterruptible wait (D): disk I/O, a vfork parent */
	THREAD_STOPPED = 3,         /* stopped, traced or frozen (T, t) */
};

struct notable_budget_value {
	u64 window; /* ts_ns >> 30 */
	u32 sent;
	u32 pad;
};

/* Set by the loader before load; the verifier prunes what they switch off. */
const volatile u32 self_tgid = 0;
const volatile bool measure_latency = true;
/* start_slots' size less one, a power of two less one: the loader sizes it
 * from pid_max, so that every thread id has a slot of its own up to 2^18. */
const volatile u32 start_slot_mask = 32767;
/* Sampled latency (latency: sampled): one call in 2^latency_sample_shift,
 * chosen at random at entry, reads the clock at entry and exit; its time is
 * scaled by as much into the sums and the histogram. The others read only
 * jiffies (bpf_jiffies64, inlined: tracing programs may not read the coarse
 * clock): their stamp is UNTIMED, with the entry's jiffies above the low
 * bit. Every call that lasts long_call_ticks or more by jiffies is counted
 * unscaled, timed or not (an untimed one as its ticks × tick_ns, within a
 * tick), so no long call is missed and a timed one is not scaled into 16;
 * the in_flight iterator dates an untimed call from its jiffies the same
 * way. 0: every call is timed. */
const volatile u32 latency_sample_shift = 0;
#define latency_sample_mask ((1U << latency_sample_shift) - 1)
#define UNTIMED             1ULL /* a stamp's low bit: the call is not timed */
/* The kernel's tick (clock_getres of CLOCK_MONOTONIC_COARSE) and the ticks
 * from which a call is long (at least 2^24 ns, at least 4 ticks): set by the
 * loader for sampled latency. */
const volatile u64 tick_ns = 4000000;
const volatile u64 long_call_ticks = 5;
/* call_slots: log2 of each CPU's slots, set by the loader with the map's
 * size (0: no table, every call counted in syscall_stats and every error in
 * syscall_errors). */
const volatile u32 call_slot_bits = 0;
/* Lifecycle records wake the reader only once this many bytes wait (0: every
 * record). A wake-up is an interrupt, about 25 µs of the forking or exiting
 * task's time on the benchmark machine; the daemon drains the ring buffer
 * every fold interval and before every scrape anyway. */
const volatile u64 lifecycle_wakeup_bytes = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1); /* the loader sets possible CPUs << call_slot_bits */
	__type(key, u32);
	__type(value, struct call_slot);
} call_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct syscall_key);
	__type(value, struct syscall_stats_value);
} syscall_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct errno_key);
	__type(value, u64);
} syscall_errors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ABIS *NR_SLOTS);
	__type(key, u32);
	__type(value, struct latency_hist_value);
} latency_hist SEC(".maps");

/* Never trimmed: an entry is a label set, not a process, so no fold can
 * know it final; it is only read. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct group_key);
	__type(value, struct syscall_stats_value);
} group_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct group_key);
	__type(value, u64);
} group_errors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ABIS *NR_SLOTS);
	__type(key, u32);
	__type(value, struct syscall_stats_value);
} overflow_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct errno_key); /* tgid and exec_id zero */
	__type(value, u64);
} overflow_errors SEC(".maps");

/* Why not task storage alone: its lookup is a helper call with a recursion
 * lock, about 86 ns per call (entry and exit) on the benchmark machine, against
 * a few ns for an inlined array lookup (docs/benchmarks.md). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 32768);
	__type(key, u32);
	__type(value, struct start_slot);
} start_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct start_slot); /* tid unused */
} start_times SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} lifecycle SEC(".maps");

/* 24 bytes a record: the new entries between two folds (a second) of a host
 * starting ~1,000 processes a second fit (~21,800, ~20 per process); beyond
 * that, folds read the maps in full, as before announcements. Small, because
 * the reader maps the buffer twice and it counts in the daemon's RSS. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 512 * 1024);
} entry_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} entry_keys_lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_REASONS);
	__type(key, u32);
	__type(value, u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct filter_settings_value);
} filter_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u8);
} filter_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, char[COMM_LEN]);
	__type(value, u8);
} filter_comms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u8);
} filter_cgroup_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, char[CGROUP_NAME_LEN]);
	__type(value, u8);
} filter_cgroup_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, u32);
	__type(value, u8);
} process_listed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ABIS *NR_SLOTS);
	__type(key, u32);
	__type(value, u8);
} syscall_allowed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
} notable_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ERRNO + 1);
	__type(key, u32);
	__type(value, u8);
} errno_notable SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ABIS *NR_SLOTS);
	__type(key, u32);
	__type(value, u8);
} path_arg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct notable_budget_value);
} notable_budget SEC(".maps");

/* Force BTF for the types user space decodes (bpf2go -type). */
const struct lifecycle_event *unused_lifecycle_event __attribute__((unused));
const enum drop_reason *unused_drop_reason __attribute__((unused));
const enum lifecycle_kind *unused_lifecycle_kind __attribute__((unused));
const enum process_filter *unused_process_filter __attribute__((unused));
const struct filter_settings_value *unused_filter_settings __attribute__((unused));
const struct notable_event *unused_notable_event __attribute__((unused));
const struct group_key *unused_group_key __attribute__((unused));
const struct cgroup_new_event *unused_cgroup_new_event __attribute__((unused));
const enum layout *unused_layout __attribute__((unused));
const enum match_bits *unused_match_bits __attribute__((unused));
const enum filter_dim *unused_filter_dim __attribute__((unused));
const enum notable_kind *unused_notable_kind __attribute__((unused));
const struct errno_key *unused_errno_key __attribute__((unused));
const struct in_flight_record *unused_in_flight_record __attribute__((unused));
const struct call_slot *unused_call_slot __attribute__((unused));
const enum call_slot_state *unused_call_slot_state __attribute__((unused));
const enum thread_state *unused_thread_state __attribute__((unused));

static __always_inline void count_drop(u32 reason)
{
	u64 *n = bpf_map_lookup_elem(&drops, &reason);
	if (n)
		*n += 1;
}

/* Tells the daemon an entry was created: a call_slots slot claimed or a
 * hash entry inserted (err 0: calls, in a slot or syscall_stats; N: errors
 * with errno N, in a slot or syscall_errors). Only the CPU whose claim or
 * insert succeeded sends it: a hash entry is told once, a key's slots once
 * each. */
static __always_inline void announce_entry(struct syscall_key *key, u32 err)
{
	struct errno_key *rec;
	u32 zero = 0;
	u64 *lost;

	rec = bpf_ringbuf_reserve(&entry_keys, sizeof(*rec), 0);
	if (!rec) {
		lost = bpf_map_lookup_elem(&entry_keys_lost, &zero);
		if (lost)
			*lost += 1;
		return;
	}
	rec->tgid = key->tgid;
	rec->exec_id = key->exec_id;
	rec->nr = key->nr;
	rec->abi = key->abi;
	rec->err = err;
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}

static __always_inline u16 task_abi(struct task_struct *task)
{
#if defined(__TARGET_ARCH_x86)
	return (task->thread_info.status & TS_COMPAT) ? ABI_COMPAT : ABI_NATIVE;
#else
	return (task->thread_info.flags & (1UL << TIF_32BIT)) ? ABI_COMPAT : ABI_NATIVE;
#endif
}

/* Bucket b holds durations in (2^(b-31), 2^(b-30)] seconds: the log2 of the
 * duration in units of 2^-30 s (ns × 1.0737418, by shifts: no multiply, no
 * overflow), so bucket bounds are powers of two in seconds — the boundaries
 * of native histograms' schema 0 — from ~1 ns to 2^9 s; the last bucket
 * takes all longer calls. All 64-bit: a u32 result is zero-extended into a
 * copy of the register, and 6.1's verifier then loses the clamp. */
static __always_inline u64 latency_bucket(u64 ns)
{
	u64 v, r = 0, shift;

	v = ns + (ns >> 4) + (ns >> 7) + (ns >> 9) + (ns >> 10) + (ns >> 11);
	if (v <= 1)
		return 0;
	v -= 1;
	shift = (v > 0xFFFFFFFF) << 5;
	v >>= shift;
	r |= shift;
	shift = (v > 0xFFFF) << 4;
	v >>= shift;
	r |= shift;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	r += 1;
	if (r >= HIST_BUCKETS)
		r = HIST_BUCKETS - 1;
	return r;
}

/* The process generation a call belongs to (exec_id in keys and records).
 * self_exec_id counts execs, but a fork inherits it: a process that reuses
 * the tgid of one whose entries the daemon has not yet folded could share its
 * keys, and the two would be counted as one. The thread group's start time
 * (a non-leader's exec takes the old leader's, de_thread) tells them apart;
 * within a process, generations still differ by their number of execs. */
static __always_inline u32 generation_of(struct task_struct *task)
{
	return (u32)task->self_exec_id + (u32)task->group_leader->start_time;
}

static __always_inline u32 array_slot(u16 abi, long nr)
{
	u32 slot = nr >= 0 && nr < NR_SLOTS ? (u32)nr : NR_SLOTS - 1;
	return abi * NR_SLOTS + slot;
}

/* Creates key's entry in a per-CPU hash map of counters, at zero, and
 * returns it; NULL if the map is full. Another CPU may create the same key
 * first: the insert fails and the lookup finds that one. */
static __always_inline void *create_counter(void *map, void *key, void *zero, bool *created)
{
	*created = bpf_map_update_elem(map, key, zero, BPF_NOEXIST) == 0;
	return bpf_map_lookup_elem(map, key);
}

/* The entry of key, created if missing; NULL if the map is full. */
static __always_inline void *counter_of(void *map, void *key, void *zero, bool *created)
{
	void *v = bpf_map_lookup_elem(map, key);

	return v ? v : create_counter(map, key, zero, created);
}

static __always_inline struct cgroup *task_cgroup(struct task_struct *task)
{
	return BPF_CORE_READ(task, cgroups, dfl_cgrp);
}

static __always_inline void group_key_of(struct group_key *g, struct task_struct *task,
                                         struct syscall_key *key, u32 err)
{
	__builtin_memset(g, 0, sizeof(*g));
	g->cgroup_id = BPF_CORE_READ(task_cgroup(task), kn, id);
	bpf_probe_read_kernel_str(g->comm, sizeof(g->comm), task->group_leader->comm);
	g->nr = key->nr;
	g->abi = key->abi;
	g->err = err;
}

/* Where a call is counted when its process's entry cannot be created (the
 * per-process map is full): by name and cgroup, or failing that by syscall. */
static __always_inline struct syscall_stats_value *group_stats_of(struct task_struct *task,
                                                                  struct syscall_key *key, long nr)
{
	struct syscall_stats_value zero = {}, *stats;
	struct group_key g;
	bool created = false;
	u32 slot;

	count_drop(DROP_STATS_MAP_FULL);
	group_key_of(&g, task, key, 0);
	stats = counter_of(&group_stats, &g, &zero, &created);
	if (stats)
		return stats;
	count_drop(DROP_GROUP_STATS_FULL);
	slot = array_slot(key->abi, nr);
	return bpf_map_lookup_elem(&overflow_stats, &slot);
}

/* Where a key's slots start in each CPU's part of call_slots: key's calls
 * (err 0) or its failures with errno err. The daemon computes the same
 * (loader.callSlotHash): change both or neither. */
static __always_inline u32 call_slot_hash(struct syscall_key *key, u32 err)
{
	u32 h = key->tgid * 0x9E3779B1u ^ key->exec_id * 0x85EBCA77u ^
	        ((u32)key->nr << 1 | key->abi) ^ err * 0x27D4EB2Fu;

	h *= 0xC2B2AE3Du;
	return h ^ (h >> 16);
}

/* The counts of key's calls (err 0) or of its failures with errno err in
 * this CPU's part of call_slots: the first live slot with the key, or the
 * first free one, claimed; NULL if the key's slots are all taken by others. */
static __always_inline struct syscall_stats_value *call_slot_of(struct syscall_key *key, u32 err)
{
	u32 mask = (1U << call_slot_bits) - 1;
	u32 base = bpf_get_smp_processor_id() << call_slot_bits;
	u32 h = call_slot_hash(key, err);

	for (int i = 0; i < CALL_SLOT_PROBES; i++) {
		u32 index = base + ((h + i) & mask);
		struct call_slot *s = bpf_map_lookup_elem(&call_slots, &index);

		if (!s)
			return NULL;
		if (s->state == CALL_SLOT_LIVE) {
			if (s->key.tgid == key->tgid && s->key.exec_id == key->exec_id &&
			    s->key.nr == key->nr && s->key.abi == key->abi && s->key.err == err)
				return &s->v;
			continue;
		}
		if (s->state != CALL_SLOT_FREE ||
		    __sync_val_compare_and_swap(&s->state, CALL_SLOT_FREE, CALL_SLOT_CLAIMED) !=
		            CALL_SLOT_FREE)
			continue;
		s->key = (struct errno_key){
		        .tgid = key->tgid,
		        .exec_id = key->exec_id,
		        .nr = key->nr,
		        .abi = key->abi,
		        .err = err,
		};
		s->v = (struct syscall_stats_value){};
		/* Fully ordered: the daemon that sees it live sees the key. */
		__sync_lock_test_and_set(&s->state, CALL_SLOT_LIVE);
		announce_entry(key, err);
		return &s->v;
	}
	return NULL;
}

static __always_inline void record_error(struct task_struct *task, struct syscall_key *key,
                                         long ret)
{
	struct errno_key ekey = {
	        .tgid = key->tgid,
	        .exec_id = key->exec_id,
	        .nr = key->nr,
	        .abi = key->abi,
	        .err = (u32)(-ret),
	};
	struct syscall_stats_value *slot;
	struct group_key g;
	u64 zero = 0, *count;
	bool created = false;

	slot = call_slot_bits ? call_slot_of(key, ekey.err) : NULL;
	if (slot) {
		slot->calls += 1;
		return;
	}
	count = counter_of(&syscall_errors, &ekey, &zero, &created);
	if (created)
		announce_entry(key, ekey.err);
	if (!count) {
		count_drop(DROP_ERRORS_MAP_FULL);
		group_key_of(&g, task, key, ekey.err);
		count = counter_of(&group_errors, &g, &zero, &created);
	}
	if (!count) {
		count_drop(DROP_GROUP_ERRORS_FULL);
		ekey.tgid = 0;
		ekey.exec_id = 0;
		count = counter_of(&overflow_errors, &ekey, &zero, &created);
	}
	if (!count) {
		count_drop(DROP_ERROR_UNCOUNTED);
		return;
	}
	*count += 1;
}

/* Filters cost an inlined array lookup and two branches while all are off. */
static __always_inline bool process_filtered_out(struct filter_settings_value *fs, u32 tgid)
{
	bool listed;

	if (!fs || fs->process_filter == FILTER_OFF)
		return false;
	listed = bpf_map_lookup_elem(&process_listed, &tgid) != NULL;
	return listed != (fs->process_filter == FILTER_ONLY_LISTED);
}

static __always_inline bool syscall_filtered_out(struct filter_settings_value *fs, u16 abi, long nr)
{
	u32 slot;
	u8 *allowed;

	if (!fs || !fs->syscall_filter)
		return false;
	slot = array_slot(abi, nr);
	allowed = bpf_map_lookup_elem(&syscall_allowed, &slot);
	return !allowed || !*allowed;
}

/* A new task's first return from fork/clone is not a call of its own: the
 * parent's return counts the call once, as strace does. */
static __always_inline bool is_fork_child_return(u16 abi, long nr)
{
#if defined(__TARGET_ARCH_x86)
	if (abi == ABI_COMPAT)
		return nr == 120 || nr == 2 || nr == 190 ||
		       nr == 435; /* i386 clone, fork, vfork, clone3 */
	return nr == 56 || nr == 57 || nr == 58 || nr == 435;
#else
	if (abi == ABI_COMPAT)
		return nr == 120 || nr == 2 || nr == 190 ||
		       nr == 435; /* arm clone, fork, vfork, clone3 */
	return nr == 220 || nr == 435;
#endif
}

#if defined(__TARGET_ARCH_x86)
#define SYSCALL_ARG(regs, i)                                                                       \
	((i) == 0   ? BPF_CORE_READ(regs, di)                                                      \
	 : (i) == 1 ? BPF_CORE_READ(regs, si)                                                      \
	 : (i) == 2 ? BPF_CORE_READ(regs, dx)                                                      \
	 : (i) == 3 ? BPF_CORE_READ(regs, r10)                                                     \
	 : (i) == 4 ? BPF_CORE_READ(regs, r8)                                                      \
	            : BPF_CORE_READ(regs, r9))
#else
#define SYSCALL_ARG(regs, i)                                                                       \
	((i) == 0 ? BPF_CORE_READ(regs, orig_x0) : BPF_CORE_READ(regs, regs[i]))
#endif

static __always_inline bool notable_budget_left(struct filter_settings_value *fs, u64 now)
{
	struct notable_budget_value *b;
	u32 zero = 0;

	if (!fs->notable_rate)
		return true;
	b = bpf_map_lookup_elem(&notable_budget, &zero);
	if (!b)
		return false;
	if (b->window != now >> 30) {
		b->window = now >> 30;
		b->sent = 0;
	}
	if (b->sent >= fs->notable_rate)
		return false;
	b->sent++;
	return true;
}

/* Failed and slow calls go to user space with their arguments: rare by
 * definition, rate-limited per CPU, every one not sent counted. */
static __always_inline void send_notable(struct filter_settings_value *fs, struct pt_regs *regs,
                                         struct task_struct *task, struct syscall_key *key, long nr,
                                         long ret, u64 ns)
{
	struct notable_event *ev;
	u64 now = bpf_ktime_get_ns();
	u32 slot, path_max;
	u8 *arg;

	if (!notable_budget_left(fs, now)) {
		count_drop(DROP_NOTABLE_RATE_LIMITED);
		return;
	}
	ev = bpf_ringbuf_reserve(&notable_events, sizeof(*ev), 0);
	if (!ev) {
		count_drop(DROP_NOTABLE_RINGBUF_FULL);
		return;
	}
	ev->ts_ns = now;
	ev->duration_ns = ns;
	ev->ret = ret;
	ev->args[0] = SYSCALL_ARG(regs, 0);
	ev->args[1] = SYSCALL_ARG(regs, 1);
	ev->args[2] = SYSCALL_ARG(regs, 2);
	ev->args[3] = SYSCALL_ARG(regs, 3);
	ev->args[4] = SYSCALL_ARG(regs, 4);
	ev->args[5] = SYSCALL_ARG(regs, 5);
	ev->cgroup_id = BPF_CORE_READ(task_cgroup(task), kn, id);
	ev->tgid = key->tgid;
	ev->tid = task->pid;
	ev->exec_id = key->exec_id;
	ev->nr = key->nr;
	ev->abi = key->abi;
	ev->pad = 0;
	bpf_probe_read_kernel_str(ev->comm, sizeof(ev->comm), task->group_leader->comm);
	ev->path_len = 0;
	slot = array_slot(key->abi, nr);
	arg = bpf_map_lookup_elem(&path_arg, &slot);
	path_max = fs->path_max;
	if (path_max > PATH_CAPTURE)
		path_max = PATH_CAPTURE;
	if (arg && *arg && path_max > 0) {
		u64 i = *arg - 1;

		asm volatile("" : "+r"(i)); /* bound the register the index uses (6.1) */
		if (i < 6)
			ev->path_len = bpf_probe_read_user_str(ev->path, path_max,
			                                       (const char *)ev->args[i]);
	}
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline bool is_notable(struct filter_settings_value *fs, long ret, u64 ns)
{
	if ((fs->notable & NOTABLE_SLOW) && ns >= fs->slow_ns && ns)
		return true;
	if ((fs->notable & NOTABLE_ERRORS) && ret < 0 && ret >= -MAX_ERRNO) {
		u32 err = (u32)(-ret);
		u8 *on = bpf_map_lookup_elem(&errno_notable, &err);

		return on && *on;
	}
	return false;
}

static __always_inline struct start_slot *start_slot_of(u32 tid)
{
	u32 index = tid & start_slot_mask;

	return bpf_map_lookup_elem(&start_slots, &index);
}

/* The owner's slot takes the entry stamp (and jiffies), or a slot whose
 * owner is not in a call. Only threads whose ids share a slot (pid_max above
 * 2^18) can race for one; the loser's stamp goes to task storage. */
static __always_inline void store_start_time(struct task_struct *task, u64 stamp, u32 jiffies)
{
	struct start_slot *slot = start_slot_of(task->pid);

	if (!slot || (slot->tid != task->pid && slot->ns)) {
		/* Another thread sharing the slot is in a call. */
		slot = bpf_task_storage_get(&start_times, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!slot) {
			count_drop(DROP_START_STORAGE);
			return;
		}
	}
	slot->tid = task->pid;
	slot->entry_jiffies = jiffies;
	slot->ns = stamp;
}

/* A call that lasted this many jiffies or more is long: sampled latency
 * counts it unscaled, timed or not. A timed call's entry jiffies are 32
 * bits: one of 2^40 ns or more is long whatever they say. */
static __always_inline bool long_call(u64 ticks, u64 ns)
{
	return ticks >= long_call_ticks || ns >= (1ULL << 40);
}

/* The duration of a call from its entry stamp, and in *shift how much it
 * is scaled by (sampled latency); 0 for a short call that was not timed. */
static __always_inline u64 time_since(struct start_slot *start, u32 *shift)
{
	u64 stamp = start->ns, j, ns;

	if (!latency_sample_mask)
		return bpf_ktime_get_ns() - stamp;
	j = bpf_jiffies64();
	if (stamp & UNTIMED) {
		u64 ticks = j - (stamp >> 1);

		if (!long_call(ticks, 0))
			return 0;
		*shift = 0;
		return ticks * tick_ns;
	}
	ns = bpf_ktime_get_ns() - stamp;
	*shift = long_call((u32)j - start->entry_jiffies, ns) ? 0 : latency_sample_shift;
	return ns;
}

/* The duration of the call now returning (see time_since); 0 (and counted)
 * if its entry was not seen. A stamp is used once: a call without a fresh
 * entry never reuses it. */
static __always_inline u64 take_start_time(struct task_struct *task, u32 *shift)
{
	struct start_slot *start = start_slot_of(task->pid);
	u64 ns;

	if (!start || start->tid != task->pid || !start->ns)
		start = bpf_task_storage_get(&start_times, task, 0, 0);
	if (!start || !start->ns) {
		count_drop(DROP_NO_START_TIME);
		return 0;
	}
	ns = time_since(start, shift);
	start->ns = 0;
	return ns;
}

/* Clears the thread's entry time unused, for a call that is not counted:
 * left there, it would be taken by a later call whose entry was not stamped
 * (a filter verdict that changed within the call, a call seccomp refused
 * before sys_enter). A free slot is claimed, so that the next clear is as
 * cheap; task storage is cleared only where another thread's call holds the
 * slot, the one case in which store_start_time puts a time there. */
static __always_inline void forget_start_time(struct task_struct *task)
{
	struct start_slot *slot, *start;

	if (!measure_latency)
		return;
	slot = start_slot_of(task->pid);
	if (slot && (slot->tid == task->pid || !slot->ns)) {
		slot->tid = task->pid;
		slot->ns = 0;
	}
	/* Also where the slot was free: the call's time may be in task storage
	 * from an entry while another thread held the slot (found by review: a
	 * stale time there would be taken by a later unstamped call, and shown
	 * by in_flight as a call that never ends). Only uncounted calls get
	 * here, so the counted path pays nothing. */
	start = bpf_task_storage_get(&start_times, task, 0, 0);
	if (start)
		start->ns = 0;
}

/* A thread that dies in a call (exit_group) frees its slot here. */
static __always_inline void release_start_slot(struct task_struct *task)
{
	struct start_slot *slot;

	if (!measure_latency)
		return;
	slot = start_slot_of(task->pid);
	if (slot && slot->tid == task->pid)
		slot->ns = 0;
}

static __always_inline void count_exit(struct pt_regs *regs, long nr, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct syscall_stats_value *stats;
	struct filter_settings_value *fs;
	struct syscall_key key;
	u64 ns = 0;
	u32 slot = 0, shift = latency_sample_shift;

	key.tgid = task->tgid;
	if (key.tgid == self_tgid)
		return;
	fs = bpf_map_lookup_elem(&filter_settings, &slot);
	key.exec_id = generation_of(task);
	key.abi = task_abi(task);
	/* rt_sigreturn restores the interrupted context, whose syscall number
	 * signal delivery set to -1: that is the only common -1 at exit. */
	if (nr == -1)
		nr = key.abi == ABI_COMPAT ? RT_SIGRETURN_COMPAT : RT_SIGRETURN;
	key.nr = nr >= 0 && nr < 0xFFFF ? (u16)nr : 0xFFFF;
	if (ret == 0 && is_fork_child_return(key.abi, nr))
		return;
	if (process_filtered_out(fs, key.tgid) || syscall_filtered_out(fs, key.abi, nr)) {
		forget_start_time(task);
		return;
	}

	if (measure_latency)
		ns = take_start_time(task, &shift);

	stats = call_slot_bits ? call_slot_of(&key, 0) : NULL;
	if (!stats)
		stats = bpf_map_lookup_elem(&syscall_stats, &key);
	if (!stats) {
		struct syscall_stats_value zero = {};
		bool created = false;

		stats = create_counter(&syscall_stats, &key, &zero, &created);
		if (created)
			announce_entry(&key, 0);
		if (!stats)
			stats = group_stats_of(task, &key, nr);
	}
	if (stats) {
		stats->calls += 1;
		stats->ns += ns << shift; /* sampled: an estimate */
		if (ret > 0 && moves_bytes(key.abi, nr))
			stats->bytes += ret;
	}

	if (measure_latency && ns) {
		struct latency_hist_value *hist;

		slot = array_slot(key.abi, nr);
		hist = bpf_map_lookup_elem(&latency_hist, &slot);
		if (hist) {
			u64 b = latency_bucket(ns);

			/* Bound the register the access uses, whatever the compiler copied. */
			asm volatile("" : "+r"(b));
			if (b < HIST_BUCKETS)
				hist->buckets[b] += 1ULL << shift;
		}
	}

	if (ret < 0 && ret >= -MAX_ERRNO)
		record_error(task, &key, ret);

	if (fs && fs->notable && is_notable(fs, ret, ns))
		send_notable(fs, regs, task, &key, nr, ret, ns);
}

static __always_inline void stamp_enter(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u32 zero = 0;
	u64 j;

	if (task->tgid == self_tgid)
		return;
	if (process_filtered_out(bpf_map_lookup_elem(&filter_settings, &zero), task->tgid)) {
		forget_start_time(task);
		return;
	}
	if (!latency_sample_mask) {
		store_start_time(task, bpf_ktime_get_ns(), 0);
		return;
	}
	/* Sampled: a timed call's stamp keeps the low bit for UNTIMED. */
	j = bpf_jiffies64();
	if (bpf_get_prandom_u32() & latency_sample_mask)
		store_start_time(task, j << 1 | UNTIMED, (u32)j);
	else
		store_start_time(task, bpf_ktime_get_ns() & ~UNTIMED, (u32)j);
}

#if defined(__TARGET_ARCH_x86)
#define SYSCALL_NR(regs)      ((long)(regs)->orig_ax)
#define SYSCALL_NR_READ(regs) ((long)BPF_CORE_READ(regs, orig_ax))
#else
#define SYSCALL_NR(regs)      ((long)(regs)->syscallno)
#define SYSCALL_NR_READ(regs) ((long)BPF_CORE_READ(regs, syscallno))
#endif

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter)
{
	stamp_enter();
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	count_exit(regs, SYSCALL_NR(regs), ret);
	return 0;
}

/* Raw tracepoint twins: the regs pointer is untyped there, so it is read
 * through bpf_probe_read_kernel (BPF_CORE_READ). */
SEC("raw_tracepoint/sys_enter")
int sys_enter_raw(struct bpf_raw_tracepoint_args *ctx)
{
	stamp_enter();
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int sys_exit_raw(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];

	count_exit(regs, SYSCALL_NR_READ(regs), (long)ctx->args[1]);
	return 0;
}

static __always_inline u8 filter_match(void *map, void *key)
{
	u8 *m = bpf_map_lookup_elem(map, key);
	return m ? *m : 0;
}

/* Decides, when a process starts, execs, renames or moves, whether it is
 * counted, so that the per-syscall path needs one lookup by tgid. The daemon
 * applies the same rules to the processes that were running before it.
 * changed is what the event can change (DIM_*; fork and exec judge anew,
 * sysobsd stat lists its command at exec): a rename or a move that no list
 * depends on leaves the verdict alone, and cannot race with another hook
 * judging the same process from an older name or cgroup (a move read the
 * old name, a rename wrote its verdict, the move overwrote it). */
static __always_inline void evaluate_process(struct task_struct *task, const char *comm,
                                             u32 changed)
{
	char name[COMM_LEN] = {};
	struct filter_settings_value *fs;
	struct cgroup *cg;
	u32 zero = 0, tgid;
	u8 m, included = 0, excluded = 0, one = 1;
	bool counted, listed;

	fs = bpf_map_lookup_elem(&filter_settings, &zero);
	if (!fs || fs->process_filter == FILTER_OFF || !(fs->dims & changed))
		return;
	tgid = BPF_CORE_READ(task, tgid);

	m = filter_match(&filter_pids, &tgid);
	if (m & MATCH_INCLUDE)
		included |= DIM_PID;
	excluded |= m & MATCH_EXCLUDE;

	bpf_probe_read_kernel_str(name, sizeof(name), comm);
	m = filter_match(&filter_comms, name);
	if (m & MATCH_INCLUDE)
		included |= DIM_COMM;
	excluded |= m & MATCH_EXCLUDE;

	/* A cgroup filter matches the cgroup or any ancestor, by id or by name
	 * (units by name: a restarted unit's new cgroup still matches). */
	cg = task_cgroup(task);
	for (int i = 0; i < CGROUP_DEPTH && cg; i++) {
		char cname[CGROUP_NAME_LEN] = {};
		u64 id = BPF_CORE_READ(cg, kn, id);

		m = filter_match(&filter_cgroup_ids, &id);
		bpf_probe_read_kernel_str(cname, sizeof(cname), BPF_CORE_READ(cg, kn, name));
		m |= filter_match(&filter_cgroup_names, cname);
		if (m & MATCH_INCLUDE)
			included |= DIM_CGROUP;
		excluded |= m & MATCH_EXCLUDE;
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
	}

	counted = (included & fs->include_mask) == fs->include_mask && !excluded;
	listed = fs->process_filter == FILTER_ONLY_LISTED ? counted : !counted;
	if (!listed) {
		/* A followed process tree only grows (sysobsd stat). */
		if (fs->follow_forks)
			return;
		bpf_map_delete_elem(&process_listed, &tgid);
		return;
	}
	if (bpf_map_update_elem(&process_listed, &tgid, &one, BPF_ANY) != 0)
		count_drop(DROP_LISTED_MAP_FULL);
}

/* sysobsd stat follows a process tree: a listed parent lists its child,
 * before the child's first call. */
static __always_inline void follow_fork(struct task_struct *parent, struct task_struct *child)
{
	struct filter_settings_value *fs;
	u32 zero = 0, ptgid, ctgid;
	u8 one = 1;

	fs = bpf_map_lookup_elem(&filter_settings, &zero);
	if (!fs || !fs->follow_forks || fs->process_filter != FILTER_ONLY_LISTED)
		return;
	ptgid = parent->tgid;
	if (!bpf_map_lookup_elem(&process_listed, &ptgid))
		return;
	ctgid = child->tgid;
	if (bpf_map_update_elem(&process_listed, &ctgid, &one, BPF_ANY) != 0)
		count_drop(DROP_LISTED_MAP_FULL);
}

static __always_inline void submit_lifecycle(struct lifecycle_event *ev)
{
	if (!lifecycle_wakeup_bytes)
		bpf_ringbuf_submit(ev, 0);
	else if (bpf_ringbuf_query(&lifecycle, BPF_RB_AVAIL_DATA) < lifecycle_wakeup_bytes)
		bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
	else
		bpf_ringbuf_submit(ev, BPF_RB_FORCE_WAKEUP);
}

static __always_inline void send_lifecycle(u32 kind, struct task_struct *task, const char *comm)
{
	struct lifecycle_event *ev;

	ev = bpf_ringbuf_reserve(&lifecycle, sizeof(*ev), 0);
	if (!ev) {
		count_drop(DROP_RINGBUF_FULL);
		return;
	}
	ev->kind = kind;
	ev->tgid = BPF_CORE_READ(task, tgid);
	ev->exec_id = generation_of(task);
	ev->pad = 0;
	ev->cgroup_id = BPF_CORE_READ(task_cgroup(task), kn, id);
	bpf_probe_read_kernel_str(ev->comm, sizeof(ev->comm), comm);
	submit_lifecycle(ev);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(process_fork, struct task_struct *parent, struct task_struct *child)
{
	/* Threads count toward their process: only new thread groups matter. */
	if (child->pid != child->tgid || child->tgid == self_tgid)
		return 0;
	evaluate_process(child, child->comm, DIM_PID | DIM_COMM | DIM_CGROUP);
	follow_fork(parent, child);
	send_lifecycle(LIFECYCLE_FORK, child, child->comm);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(process_exec, struct task_struct *task, int old_pid)
{
	if (task->tgid == self_tgid)
		return 0;
	/* A thread other than the leader that execs takes the leader's id: its
	 * execve's entry time moves along, to where its exit will look. */
	if (measure_latency && old_pid != task->pid) {
		struct start_slot *old = start_slot_of(old_pid);

		if (old && old->tid == (u32)old_pid && old->ns) {
			struct start_slot *start = bpf_task_storage_get(
			        &start_times, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
			if (start)
				*start = *old;
			old->ns = 0;
		}
	}
	evaluate_process(task, task->comm, DIM_PID | DIM_COMM | DIM_CGROUP);
	send_lifecycle(LIFECYCLE_EXEC, task, task->comm);
	return 0;
}

/* Execve renames too; its record is process_exec's, with the new exec_id. */
static __always_inline bool current_is_in_execve(void)
{
	struct task_struct *current = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(current);
	long nr = SYSCALL_NR_READ(regs);

	if (task_abi(current) == ABI_COMPAT) {
#if defined(__TARGET_ARCH_x86)
		return nr == 11 || nr == 358; /* i386 execve, execveat */
#else
		return nr == 11 || nr == 387; /* arm execve, execveat */
#endif
	}
#if defined(__TARGET_ARCH_x86)
	return nr == 59 || nr == 322;
#else
	return nr == 221 || nr == 281;
#endif
}

/* The state of a thread inside a call, from its TASK_* bits. */
static __always_inline u32 thread_state_of(struct task_struct *task)
{
	u32 st;

	if (bpf_core_field_exists(task->__state))
		st = BPF_CORE_READ(task, __state);
	else
		st = (u32)BPF_CORE_READ((struct task_struct___pre514 *)task, state);
	if (st & 0x0002) /* TASK_UNINTERRUPTIBLE, TASK_KILLABLE */
		return THREAD_UNINTERRUPTIBLE;
	if (st & 0x0001) /* TASK_INTERRUPTIBLE */
		return THREAD_SLEEPING;
	if (st & 0x800c) /* __TASK_STOPPED, __TASK_TRACED, TASK_FROZEN (freezer, suspend; 6.1+) */
		return THREAD_STOPPED;
	return THREAD_RUNNING;
}

/* A call's entry time for in_flight: an untimed call's (sampled latency)
 * from its entry's jiffies, within a tick, low bit set. */
static __always_inline u64 entry_time(u64 stamp)
{
	u64 ticks;

	if (!latency_sample_mask || !(stamp & UNTIMED))
		return stamp;
	ticks = bpf_jiffies64() - (stamp >> 1);
	return (bpf_ktime_get_ns() - ticks * tick_ns) | UNTIMED;
}

/* iter/task: every thread now inside a syscall whose entry sys_enter
 * stamped (a counted process; latency measured), with the call, its
 * arguments, its state and its entry time. Run by the daemon at each scrape
 * (nothing is added per syscall); needs bpf_task_pt_regs (Linux 5.15). */
SEC("iter/task")
int in_flight(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct in_flight_record r = {};
	struct filter_settings_value *fs;
	struct start_slot *slot;
	struct pt_regs *regs;
	u32 zero = 0;
	u64 stamp;
	long nr;

	if (!task || task->tgid == self_tgid)
		return 0;
	slot = start_slot_of(task->pid);
	if (!slot || slot->tid != task->pid || !slot->ns)
		slot = bpf_task_storage_get(&start_times, task, 0, 0);
	if (!slot)
		return 0;
	stamp = slot->ns; /* once: the call may return meanwhile */
	if (!stamp)
		return 0;
	r.start_ns = entry_time(stamp);
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return 0;
	nr = SYSCALL_NR_READ(regs);
	r.abi = task_abi(task);
	fs = bpf_map_lookup_elem(&filter_settings, &zero);
	/* A process excluded since its call began (a SIGHUP) is not shown. */
	if (process_filtered_out(fs, task->tgid) || syscall_filtered_out(fs, r.abi, nr))
		return 0;
	r.nr = nr >= 0 && nr < 0xFFFF ? (u16)nr : 0xFFFF;
	for (int i = 0; i < 6; i++)
		r.args[i] = SYSCALL_ARG(regs, i);
	r.tgid = task->tgid;
	r.tid = task->pid;
	r.exec_id = generation_of(task);
	r.state = thread_state_of(task);
	BPF_CORE_READ_STR_INTO(&r.comm, task, comm);
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

SEC("tp_btf/task_rename")
int BPF_PROG(task_rename, struct task_struct *task, const char *comm)
{
	if (task->pid != task->tgid || task->tgid == self_tgid)
		return 0;
	if (current_is_in_execve())
		return 0;
	evaluate_process(task, comm, DIM_COMM);
	send_lifecycle(LIFECYCLE_RENAME, task, comm);
	return 0;
}

SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(cgroup_attach, struct cgroup *dst, const char *path, struct task_struct *task)
{
	/* Fires for every hierarchy; only a move on cgroup2 changes attribution. */
	if (task->pid != task->tgid || task->tgid == self_tgid || task_cgroup(task) != dst)
		return 0;
	evaluate_process(task, task->comm, DIM_CGROUP);
	send_lifecycle(LIFECYCLE_CGROUP, task, task->comm);
	return 0;
}

/* A removed cgroup runs no more calls: the daemon folds and frees the entries
 * that counted its calls by process name (group_stats, group_errors). */
SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct lifecycle_event *ev;

	/* Fires for every hierarchy, and each numbers its cgroups on its own: a
	 * v1 id may equal a cgroup2 id. Every task's dfl_cgrp is on cgroup2. */
	if (cgrp->root != BPF_CORE_READ(task_cgroup(task), root))
		return 0;
	ev = bpf_ringbuf_reserve(&lifecycle, sizeof(*ev), 0);
	if (!ev) {
		count_drop(DROP_RINGBUF_FULL);
		return 0;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->kind = LIFECYCLE_CGROUP_GONE;
	ev->cgroup_id = BPF_CORE_READ(cgrp, kn, id);
	submit_lifecycle(ev);
	return 0;
}

/* A new cgroup's path, from the moment it exists: a oneshot unit or a short
 * container often runs and is removed within a fold interval, before the
 * daemon, naming its calls, could find it in the tree. */
SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cgroup_new_event *ev;

	if (cgrp->root != BPF_CORE_READ(task_cgroup(task), root)) /* cgroup v1: see cgroup_rmdir */
		return 0;
	ev = bpf_ringbuf_reserve(&lifecycle, sizeof(*ev), 0);
	if (!ev) {
		count_drop(DROP_RINGBUF_FULL);
		return 0;
	}
	__builtin_memset(&ev->head, 0, sizeof(ev->head));
	ev->head.kind = LIFECYCLE_CGROUP_NEW;
	ev->head.cgroup_id = BPF_CORE_READ(cgrp, kn, id);
	/* A path cut short would name another cgroup: none rather than that. */
	if (bpf_probe_read_kernel_str(ev->path, sizeof(ev->path), path) >= CGROUP_PATH_LEN)
		ev->path[0] = 0;
	ev->path[CGROUP_PATH_LEN - 1] = 0;
	submit_lifecycle(&ev->head);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(process_exit, struct task_struct *task)
{
	struct task_struct *leader;
	u32 tgid = task->tgid;

	release_start_slot(task);
	if (tgid == self_tgid)
		return 0;
	/* signal->live drops before this tracepoint: 0 means the last thread. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	leader = task->group_leader;
	bpf_map_delete_elem(&process_listed, &tgid);
	send_lifecycle(LIFECYCLE_EXIT, task, leader->comm);
	return 0;
}
