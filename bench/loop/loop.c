/* loop: the syscall-heavy loops of sysobsd's overhead benchmark (bench/run.sh).
 *
 * Every measured call is a raw syscall(2); the binary is built static, so
 * the loops make no other calls while timed. Times are taken with
 * clock_gettime(CLOCK_MONOTONIC), which the vDSO answers without a syscall.
 *
 *   loop getppid N       N getppid calls.
 *   loop write N         N one-byte writes to /dev/null.
 *   loop eagain N        N one-byte reads from an empty non-blocking pipe, each
 *                        failing with EAGAIN (a server's commonest error).
 *   loop mix N           N calls of 8 different cheap syscalls in turn (getppid,
 *                        getuid, getgid, geteuid, getegid, getpid, gettid,
 *                        getpgid): a server's spread of syscall numbers, each
 *                        with its own counters, without its network stack.
 *   loop mutex N         4 threads taking a futex-based lock in strict turns
 *                        (each unlock hands it to the next thread and wakes
 *                        it), N lock+unlock operations in all; every futex
 *                        call is counted.
 *   loop hold NAME N     prctl(PR_SET_NAME, NAME), N getppid calls, one
 *                        write to /dev/null and one failing openat (ENOENT),
 *                        writes one byte to stdout, then blocks until stdin
 *                        closes (the scale runs' long-lived processes).
 *   loop burst N         N getppid calls, then exits (the scale runs'
 *                        short-lived processes; name them by the path they
 *                        are executed under).
 *   loop spin SECONDS    getppid calls for SECONDS seconds (the sustained rate).
 *
 * The measuring modes print one line:
 *   ns_per_op=<wall ns per op> ops=<n> syscalls=<n> wall_ns=<n> cpu_ns=<n>
 * cpu_ns is the process's CPU time over the timed part (user + system of
 * all its threads), from clock_gettime(CLOCK_PROCESS_CPUTIME_ID).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MUTEX_THREADS 4
/* Spins while holding the lock. */
#define CRITICAL_WORK 100

static int64_t now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void report(long ops, long syscalls, int64_t wall, int64_t cpu)
{
	printf("ns_per_op=%.2f ops=%ld syscalls=%ld wall_ns=%lld cpu_ns=%lld\n",
	       (double)wall / (double)ops, ops, syscalls, (long long)wall, (long long)cpu);
}

static int do_getppid(long n)
{
	/* Warm up: page in, settle the frequency a little. */
	for (long i = 0; i < n / 20; i++)
		syscall(SYS_getppid);
	int64_t c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID), t0 = now_ns(CLOCK_MONOTONIC);
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	int64_t t1 = now_ns(CLOCK_MONOTONIC), c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	report(n, n, t1 - t0, c1 - c0);
	return 0;
}

static int do_write(long n)
{
	char c = 'x';
	int fd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_WRONLY);
	if (fd < 0) {
		perror("open /dev/null");
		return 2;
	}
	for (long i = 0; i < n / 20; i++)
		syscall(SYS_write, fd, &c, 1);
	int64_t c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID), t0 = now_ns(CLOCK_MONOTONIC);
	for (long i = 0; i < n; i++)
		syscall(SYS_write, fd, &c, 1);
	int64_t t1 = now_ns(CLOCK_MONOTONIC), c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	report(n, n, t1 - t0, c1 - c0);
	return 0;
}

static int do_eagain(long n)
{
	char c;
	int fds[2];
	if (pipe2(fds, O_NONBLOCK) != 0) {
		perror("pipe2");
		return 2;
	}
	for (long i = 0; i < n / 20; i++)
		syscall(SYS_read, fds[0], &c, 1);
	int64_t c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID), t0 = now_ns(CLOCK_MONOTONIC);
	for (long i = 0; i < n; i++)
		syscall(SYS_read, fds[0], &c, 1);
	int64_t t1 = now_ns(CLOCK_MONOTONIC), c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	report(n, n, t1 - t0, c1 - c0);
	return 0;
}

static void mix_round(void)
{
	syscall(SYS_getppid);
	syscall(SYS_getuid);
	syscall(SYS_getgid);
	syscall(SYS_geteuid);
	syscall(SYS_getegid);
	syscall(SYS_getpid);
	syscall(SYS_gettid);
	syscall(SYS_getpgid, 0);
}

static int do_mix(long n)
{
	long rounds = n / 8;
	for (long i = 0; i < rounds / 20; i++)
		mix_round();
	int64_t c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID), t0 = now_ns(CLOCK_MONOTONIC);
	for (long i = 0; i < rounds; i++)
		mix_round();
	int64_t t1 = now_ns(CLOCK_MONOTONIC), c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	report(rounds * 8, rounds * 8, t1 - t0, c1 - c0);
	return 0;
}

/* The lock is handed from thread to thread in turn: each thread sleeps in
 * FUTEX_WAIT on its own word until the previous one sets it and wakes it
 * with FUTEX_WAKE. Strict turns make the threads contend on every op, also
 * on a busy 2-CPU machine (where an ordinary mutex mostly runs one thread
 * per time slice and rarely calls futex). Raw futex calls, each counted. */
static _Atomic unsigned turn_word[MUTEX_THREADS];
static _Atomic long futex_calls;
static long shared_counter;
static long ops_per_thread;
static pthread_barrier_t start_barrier;

static long futex(_Atomic unsigned *word, int op, unsigned val)
{
	return syscall(SYS_futex, word, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

static void *mutex_thread(void *arg)
{
	long me = (long)arg, calls = 0;
	_Atomic unsigned *mine = &turn_word[me], *next = &turn_word[(me + 1) % MUTEX_THREADS];
	pthread_barrier_wait(&start_barrier);
	for (long i = 0; i < ops_per_thread; i++) {
		while (atomic_load(mine) == 0) {
			futex(mine, FUTEX_WAIT, 0);
			calls++;
		}
		atomic_store(mine, 0);
		for (int k = 0; k < CRITICAL_WORK; k++)
			__asm__ volatile("" ::: "memory");
		shared_counter++;
		atomic_store(next, 1);
		futex(next, FUTEX_WAKE, 1);
		calls++;
	}
	atomic_fetch_add(&futex_calls, calls);
	return NULL;
}

static int do_mutex(long n)
{
	pthread_t tids[MUTEX_THREADS];
	ops_per_thread = n / MUTEX_THREADS;
	atomic_store(&turn_word[0], 1);
	pthread_barrier_init(&start_barrier, NULL, MUTEX_THREADS + 1);
	for (int i = 0; i < MUTEX_THREADS; i++)
		if (pthread_create(&tids[i], NULL, mutex_thread, (void *)(long)i) != 0) {
			perror("pthread_create");
			return 2;
		}
	int64_t c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID), t0 = now_ns(CLOCK_MONOTONIC);
	pthread_barrier_wait(&start_barrier);
	for (int i = 0; i < MUTEX_THREADS; i++)
		pthread_join(tids[i], NULL);
	int64_t t1 = now_ns(CLOCK_MONOTONIC), c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	long ops = ops_per_thread * MUTEX_THREADS;
	if (shared_counter != ops) {
		fprintf(stderr, "mutex broken: counter %ld, want %ld\n", shared_counter, ops);
		return 3;
	}
	report(ops, atomic_load(&futex_calls), t1 - t0, c1 - c0);
	return 0;
}

static int do_hold(const char *name, long n)
{
	char c = 'x', buf[1];
	if (prctl(PR_SET_NAME, name, 0, 0, 0) != 0) {
		perror("prctl");
		return 2;
	}
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	int fd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_WRONLY);
	syscall(SYS_write, fd, &c, 1);
	syscall(SYS_openat, AT_FDCWD, "/nonexistent/sysobsd-bench", O_RDONLY);
	/* Tell the harness this process's calls are made. */
	if (syscall(SYS_write, 1, &c, 1) != 1)
		return 2;
	while (syscall(SYS_read, 0, buf, 1) > 0)
		;
	return 0;
}

static int do_burst(long n)
{
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	return 0;
}

static int do_spin(double seconds)
{
	int64_t end = now_ns(CLOCK_MONOTONIC) + (int64_t)(seconds * 1e9);
	int64_t c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID), t0 = now_ns(CLOCK_MONOTONIC), t1;
	long n = 0;
	do {
		for (int i = 0; i < 1000; i++)
			syscall(SYS_getppid);
		n += 1000;
		t1 = now_ns(CLOCK_MONOTONIC);
	} while (t1 < end);
	report(n, n, t1 - t0, now_ns(CLOCK_PROCESS_CPUTIME_ID) - c0);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 3 && strcmp(argv[1], "getppid") == 0)
		return do_getppid(atol(argv[2]));
	if (argc >= 3 && strcmp(argv[1], "write") == 0)
		return do_write(atol(argv[2]));
	if (argc >= 3 && strcmp(argv[1], "eagain") == 0)
		return do_eagain(atol(argv[2]));
	if (argc >= 3 && strcmp(argv[1], "mix") == 0)
		return do_mix(atol(argv[2]));
	if (argc >= 3 && strcmp(argv[1], "mutex") == 0)
		return do_mutex(atol(argv[2]));
	if (argc >= 4 && strcmp(argv[1], "hold") == 0)
		return do_hold(argv[2], atol(argv[3]));
	if (argc >= 3 && strcmp(argv[1], "burst") == 0)
		return do_burst(atol(argv[2]));
	if (argc >= 3 && strcmp(argv[1], "spin") == 0)
		return do_spin(atof(argv[2]));
	fprintf(stderr, "usage: see the comment at the top of loop.c\n");
	return 2;
}
