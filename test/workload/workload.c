/* workload: a deterministic syscall mix for sysobsd's integration tests.
 *
 * Every counted call is a raw syscall(2), so libc adds none of them; a
 * static build makes no openat, write, getppid or nanosleep of its own.
 *
 *   workload basic NAME N M K   prctl(PR_SET_NAME, NAME); N writes to /dev/null;
 *                               M openat of a missing file (ENOENT); K writes to
 *                               /dev/full (ENOSPC). openat calls: M + 2.
 *   workload threads NAME T N   T threads, each N getppid calls.
 *   workload exec NAME N PATH M N getppid calls as NAME, then execve(PATH) as
 *                               "PATH getppid-only M".
 *   workload exec-hold NAME N PATH M  the same, but exec'd as "PATH spin NAME2 M"
 *                               (NAME2 the base name of PATH): it then waits for
 *                               stdin to close.
 *   workload getppid-only M     M getppid calls under the exec'd name.
 *   workload thread-exec PATH M a second thread execve(PATH) as "PATH getppid-only M"
 *                               (so the exec'ing thread takes the leader's id).
 *   workload sleepers NAME T MS [report]
 *                               T threads, each one nanosleep of MS milliseconds,
 *                               thread i starting i ms after the first (spinning,
 *                               no syscalls): all T sleep at once.
 *   workload sleep NAME MS [report]
 *                               one nanosleep of MS milliseconds; with report,
 *                               prints the ns it took, timed around the call.
 *   workload naps NAME N MS     N nanosleeps of MS milliseconds one after another;
 *                               prints the ns they took, timed around each call.
 *   workload vfork NAME MS      vfork; the child sleeps MS milliseconds and exits
 *                               while the parent waits in vfork (uninterruptible).
 *   workload spin NAME N        N getppid calls, then waits for stdin to close.
 *   workload mix NAME           4 threads x 1000 getppid, a child making 50
 *                               writes to /dev/null and 5 failing openat, 7
 *                               failing openat in the parent; waits for the child.
 *   workload churn NAME N K     N short-lived children, 64 at a time, each making
 *                               K getppid calls and exiting.
 *   workload flip SKIP KEEP MS  renames itself SKIP, sleeps MS milliseconds, renames
 *                               itself KEEP: under a filter that excludes SKIP, the
 *                               first prctl's exit and the second's entry are not
 *                               counted.
 *   workload gated NAME N       for each byte read from stdin, N getppid calls;
 *                               exits when stdin closes. Lets a test move the
 *                               process or reload the daemon between rounds.
 *   workload faults N           for fault injection: the main thread, a second
 *                               thread and a forked child each make N openat of
 *                               /dev/null (closing those that open) and N empty
 *                               write(2) to stderr, then each prints one line
 *                               by writev: "ROLE openat ok A failed F errno E
 *                               write ok B failed G errno H" (E, H: the last
 *                               errno, 0 if none); ROLE is main, thread, child.
 *                               The thread blocks SIGCHLD (see faults_thread).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void name_self(const char *name)
{
	if (prctl(PR_SET_NAME, name, 0, 0, 0) != 0) {
		perror("prctl");
		exit(2);
	}
}

static long getppid_n(long n)
{
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	return n;
}

static void *thread_main(void *arg)
{
	getppid_n(*(long *)arg);
	return NULL;
}

static int basic(const char *name, long n, long m, long k)
{
	char c = 'x';
	name_self(name);
	int devnull = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_WRONLY);
	int devfull = syscall(SYS_openat, AT_FDCWD, "/dev/full", O_WRONLY);
	if (devnull < 0 || devfull < 0) {
		perror("open /dev/null or /dev/full");
		return 2;
	}
	for (long i = 0; i < n; i++)
		syscall(SYS_write, devnull, &c, 1);
	for (long i = 0; i < m; i++)
		syscall(SYS_openat, AT_FDCWD, "/nonexistent/sysobsd-workload", O_RDONLY);
	for (long i = 0; i < k; i++)
		syscall(SYS_write, devfull, &c, 1);
	return 0;
}

static int threads(const char *name, long t, long n)
{
	pthread_t tids[64];
	if (t < 1 || t > 64)
		return 2;
	name_self(name);
	for (long i = 0; i < t; i++)
		if (pthread_create(&tids[i], NULL, thread_main, &n) != 0)
			return 2;
	for (long i = 0; i < t; i++)
		pthread_join(tids[i], NULL);
	return 0;
}

static int do_exec(const char *name, long n, const char *path, const char *m, int hold)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	name_self(name);
	getppid_n(n);
	char *argv_once[] = {(char *)path, "getppid-only", (char *)m, NULL};
	char *argv_hold[] = {(char *)path, "spin", (char *)base, (char *)m, NULL};
	char **argv = hold ? argv_hold : argv_once;
	char *envp[] = {NULL};
	syscall(SYS_execve, path, argv, envp);
	perror("execve");
	return 2;
}

struct exec_args {
	const char *path;
	const char *m;
};

static void *exec_thread(void *arg)
{
	struct exec_args *a = arg;
	char *argv[] = {(char *)a->path, "getppid-only", (char *)a->m, NULL};
	char *envp[] = {NULL};
	syscall(SYS_execve, a->path, argv, envp);
	perror("execve");
	exit(2);
}

static int thread_exec(const char *path, const char *m)
{
	struct exec_args a = {path, m};
	pthread_t tid;
	if (pthread_create(&tid, NULL, exec_thread, &a) != 0)
		return 2;
	pthread_join(tid, NULL); /* the exec ends this thread first */
	return 2;
}

static long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* the vDSO: no syscall */
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

struct sleeper {
	long start_ns; /* spin until then */
	long ms;
	long took_ns; /* the nanosleep timed from outside */
};

static void *sleeper_main(void *arg)
{
	struct sleeper *s = arg;
	struct timespec ts = {.tv_sec = s->ms / 1000, .tv_nsec = (s->ms % 1000) * 1000000L};
	long before;
	while (now_ns() < s->start_ns)
		;
	before = now_ns();
	syscall(SYS_nanosleep, &ts, NULL);
	s->took_ns = now_ns() - before;
	return NULL;
}

static int sleepers(const char *name, long t, long ms, int report)
{
	pthread_t tids[64];
	struct sleeper s[64];
	long first;
	if (t > 64)
		return 2;
	name_self(name);
	first = now_ns() + 20000000L; /* after every thread is created */
	for (long i = 0; i < t; i++) {
		s[i].start_ns = first + i * 1000000L;
		s[i].ms = ms;
		if (pthread_create(&tids[i], NULL, sleeper_main, &s[i]) != 0)
			return 2;
	}
	long took = 0;
	for (long i = 0; i < t; i++) {
		pthread_join(tids[i], NULL);
		took += s[i].took_ns;
	}
	if (report) /* the calls' time seen from outside: an upper bound of inside */
		printf("%ld\n", took);
	return 0;
}

static int naps(const char *name, long n, long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	long took = 0;

	name_self(name);
	for (long i = 0; i < n; i++) {
		long before = now_ns();
		if (syscall(SYS_nanosleep, &ts, NULL) != 0)
			return 2;
		took += now_ns() - before;
	}
	printf("%ld\n", took);
	return 0;
}

static int do_sleep(const char *name, long ms, int report)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	struct timespec before, after;
	int ret;

	name_self(name);
	clock_gettime(CLOCK_MONOTONIC, &before); /* the vDSO: no syscall */
	ret = syscall(SYS_nanosleep, &ts, NULL);
	clock_gettime(CLOCK_MONOTONIC, &after);
	if (report) /* the call's time seen from outside: an upper bound of inside */
		printf("%lld\n", (long long)(after.tv_sec - before.tv_sec) * 1000000000LL +
					  (after.tv_nsec - before.tv_nsec));
	return ret == 0 ? 0 : 2;
}

/* The parent waits in vfork, uninterruptible (killable), while its child
 * sleeps MS milliseconds and exits. */
static int do_vfork(const char *name, long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	pid_t pid;

	name_self(name);
	pid = vfork();
	if (pid == 0) {
		syscall(SYS_nanosleep, &ts, NULL);
		_exit(0);
	}
	return pid < 0 ? 2 : 0;
}

static int spin(const char *name, long n)
{
	char buf[1];
	name_self(name);
	getppid_n(n);
	while (read(0, buf, 1) > 0)
		;
	return 0;
}

static int flip(const char *skip, const char *keep, long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	name_self(skip);
	syscall(SYS_nanosleep, &ts, NULL);
	name_self(keep);
	return 0;
}

static int mix(const char *name)
{
	long each = 1000;
	pthread_t tids[4];
	name_self(name);
	pid_t child = fork();
	if (child < 0)
		return 2;
	if (child == 0)
		_exit(basic("mixchild", 50, 5, 0));
	for (int i = 0; i < 4; i++)
		if (pthread_create(&tids[i], NULL, thread_main, &each) != 0)
			return 2;
	for (int i = 0; i < 4; i++)
		pthread_join(tids[i], NULL);
	for (int i = 0; i < 7; i++)
		syscall(SYS_openat, AT_FDCWD, "/nonexistent/sysobsd-mix", O_RDONLY);
	int status;
	waitpid(child, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}

static int churn(const char *name, long n, long k)
{
	long started = 0, running = 0;
	name_self(name);
	while (started < n || running > 0) {
		while (started < n && running < 64) {
			pid_t pid = fork();
			if (pid < 0)
				return 2;
			if (pid == 0) {
				getppid_n(k);
				_exit(0);
			}
			started++;
			running++;
		}
		int status;
		if (wait(&status) > 0)
			running--;
	}
	return 0;
}

static int gated(const char *name, long n)
{
	char buf[1];
	name_self(name);
	while (read(0, buf, 1) > 0) {
		getppid_n(n);
		/* Tell the test this round is done. */
		if (write(1, "k", 1) != 1)
			return 2;
	}
	return 0;
}

struct fault_counts {
	const char *role;
	long n, open_ok, open_failed, open_errno, write_ok, write_failed, write_errno;
};

static void *faults_run(void *arg)
{
	struct fault_counts *c = arg;
	for (long i = 0; i < c->n; i++) {
		long fd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY);
		if (fd >= 0) {
			c->open_ok++;
			syscall(SYS_close, fd);
		} else {
			c->open_failed++;
			c->open_errno = errno;
		}
	}
	for (long i = 0; i < c->n; i++) {
		if (syscall(SYS_write, 2, "", 0) >= 0) {
			c->write_ok++;
		} else {
			c->write_failed++;
			c->write_errno = errno;
		}
	}
	char line[256];
	int len = snprintf(line, sizeof(line), "%s openat ok %ld failed %ld errno %ld write ok %ld failed %ld errno %ld\n",
			   c->role, c->open_ok, c->open_failed, c->open_errno, c->write_ok, c->write_failed, c->write_errno);
	struct iovec iov = {line, (size_t)len};
	syscall(SYS_writev, 1, &iov, 1);
	return NULL;
}

/*
 * The second thread blocks SIGCHLD, which it has no use for. Otherwise a
 * SIGCHLD from the child while the main thread blocks every signal (inside
 * pthread_create or fork) is queued and sent to this thread instead of being
 * dropped; if its call is then waiting for sysobsd inject's answer, the
 * signal interrupts the wait and the kernel restarts the call: one call more
 * under sysobsd than under strace (see "Signals during a wait" in
 * docs/dashboards-and-alerts.md).
 */
static void *faults_thread(void *arg)
{
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &chld, NULL);
	return faults_run(arg);
}

static int faults(long n)
{
	struct fault_counts main_counts = {"main", n}, thread_counts = {"thread", n}, child_counts = {"child", n};
	long child = fork(); /* arm64 has no fork syscall: glibc's clone */
	if (child == 0) {
		faults_run(&child_counts);
		_exit(0);
	}
	pthread_t tid;
	if (child < 0 || pthread_create(&tid, NULL, faults_thread, &thread_counts) != 0)
		return 2;
	faults_run(&main_counts);
	pthread_join(tid, NULL);
	int status;
	if (syscall(SYS_wait4, child, &status, 0, NULL) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return 2;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 6 && strcmp(argv[1], "basic") == 0)
		return basic(argv[2], atol(argv[3]), atol(argv[4]), atol(argv[5]));
	if (argc >= 5 && strcmp(argv[1], "threads") == 0)
		return threads(argv[2], atol(argv[3]), atol(argv[4]));
	if (argc >= 6 && strcmp(argv[1], "exec") == 0)
		return do_exec(argv[2], atol(argv[3]), argv[4], argv[5], 0);
	if (argc >= 6 && strcmp(argv[1], "exec-hold") == 0)
		return do_exec(argv[2], atol(argv[3]), argv[4], argv[5], 1);
	if (argc >= 3 && strcmp(argv[1], "getppid-only") == 0) {
		getppid_n(atol(argv[2]));
		return 0;
	}
	if (argc >= 4 && strcmp(argv[1], "thread-exec") == 0)
		return thread_exec(argv[2], argv[3]);
	if (argc >= 5 && strcmp(argv[1], "sleepers") == 0)
		return sleepers(argv[2], atol(argv[3]), atol(argv[4]), argc >= 6 && strcmp(argv[5], "report") == 0);
	if (argc >= 5 && strcmp(argv[1], "naps") == 0)
		return naps(argv[2], atol(argv[3]), atol(argv[4]));
	if (argc >= 4 && strcmp(argv[1], "sleep") == 0)
		return do_sleep(argv[2], atol(argv[3]), argc >= 5 && strcmp(argv[4], "report") == 0);
	if (argc >= 4 && strcmp(argv[1], "vfork") == 0)
		return do_vfork(argv[2], atol(argv[3]));
	if (argc >= 5 && strcmp(argv[1], "churn") == 0)
		return churn(argv[2], atol(argv[3]), atol(argv[4]));
	if (argc >= 5 && strcmp(argv[1], "flip") == 0)
		return flip(argv[2], argv[3], atol(argv[4]));
	if (argc >= 3 && strcmp(argv[1], "mix") == 0)
		return mix(argv[2]);
	if (argc >= 4 && strcmp(argv[1], "gated") == 0)
		return gated(argv[2], atol(argv[3]));
	if (argc >= 4 && strcmp(argv[1], "spin") == 0)
		return spin(argv[2], atol(argv[3]));
	if (argc >= 3 && strcmp(argv[1], "faults") == 0)
		return faults(atol(argv[2]));
	fprintf(stderr, "usage: see the comment at the top of workload.c\n");
	return 2;
}
