package loader

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

func monotonicNow(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// A thread blocked in read on a pipe is in a call that began when it
// blocked, on the clock CLOCK_MONOTONIC reads; once read returns it is not.
func TestCallStartedAtSeesAThreadBlockedInRead(t *testing.T) {
	testenv.RequireRoot(t)
	opts := DefaultOptions()
	opts.ExcludeTGID = 0 // the blocked thread is this process's own
	probes, err := Load(opts, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer probes.Close()

	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil { // blocking: read sleeps in the kernel
		t.Fatal(err)
	}
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])

	type blocked struct {
		tid    uint32
		before uint64 // just before read
	}
	ready := make(chan blocked, 1)
	returned := make(chan uint64, 1)
	var stop atomic.Bool
	go func() {
		runtime.LockOSThread() // the thread exits with the goroutine: no other goroutine runs on it
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		ready <- blocked{uint32(unix.Gettid()), uint64(ts.Nano())}
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // vDSO: no syscall
		var b [1]byte
		unix.Read(pipe[0], b[:])
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		returned <- uint64(ts.Nano())
		for !stop.Load() { // in user space, no call, until the test has looked
		}
	}()
	defer stop.Store(true)
	th := <-ready

	var started uint64
	var inCall bool
	if !testenv.Eventually(5*time.Second, func() bool {
		started, inCall, err = probes.CallStartedAt(th.tid)
		return err != nil || inCall
	}) {
		t.Fatalf("thread %d blocked in read: not seen in a call", th.tid)
	}
	if err != nil {
		t.Fatal(err)
	}
	seen := monotonicNow(t)
	// Between the clock read before the channel send and our look; the
	// send may park the goroutine (a futex) before read, which is fine: the
	// read's entry comes after that.
	if started < th.before || started > seen {
		t.Errorf("entry time %d outside [%d (before read), %d (seen)]", started, th.before, seen)
	}
	// Still the same call a little later: the time is its entry's, not the
	// last look's.
	time.Sleep(20 * time.Millisecond)
	if again, in, err := probes.CallStartedAt(th.tid); err != nil || !in || again != started {
		t.Errorf("a moment later: started %d, in call %v, err %v; want %d, true", again, in, err, started)
	}

	if _, err := unix.Write(pipe[1], []byte("x")); err != nil {
		t.Fatal(err)
	}
	back := <-returned
	if back-started < uint64(20*time.Millisecond) {
		t.Errorf("read returned %v after its entry, want ≥ 20ms", time.Duration(back-started))
	}
	if !testenv.Eventually(5*time.Second, func() bool {
		_, inCall, err = probes.CallStartedAt(th.tid)
		return err != nil || !inCall
	}) {
		t.Fatalf("thread %d returned from read: still seen in a call", th.tid)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Without Options.Latency there is no sys_enter, no entry time: no thread
// is ever in a call.
func TestCallStartedAtWithoutLatencySeesNoCall(t *testing.T) {
	testenv.RequireRoot(t)
	opts := DefaultOptions()
	opts.ExcludeTGID = 0
	opts.Latency = false
	probes, err := Load(opts, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer probes.Close()
	// Threads of this process block in futex and epoll_wait all the time.
	tids, err := threadIDs()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	for _, tid := range tids {
		if _, in, err := probes.CallStartedAt(tid); err != nil || in {
			t.Errorf("thread %d: in call %v, err %v; want false, nil", tid, in, err)
		}
	}
}

func threadIDs() ([]uint32, error) {
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	var tids []uint32
	for _, e := range entries {
		tid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			return nil, err
		}
		tids = append(tids, uint32(tid))
	}
	return tids, nil
}

// A thread blocked in read on a pipe is reported by the in_flight iterator:
// its process, the read, sleeping (an interruptible wait), the fd argument
// and an entry time from before it blocked; once it returns, it is not.
func TestReadInFlightReportsABlockedRead(t *testing.T) {
	testenv.RequireRoot(t)
	opts := DefaultOptions()
	probes, err := Load(opts, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer probes.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	before := monotonicNow(t)
	child := exec.Command("cat")
	child.Stdin = r
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	pid := uint32(child.Process.Pid)
	var found InFlightRecord
	ok := testenv.Eventually(5*time.Second, func() bool {
		found = InFlightRecord{}
		err := probes.ReadInFlight(func(rec InFlightRecord) {
			if rec.Tgid == pid && rec.Nr == 0 { // x86_64 read; see below for arm64
				found = rec
			}
			if runtime.GOARCH == "arm64" && rec.Tgid == pid && rec.Nr == 63 {
				found = rec
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return found.Tgid == pid
	})
	if !ok {
		t.Fatalf("cat (pid %d) blocked in read on a pipe: not reported in flight", pid)
	}
	if found.State != ThreadSleeping || found.Args[0] != 0 || found.StartNs < before || found.StartNs > monotonicNow(t) {
		t.Errorf("in flight: %+v; want sleeping, fd 0, started after %d", found, before)
	}
	w.Close()
	if err := child.Wait(); err != nil {
		t.Fatal(err)
	}
	err = probes.ReadInFlight(func(rec InFlightRecord) {
		if rec.Tgid == pid {
			t.Errorf("exited process still reported in flight: %+v", rec)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
