package integration

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/filter"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

func inFlight(comm, syscall, state string) string {
	return fmt.Sprintf(`sysobsd_syscalls_in_flight{comm=%q,state=%q,syscall=%q}`, comm, state, syscall)
}

func inFlightOldest(comm, syscall, state string) string {
	return fmt.Sprintf(`sysobsd_syscall_in_flight_oldest_seconds{comm=%q,state=%q,syscall=%q}`, comm, state, syscall)
}

// blockedInRead starts the workload as comm, blocked in read on a pipe
// (spin: no getppid, then read on stdin until it closes); end closes the
// pipe and waits for it to exit.
func (h *harness) blockedInRead(comm string) (began time.Time, pid int, end func() error) {
	h.t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		h.t.Fatal(err)
	}
	child := exec.Command(h.workload, "spin", comm, "0")
	child.Stdin = r
	began = time.Now()
	if err := child.Start(); err != nil {
		h.t.Fatal(err)
	}
	r.Close()
	end = func() error { w.Close(); return child.Wait() }
	h.t.Cleanup(func() { end() })
	return began, child.Process.Pid, end
}

// A thread blocked 6 s in read on a pipe is in flight at a scrape: its
// process, the read, sleeping, and an age of 6 s and more; once the pipe's
// writer closes, it is not.
func TestThreadBlockedInReadIsInFlightWithItsAge(t *testing.T) {
	h := start(t, setup{})
	comm := uniqueComm("rd")
	began, _, end := h.blockedInRead(comm)
	blocked, oldest := inFlight(comm, "read", "sleeping"), inFlightOldest(comm, "read", "sleeping")
	var got map[string]float64
	ok := testenv.Eventually(15*time.Second, func() bool {
		got = h.scrape()
		return got[blocked] == 1 && got[oldest] >= 6
	})
	if !ok {
		t.Fatalf("after %v: %s = %v, %s = %v; want 1 thread, at least 6 s", time.Since(began).Round(time.Millisecond), blocked, got[blocked], oldest, got[oldest])
	}
	if max := time.Since(began).Seconds(); got[oldest] > max {
		t.Errorf("%s = %v s, more than the %v s since cat started", oldest, got[oldest], max)
	}
	if err := end(); err != nil {
		t.Fatal(err)
	}
	h.expect(3*time.Second, map[string]float64{blocked: 0})
}

// With sampled latency a call not timed is dated from its entry's jiffies:
// in flight from its entry, within a tick, not from the first scrape that
// sees it (one call in 65536 is timed: this read is not, but for a chance of
// 1.5e-5, when it ages from its exact entry, which the bounds allow too).
// No scrape runs until the read has been blocked 2 s, by /proc.
func TestUntimedCallIsInFlightFromItsEntry(t *testing.T) {
	tick, err := loader.KernelTick()
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, setup{load: func(o *loader.Options) { o.LatencySampleEvery = 1 << 16 }})
	comm := uniqueComm("urd")
	began, pid, end := h.blockedInRead(comm)
	var blockedBy time.Time
	if !testenv.Eventually(10*time.Second, func() bool {
		blockedBy = time.Now()
		return inRead(pid)
	}) {
		t.Fatalf("process %d (%s) never blocked in read", pid, comm)
	}
	const wait = 2 * time.Second
	time.Sleep(wait - time.Since(blockedBy))
	blocked, oldest := inFlight(comm, "read", "sleeping"), inFlightOldest(comm, "read", "sleeping")
	got := h.expect(10*time.Second, map[string]float64{blocked: 1})
	if least := (wait - tick).Seconds(); got[oldest] < least {
		t.Errorf("%s = %v s at the first scrape, want at least %v s: the read's age from its entry", oldest, got[oldest], least)
	}
	if most := (time.Since(began) + tick).Seconds(); got[oldest] > most {
		t.Errorf("%s = %v s, more than the %v s since the process started and a tick", oldest, got[oldest], most)
	}
	if err := end(); err != nil {
		t.Fatal(err)
	}
	h.expect(3*time.Second, map[string]float64{blocked: 0})
}

// inRead: the process is asleep inside read(2) (/proc/PID/syscall: the
// call's number first).
func inRead(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b))
	read, _ := syscalls.Host().Number(syscalls.Native, "read")
	return len(fields) > 0 && fields[0] == fmt.Sprint(read)
}

// A vfork parent waits, uninterruptible, while its child runs: in flight in
// vfork, state uninterruptible, while the child sleeps in nanosleep.
func TestVforkParentIsInFlightUninterruptible(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("vfork is a syscall of its own on x86_64 only; arm64 has clone")
	}
	h := start(t, setup{})
	comm := uniqueComm("vf")
	child := exec.Command(h.workload, "vfork", comm, "4000")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Wait()
	h.expect(10*time.Second, map[string]float64{
		inFlight(comm, "vfork", "uninterruptible"): 1,
		inFlight(comm, "nanosleep", "sleeping"):    1,
	})
	if err := child.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A process excluded while it is inside a call (a SIGHUP applying a new
// filter) leaves the in-flight gauges at once, not when its call returns.
func TestProcessExcludedMidCallLeavesInFlight(t *testing.T) {
	h := start(t, setup{})
	comm := uniqueComm("ex")
	h.blockedInRead(comm)
	blocked := inFlight(comm, "read", "sleeping")
	h.expect(10*time.Second, map[string]float64{blocked: 1})
	f, err := filter.Compile(config.Filters{Exclude: config.Match{Comms: []string{comm}}}, config.Events{}, syscalls.Host(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := filter.Apply(&h.probes.Maps, f, "/proc"); err != nil {
		t.Fatal(err)
	}
	h.expect(5*time.Second, map[string]float64{blocked: 0})
}
