// Package testenv holds what tests share about their environment: whether
// they may load BPF, and how to build the workload programs.
package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the tests run in CI, where a skip is a failure.
func InCI() bool { return os.Getenv("CI") == "true" }

// Skip skips the test with reason, or fails it in CI: CI must run everything.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true: cannot skip: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips tests that load BPF programs when not run as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root to load BPF programs (run `sudo make test`)")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		Skip(t, "needs kernel BTF at /sys/kernel/btf/vmlinux")
	}
}

// RepoRoot is the module root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// WorkloadEnv names a prebuilt workload binary, for machines without gcc
// (the kernel-test VM).
const WorkloadEnv = "SYSOBSD_WORKLOAD"

// BuildWorkload compiles test/workload/workload.c statically into dir and
// returns its path. Static, so the libc adds no openat or write of its own.
func BuildWorkload(t testing.TB, dir string) string {
	t.Helper()
	if prebuilt := os.Getenv(WorkloadEnv); prebuilt != "" {
		return prebuilt
	}
	out := filepath.Join(dir, "workload")
	src := filepath.Join(RepoRoot(), "test", "workload", "workload.c")
	cmd := exec.Command("gcc", "-O2", "-static", "-pthread", "-o", out, src)
	if msg, err := cmd.CombinedOutput(); err != nil {
		Skip(t, "cannot build the workload (needs gcc and static glibc, Debian: build-essential): "+err.Error()+": "+string(msg))
	}
	return out
}

// BuildWorkload32 compiles the workload as a 32-bit (i386) static program,
// for the compat-ABI tests; amd64 only (Debian: gcc-multilib).
func BuildWorkload32(t testing.TB, dir string) string {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("32-bit compat workloads are built on amd64 only")
	}
	if prebuilt := os.Getenv(WorkloadEnv + "32"); prebuilt != "" {
		RequireCompatExec(t, prebuilt)
		return prebuilt
	}
	out := filepath.Join(dir, "workload32")
	src := filepath.Join(RepoRoot(), "test", "workload", "workload.c")
	cmd := exec.Command("gcc", "-m32", "-O2", "-static", "-pthread", "-o", out, src)
	if msg, err := cmd.CombinedOutput(); err != nil {
		Skip(t, "cannot build the 32-bit workload (Debian: gcc-multilib): "+err.Error()+": "+string(msg))
	}
	RequireCompatExec(t, out)
	return out
}

// RequireCompatEnv, set to 1, makes a host that refuses 32-bit executables
// fail the compat tests instead of skipping them: the kernel-test VM sets it,
// since its kernel is known to run them.
const RequireCompatEnv = "SYSOBSD_REQUIRE_COMPAT"

// RequireCompatExec runs the 32-bit program once with no work and skips the
// test, CI included, when the kernel refuses to execute it: some hosts are
// built with IA32 emulation but boot with it off (ia32_emulation=0), and the
// package that builds the program is there all the same. The test runs in
// the VM of `make kernel-test` instead.
func RequireCompatExec(t testing.TB, program string) {
	t.Helper()
	err := exec.Command(program, "getppid-only", "0").Run()
	if err == nil {
		return
	}
	if !errors.Is(err, syscall.ENOEXEC) {
		t.Fatalf("run the 32-bit workload: %v", err)
	}
	reason := "this kernel refuses 32-bit executables (exec format error: IA32 emulation off or not built; ia32_emulation=1 on the kernel command line turns it on); the compat test runs in `make kernel-test`"
	if os.Getenv(RequireCompatEnv) == "1" {
		t.Fatalf("%s=1: %s", RequireCompatEnv, reason)
	}
	t.Skip(reason)
}

// Eventually polls cond every 10 ms until it holds or timeout passes.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	daemonOnce sync.Once
	daemonPath string
	daemonErr  error
)

// BuildDaemon builds cmd/sysobsd once per test binary, static and
// stripped as `make build` does, and returns its path.
func BuildDaemon(t testing.TB) string {
	t.Helper()
	daemonOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sysobsd-bin")
		if err != nil {
			daemonErr = err
			return
		}
		// Tests run it as other users too (setpriv, a DynamicUser sandbox).
		if err := os.Chmod(dir, 0o755); err != nil {
			daemonErr = err
			return
		}
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = "/usr/local/go/bin/go"
		}
		daemonPath = filepath.Join(dir, "sysobsd")
		cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", daemonPath, "./cmd/sysobsd")
		cmd.Dir = RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			daemonErr = fmt.Errorf("go build ./cmd/sysobsd: %v: %s", err, out)
		}
	})
	if daemonErr != nil {
		t.Fatal(daemonErr)
	}
	return daemonPath
}

// FreeAddress is a loopback address with a port nobody listens on, below
// the kernel's ephemeral range: a port the kernel handed out (port 0) is
// handed out again to the next listener that asks, often another test
// package's server started in parallel, before the daemon given it binds.
// Only another FreeAddress can pick the same port, at random among
// thousands.
func FreeAddress(t testing.TB) string {
	t.Helper()
	low := ephemeralLow()
	const first = 10000
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", first+rand.IntN(low-first))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatalf("no free port among %d..%d in 100 tries", first, low-1)
	return ""
}

// ephemeralLow is the first port of the kernel's ephemeral range
// (net.ipv4.ip_local_port_range); Linux's default where it cannot be read,
// or where it leaves too little room below (the ports picked may then be
// ephemeral ones, as with port 0).
func ephemeralLow() int {
	const linuxDefault = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return linuxDefault
	}
	var low, high int
	if _, err := fmt.Sscan(string(b), &low, &high); err != nil || low < 11000 {
		return linuxDefault
	}
	return low
}

// Inode is the inode number of path: for a cgroup2 directory, the cgroup's id.
func Inode(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}
