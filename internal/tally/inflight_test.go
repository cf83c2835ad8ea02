package tally

import (
	"testing"

	"github.com/sysobsd/sysobsd/internal/lifecycle"
	"github.com/sysobsd/sysobsd/internal/loader"
)

func inFlightRecord(tgid, tid uint32, sc Syscall, state uint32, startNS uint64) loader.InFlightRecord {
	return loader.InFlightRecord{Tgid: tgid, Tid: tid, ExecId: 1, Nr: sc.NR, Abi: sc.ABI, State: state, StartNs: startNS}
}

// The threads inside a call are counted by their process's labels, syscall
// and state, with the age of the oldest; a process not named yet waits for
// the next scrape; without the iterator there is no gauge at all.
func TestInFlightByLabelsSyscallAndState(t *testing.T) {
	h := newHarness(t, nil)
	if snap := h.snapshot(); snap.InFlight != nil {
		t.Fatalf("InFlight = %v without the iterator, want nil", snap.InFlight)
	}
	h.tally.monotonic = func() uint64 { return 10_000_000_000 }
	h.record(lifecycle.Fork, 1, 1, "nginx")
	h.record(lifecycle.Fork, 2, 1, "postgres")
	h.kernel.inFlight = []loader.InFlightRecord{
		inFlightRecord(1, 1, read, loader.ThreadSleeping, 9_000_000_000),
		inFlightRecord(1, 11, read, loader.ThreadSleeping, 4_000_000_000),
		inFlightRecord(1, 12, read, loader.ThreadUninterruptible, 9_500_000_000),
		inFlightRecord(2, 2, openat, loader.ThreadRunning, 9_999_000_000),
		inFlightRecord(3, 3, read, loader.ThreadSleeping, 1), // no record names it yet
	}
	got := h.snapshot().InFlight
	want := map[InFlightKey]InFlight{
		{Labels{Comm: "nginx"}, read, loader.ThreadSleeping}:        {Threads: 2, OldestNS: 6_000_000_000},
		{Labels{Comm: "nginx"}, read, loader.ThreadUninterruptible}: {Threads: 1, OldestNS: 500_000_000},
		{Labels{Comm: "postgres"}, openat, loader.ThreadRunning}:    {Threads: 1, OldestNS: 1_000_000},
	}
	if len(got) != len(want) {
		t.Fatalf("InFlight = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("InFlight[%v] = %v, want %v", k, got[k], v)
		}
	}
}

// Under the series cap, series beyond it are summed under ~other; a failed
// read leaves no gauge, counts the failure, and fails nothing else.
func TestInFlightUnderTheSeriesCap(t *testing.T) {
	h := newHarness(t, nil)
	h.tally.SetLimits(Limits{MaxSeries: 1})
	h.tally.monotonic = func() uint64 { return 100 }
	h.record(lifecycle.Fork, 1, 1, "a")
	h.record(lifecycle.Fork, 2, 1, "b")
	h.record(lifecycle.Fork, 3, 1, "c")
	h.kernel.inFlight = []loader.InFlightRecord{
		inFlightRecord(1, 1, read, loader.ThreadSleeping, 90),
		inFlightRecord(2, 2, read, loader.ThreadSleeping, 50),
		inFlightRecord(3, 3, read, loader.ThreadSleeping, 70),
	}
	got := h.snapshot().InFlight
	a := InFlightKey{Labels{Comm: "a"}, read, loader.ThreadSleeping}
	other := InFlightKey{Labels{Comm: OtherComm}, read, loader.ThreadSleeping}
	if len(got) != 2 || got[a] != (InFlight{1, 10}) || got[other] != (InFlight{2, 50}) {
		t.Errorf("InFlight = %v, want a: 1 thread 10 ns, ~other: 2 threads, oldest 50 ns", got)
	}
	// One process, two series (two states): the cap counts series.
	h.kernel.inFlight = []loader.InFlightRecord{
		inFlightRecord(1, 1, read, loader.ThreadSleeping, 90),
		inFlightRecord(1, 4, read, loader.ThreadUninterruptible, 80),
	}
	if got := h.snapshot().InFlight; len(got) != 2 || got[a] != (InFlight{1, 10}) ||
		got[InFlightKey{Labels{Comm: OtherComm}, read, loader.ThreadUninterruptible}] != (InFlight{1, 20}) {
		t.Errorf("InFlight = %v, want a's sleeping read and ~other's uninterruptible one", got)
	}
	h.kernel.failMethod = "ReadInFlight"
	snap := h.snapshot()
	if snap.InFlight != nil || snap.InFlightErrors != 1 {
		t.Errorf("failed read: InFlight = %v, InFlightErrors = %d; want nil and 1", snap.InFlight, snap.InFlightErrors)
	}
}
