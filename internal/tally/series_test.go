package tally

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/sysobsd/sysobsd/internal/lifecycle"
	"github.com/sysobsd/sysobsd/internal/loader"
)

// capStep is one call on a seriesCap[string, uint64]: apply full with max,
// or, with evict set, evict that label set with value v.
type capStep struct {
	name  string
	full  map[string]uint64
	max   int
	evict string
	v     uint64
	// after apply
	kept      map[string]uint64
	other     uint64
	overflows uint64
}

func runCapSteps(t *testing.T, steps []capStep) {
	t.Helper()
	c := newSeriesCap[string, uint64]()
	for _, s := range steps {
		if s.evict != "" {
			c.evict(s.evict, s.v, plusErrors)
			continue
		}
		kept, other := c.apply(maps.Clone(s.full), s.max, plusErrors, strings.Compare)
		if !maps.Equal(kept, s.kept) || other != s.other || c.Overflows != s.overflows {
			t.Errorf("%s: apply = %v, other %d, Overflows %d; want %v, other %d, Overflows %d",
				s.name, kept, other, c.Overflows, s.kept, s.other, s.overflows)
		}
	}
}

func TestSeriesCapAdmitsFirstLabelSetsInSortedOrder(t *testing.T) {
	runCapSteps(t, []capStep{
		{name: "first call", max: 2,
			full: map[string]uint64{"d": 4, "b": 2, "c": 3, "a": 1},
			kept: map[string]uint64{"a": 1, "b": 2}, other: 7, overflows: 2},
	})
}

func TestSeriesCapNeverMovesALabelSet(t *testing.T) {
	runCapSteps(t, []capStep{
		{name: "admit", max: 2,
			full: map[string]uint64{"b": 2, "c": 3, "d": 4},
			kept: map[string]uint64{"b": 2, "c": 3}, other: 4, overflows: 1},
		// "a" sorts first but comes late: it goes to the overflow, and "d"
		// stays there although it is now the smallest of its kind.
		{name: "earlier name comes late", max: 2,
			full: map[string]uint64{"a": 1, "b": 5, "c": 3, "d": 4},
			kept: map[string]uint64{"b": 5, "c": 3}, other: 5, overflows: 2},
		// An owned label set missing from one call keeps its slot.
		{name: "owned set absent", max: 2,
			full: map[string]uint64{"a": 1, "c": 3, "d": 6, "e": 1},
			kept: map[string]uint64{"c": 3}, other: 8, overflows: 3},
		// A larger cap admits new label sets, not the overflowed ones.
		{name: "cap raised", max: 4,
			full: map[string]uint64{"a": 1, "b": 5, "c": 3, "d": 6, "e": 1, "f": 9},
			kept: map[string]uint64{"b": 5, "c": 3, "f": 9}, other: 8, overflows: 3},
	})
}

func TestSeriesCapEvictKeepsOverflowSum(t *testing.T) {
	runCapSteps(t, []capStep{
		{name: "admit", max: 1,
			full: map[string]uint64{"a": 1, "b": 2, "c": 3},
			kept: map[string]uint64{"a": 1}, other: 5, overflows: 2},
		{name: "evict overflowed b", evict: "b", v: 2},
		{name: "b gone", max: 1,
			full: map[string]uint64{"a": 1, "c": 3},
			kept: map[string]uint64{"a": 1}, other: 5, overflows: 2},
		// Back after its eviction, b is a new label set: counted again.
		{name: "b back", max: 1,
			full: map[string]uint64{"a": 1, "b": 1, "c": 3},
			kept: map[string]uint64{"a": 1}, other: 6, overflows: 3},
	})
}

func TestSeriesCapEvictOfOwnedSetFreesSlot(t *testing.T) {
	runCapSteps(t, []capStep{
		{name: "admit", max: 2,
			full: map[string]uint64{"a": 1, "b": 2, "c": 3},
			kept: map[string]uint64{"a": 1, "b": 2}, other: 3, overflows: 1},
		{name: "evict owned a", evict: "a", v: 1},
		// The owned set's total leaves with it: nothing goes to the overflow.
		{name: "a gone", max: 2,
			full: map[string]uint64{"b": 2, "c": 3},
			kept: map[string]uint64{"b": 2}, other: 3, overflows: 1},
		// The free slot goes to the next new label set, not to the
		// overflowed c.
		{name: "new z owns the slot", max: 2,
			full: map[string]uint64{"b": 2, "c": 3, "z": 7, "zz": 1},
			kept: map[string]uint64{"b": 2, "z": 7}, other: 4, overflows: 2},
	})
}

func TestSeriesCapResetKeepsEvictedOverflow(t *testing.T) {
	c := newSeriesCap[string, uint64]()
	c.apply(map[string]uint64{"a": 1, "b": 2, "c": 3}, 1, plusErrors, strings.Compare)
	c.evict("c", 3, plusErrors)
	c.reset()
	kept, other := c.apply(map[string]uint64{"c": 4, "d": 5}, 1, plusErrors, strings.Compare)
	if want := map[string]uint64{"c": 4}; !maps.Equal(kept, want) || other != 8 || c.Overflows != 3 {
		t.Errorf("after reset: apply = %v, other %d, Overflows %d; want %v, other 8 (5 + 3 evicted), Overflows 3",
			kept, other, c.Overflows, want)
	}
}

// tenComms runs processes 100 to 109 named c0 to c9; ci makes i+1 reads of
// 10 ns each and i+1 failed openat calls. It returns the totals.
func tenComms(h *harness) (loader.Counts, uint64) {
	var calls loader.Counts
	var errs uint64
	for i := range 10 {
		tgid := uint32(100 + i)
		n := uint64(i + 1)
		h.record(lifecycle.Fork, tgid, 1, fmt.Sprint("c", i))
		h.kernel.call(tgid, 1, read, n, 10*n)
		h.kernel.fail(tgid, 1, openat, enoent, n)
		calls = plusCounts(calls, counts(n, 10*n))
		errs += n
	}
	return calls, errs
}

func TestSeriesCapThroughTally(t *testing.T) {
	h := newHarness(t, nil)
	h.tally.SetLimits(Limits{MaxSeries: 3})
	totalCalls, totalErrors := tenComms(h)
	// c3 to c9 exit: their totals are folded, and the cap still holds.
	for i := 3; i < 10; i++ {
		h.record(lifecycle.Exit, uint32(100+i), 1, fmt.Sprint("c", i))
	}

	check := func(step string, snap *Snapshot, wantCalls map[SeriesKey]loader.Counts, wantErrors map[ErrorKey]uint64,
		wantOther loader.Counts, wantErrorsOther, wantOverflows uint64) {
		t.Helper()
		checkCalls(t, step, snap.Calls, wantCalls)
		checkErrors(t, step, snap.Errors, wantErrors)
		if snap.CallsOther != wantOther || snap.ErrorsOther != wantErrorsOther {
			t.Errorf("%s: CallsOther %+v, ErrorsOther %d; want %+v, %d", step, snap.CallsOther, snap.ErrorsOther, wantOther, wantErrorsOther)
		}
		if got := plusCounts(sumCalls(snap), snap.CallsOther); got != totalCalls {
			t.Errorf("%s: calls sum to %+v, want %+v", step, got, totalCalls)
		}
		if got := sumErrors(snap) + snap.ErrorsOther; got != totalErrors {
			t.Errorf("%s: errors sum to %d, want %d", step, got, totalErrors)
		}
		if snap.CallsSeriesOverflows != wantOverflows || snap.ErrorsSeriesOverflows != wantOverflows {
			t.Errorf("%s: overflows %d calls, %d errors; want %d each", step, snap.CallsSeriesOverflows, snap.ErrorsSeriesOverflows, wantOverflows)
		}
	}

	// c0, c1, c2 sort first: 1+2+3 calls own series, 4+...+10 = 49 go over.
	first := h.snapshot()
	check("first", first,
		map[SeriesKey]loader.Counts{series("c0", read): counts(1, 10), series("c1", read): counts(2, 20), series("c2", read): counts(3, 30)},
		map[ErrorKey]uint64{errSeries("c0", openat, enoent): 1, errSeries("c1", openat, enoent): 2, errSeries("c2", openat, enoent): 3},
		counts(49, 490), 49, 7)

	// A name sorting before every other comes after the cap is full: it
	// goes to the overflow, and c0 to c2 keep theirs.
	h.record(lifecycle.Fork, 200, 1, "a")
	h.kernel.call(200, 1, read, 5, 50)
	h.kernel.fail(200, 1, openat, enoent, 5)
	h.kernel.call(100, 1, read, 1, 10)
	totalCalls = plusCounts(totalCalls, counts(6, 60))
	totalErrors += 5
	second := h.snapshot()
	check("second", second,
		map[SeriesKey]loader.Counts{series("c0", read): counts(2, 20), series("c1", read): counts(2, 20), series("c2", read): counts(3, 30)},
		map[ErrorKey]uint64{errSeries("c0", openat, enoent): 1, errSeries("c1", openat, enoent): 2, errSeries("c2", openat, enoent): 3},
		counts(54, 540), 54, 8)
	checkNonDecreasing(t, "second", first, second)
}

func TestIdleSeriesEvicted(t *testing.T) {
	h := newHarness(t, nil)
	clock := &fakeClock{time.Unix(1_000_000, 0)}
	h.tally.now = clock.now
	h.tally.SetLimits(Limits{IdleTimeout: time.Minute})

	h.record(lifecycle.Fork, 10, 1, "gone")
	h.kernel.call(10, 1, read, 4, 40)
	h.kernel.fail(10, 1, openat, enoent, 1)
	h.record(lifecycle.Exit, 10, 1, "gone")
	// One "shared" process exits; another, with the same label set, runs on.
	h.record(lifecycle.Fork, 11, 1, "shared")
	h.kernel.call(11, 1, read, 2, 20)
	h.kernel.fail(11, 1, openat, enoent, 2)
	h.record(lifecycle.Exit, 11, 1, "shared")
	h.record(lifecycle.Fork, 12, 1, "shared")
	h.kernel.call(12, 1, read, 1, 10)
	h.kernel.fail(12, 1, openat, enoent, 3)

	all := map[SeriesKey]loader.Counts{series("gone", read): counts(4, 40), series("shared", read): counts(3, 30)}
	allErrors := map[ErrorKey]uint64{errSeries("gone", openat, enoent): 1, errSeries("shared", openat, enoent): 5}
	snap := h.snapshot() // folds 10 and 11 now
	checkCalls(t, "folded", snap.Calls, all)
	checkErrors(t, "folded", snap.Errors, allErrors)

	clock.t = clock.t.Add(time.Minute)
	snap = h.snapshot()
	checkCalls(t, "idle for exactly the timeout", snap.Calls, all)
	checkErrors(t, "idle for exactly the timeout", snap.Errors, allErrors)

	clock.t = clock.t.Add(time.Second)
	snap = h.snapshot()
	checkCalls(t, "idle past the timeout", snap.Calls, map[SeriesKey]loader.Counts{series("shared", read): counts(3, 30)})
	// The latency histogram's sum keeps the evicted label set's time, as its
	// buckets (the kernel's, host-wide) keep its calls.
	if ns := snap.SyscallNS[read]; ns != 70 {
		t.Errorf("SyscallNS[read] = %d after the eviction, want 70 (40 evicted + 30)", ns)
	}
	checkErrors(t, "idle past the timeout", snap.Errors, map[ErrorKey]uint64{errSeries("shared", openat, enoent): 5})

	// The last "shared" process exits: its series goes a minute later.
	h.record(lifecycle.Exit, 12, 1, "shared")
	snap = h.snapshot()
	checkCalls(t, "last one exited", snap.Calls, map[SeriesKey]loader.Counts{series("shared", read): counts(3, 30)})
	clock.t = clock.t.Add(time.Minute + time.Second)
	snap = h.snapshot()
	checkCalls(t, "all idle", snap.Calls, map[SeriesKey]loader.Counts{})
	checkErrors(t, "all idle", snap.Errors, map[ErrorKey]uint64{})
	if ns := snap.SyscallNS[read]; ns != 70 {
		t.Errorf("SyscallNS[read] = %d with every label set evicted, want 70", ns)
	}
}

// A fold into a series restarts its idle time.
func TestFoldKeepsSeriesFromIdling(t *testing.T) {
	h := newHarness(t, nil)
	clock := &fakeClock{time.Unix(1_000_000, 0)}
	h.tally.now = clock.now
	h.tally.SetLimits(Limits{IdleTimeout: time.Minute})

	h.record(lifecycle.Fork, 10, 1, "job")
	h.kernel.call(10, 1, read, 1, 10)
	h.record(lifecycle.Exit, 10, 1, "job")
	h.snapshot()
	clock.t = clock.t.Add(50 * time.Second)
	h.record(lifecycle.Fork, 11, 1, "job")
	h.kernel.call(11, 1, read, 2, 20)
	h.record(lifecycle.Exit, 11, 1, "job")
	h.fold()
	clock.t = clock.t.Add(50 * time.Second) // 100 s after the first fold, 50 s after the second
	checkCalls(t, "refolded", h.snapshot().Calls, map[SeriesKey]loader.Counts{series("job", read): counts(3, 30)})
}

// A label set evicted as idle that comes back (an hourly job's name) goes on
// from the total it had: from zero, its series would repeat values it showed
// before the gap, and increase() across the gap would miss those calls.
func TestEvictedSeriesComesBackFromItsTotal(t *testing.T) {
	h := newHarness(t, nil)
	clock := &fakeClock{time.Unix(1_000_000, 0)}
	h.tally.now = clock.now
	h.tally.SetLimits(Limits{IdleTimeout: time.Minute})
	run := func(tgid uint32, n uint64, folded bool) {
		h.record(lifecycle.Fork, tgid, 1, "hourly")
		h.kernel.call(tgid, 1, read, n, 10*n)
		h.kernel.fail(tgid, 1, openat, enoent, n)
		if folded {
			h.record(lifecycle.Exit, tgid, 1, "hourly")
		}
	}
	run(10, 3, true)
	first := h.snapshot()
	clock.t = clock.t.Add(2 * time.Minute)
	h.snapshot() // evicted: idle for two minutes
	if snap := h.snapshot(); len(snap.Calls) != 0 || snap.SyscallNS[read] != 30 {
		t.Fatalf("after the eviction: Calls %v, SyscallNS[read] %d; want none, 30", snap.Calls, snap.SyscallNS[read])
	}

	run(11, 2, false) // back, running: counted live, not folded yet
	back := h.snapshot()
	checkCalls(t, "back, live", back.Calls, map[SeriesKey]loader.Counts{series("hourly", read): counts(5, 50)})
	checkErrors(t, "back, live", back.Errors, map[ErrorKey]uint64{errSeries("hourly", openat, enoent): 5})
	checkNonDecreasing(t, "back", first, back)
	if ns := back.SyscallNS[read]; ns != 50 {
		t.Errorf("SyscallNS[read] = %d, want 50: the revived total is not counted twice", ns)
	}
	h.record(lifecycle.Exit, 11, 1, "hourly")
	clock.t = clock.t.Add(2 * time.Minute)
	h.snapshot()     // folded, then idle: evicted again
	run(12, 1, true) // back through a fold this time
	checkCalls(t, "back, folded", h.snapshot().Calls, map[SeriesKey]loader.Counts{series("hourly", read): counts(6, 60)})
}

// Under a full cap, an evicted label set that comes back and finds no series
// free starts afresh in the overflow series: with its old total there too,
// the overflow would count it twice.
func TestEvictedSeriesBackUnderFullCapStartsInOverflow(t *testing.T) {
	h := newHarness(t, nil)
	clock := &fakeClock{time.Unix(1_000_000, 0)}
	h.tally.now = clock.now
	h.tally.SetLimits(Limits{MaxSeries: 1, IdleTimeout: time.Minute})
	h.record(lifecycle.Fork, 10, 1, "old")
	h.kernel.call(10, 1, read, 3, 30)
	h.record(lifecycle.Exit, 10, 1, "old")
	h.snapshot()
	clock.t = clock.t.Add(2 * time.Minute)
	h.snapshot() // "old" evicted: its series is free
	h.record(lifecycle.Fork, 11, 1, "new")
	h.kernel.call(11, 1, read, 4, 40)
	h.snapshot() // "new" takes it
	h.record(lifecycle.Fork, 12, 1, "old")
	h.kernel.call(12, 1, read, 2, 20)
	snap := h.snapshot()
	checkCalls(t, "capped", snap.Calls, map[SeriesKey]loader.Counts{series("new", read): counts(4, 40)})
	if snap.CallsOther != counts(2, 20) {
		t.Errorf("CallsOther = %+v, want {2 20}: only what \"old\" made since it came back", snap.CallsOther)
	}
}

func TestIdleEvictionUnderSeriesCap(t *testing.T) {
	h := newHarness(t, nil)
	clock := &fakeClock{time.Unix(1_000_000, 0)}
	h.tally.now = clock.now
	h.tally.SetLimits(Limits{MaxSeries: 2, IdleTimeout: time.Minute})

	// a and b own the series; c and d overflow. b, c and d exit; a runs on.
	for i, comm := range []string{"a", "b", "c", "d"} {
		tgid := uint32(10 + i)
		n := uint64(i + 1)
		h.record(lifecycle.Fork, tgid, 1, comm)
		h.kernel.call(tgid, 1, read, n, 10*n)
		h.kernel.fail(tgid, 1, openat, enoent, n)
		if comm != "a" {
			h.record(lifecycle.Exit, tgid, 1, comm)
		}
	}
	snap := h.snapshot()
	checkCalls(t, "capped", snap.Calls, map[SeriesKey]loader.Counts{series("a", read): counts(1, 10), series("b", read): counts(2, 20)})
	if snap.CallsOther != counts(7, 70) || snap.ErrorsOther != 7 || snap.CallsSeriesOverflows != 2 {
		t.Fatalf("capped: CallsOther %+v, ErrorsOther %d, overflows %d; want {7 70}, 7, 2", snap.CallsOther, snap.ErrorsOther, snap.CallsSeriesOverflows)
	}

	// b, c and d are evicted; the overflow keeps what c and d had.
	clock.t = clock.t.Add(time.Minute + time.Second)
	h.kernel.call(10, 1, read, 1, 10)
	snap = h.snapshot()
	checkCalls(t, "evicted", snap.Calls, map[SeriesKey]loader.Counts{series("a", read): counts(2, 20)})
	checkErrors(t, "evicted", snap.Errors, map[ErrorKey]uint64{errSeries("a", openat, enoent): 1})
	if snap.CallsOther != counts(7, 70) || snap.ErrorsOther != 7 {
		t.Errorf("evicted: CallsOther %+v, ErrorsOther %d; want {7 70}, 7: the overflow went down", snap.CallsOther, snap.ErrorsOther)
	}

	// b's slot is free: a new name gets it; the one after overflows onto
	// what c and d left.
	h.record(lifecycle.Fork, 20, 1, "y")
	h.kernel.call(20, 1, read, 5, 50)
	h.record(lifecycle.Fork, 21, 1, "z")
	h.kernel.call(21, 1, read, 6, 60)
	h.kernel.fail(21, 1, openat, enoent, 6)
	snap = h.snapshot()
	checkCalls(t, "refilled", snap.Calls, map[SeriesKey]loader.Counts{series("a", read): counts(2, 20), series("y", read): counts(5, 50)})
	checkErrors(t, "refilled", snap.Errors, map[ErrorKey]uint64{errSeries("a", openat, enoent): 1, errSeries("z", openat, enoent): 6})
	if snap.CallsOther != counts(13, 130) || snap.ErrorsOther != 7 || snap.CallsSeriesOverflows != 3 || snap.ErrorsSeriesOverflows != 2 {
		t.Errorf("refilled: CallsOther %+v, ErrorsOther %d, overflows %d calls, %d errors; want {13 130}, 7, 3, 2",
			snap.CallsOther, snap.ErrorsOther, snap.CallsSeriesOverflows, snap.ErrorsSeriesOverflows)
	}
}

// A series a running process is attributed to is not idle, even when that
// process has made no call since its counts were folded into the series
// (renamed away and back; a label dropped by a reload): evicting it would
// restart the series from the process's next call.
func TestIdleSeriesKeptWhileLiveProcessHasIt(t *testing.T) {
	tests := []struct {
		name   string
		labels LabelSet
		// change leaves process 10, named "w", live with no call since its
		// 3 reads and 1 failed openat were exported and then folded.
		change func(h *harness)
	}{
		{"renamed away and back", LabelSet(LabelComm), func(h *harness) {
			h.record(lifecycle.Rename, 10, 1, "other")
			h.snapshot()
			h.record(lifecycle.Rename, 10, 1, "w")
		}},
		{"pid label dropped", LabelSet(LabelComm | LabelPID), func(h *harness) {
			h.tally.SetLabels(LabelSet(LabelComm), nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			clock := &fakeClock{time.Unix(1_000_000, 0)}
			h.tally.now = clock.now
			h.tally.SetLimits(Limits{IdleTimeout: time.Minute})
			h.tally.SetLabels(tt.labels, nil)
			h.record(lifecycle.Fork, 10, 1, "w")
			h.kernel.call(10, 1, read, 3, 30)
			h.kernel.fail(10, 1, openat, enoent, 1)
			h.snapshot()
			tt.change(h)
			h.snapshot()

			clock.t = clock.t.Add(2 * time.Minute)
			idle := h.snapshot()
			checkCalls(t, "idle", idle.Calls, map[SeriesKey]loader.Counts{series("w", read): counts(3, 30)})
			checkErrors(t, "idle", idle.Errors, map[ErrorKey]uint64{errSeries("w", openat, enoent): 1})

			h.kernel.call(10, 1, read, 1, 10)
			woken := h.snapshot()
			checkCalls(t, "woken", woken.Calls, map[SeriesKey]loader.Counts{series("w", read): counts(4, 40)})
			checkNonDecreasing(t, "woken", idle, woken)

			// Once it exits, the series idles like any other.
			h.record(lifecycle.Exit, 10, 1, "w")
			h.snapshot()
			clock.t = clock.t.Add(2 * time.Minute)
			checkCalls(t, "exited", h.snapshot().Calls, map[SeriesKey]loader.Counts{})
		})
	}
}

// A label change starts the cap afresh: series of the old labels no longer
// hold slots that the new label sets need.
func TestSetLabelsReadmitsSeriesUnderCap(t *testing.T) {
	h := newHarness(t, nil)
	h.tally.SetLimits(Limits{MaxSeries: 2})
	h.tally.SetLabels(LabelSet(LabelComm|LabelPID), nil)
	for i, comm := range []string{"a", "a", "b"} {
		tgid := uint32(10 + i)
		h.record(lifecycle.Fork, tgid, 1, comm)
		h.kernel.call(tgid, 1, read, uint64(i+1), 0)
		h.record(lifecycle.Exit, tgid, 1, comm)
	}
	snap := h.snapshot()
	checkCalls(t, "with pids", snap.Calls, map[SeriesKey]loader.Counts{
		{Labels{Comm: "a", PID: "10"}, read}: counts(1, 0),
		{Labels{Comm: "a", PID: "11"}, read}: counts(2, 0),
	})
	if snap.CallsOther != counts(3, 0) {
		t.Errorf("with pids: CallsOther = %+v, want {3 0}", snap.CallsOther)
	}

	h.tally.SetLabels(LabelSet(LabelComm), nil)
	snap = h.snapshot()
	checkCalls(t, "without pids", snap.Calls, map[SeriesKey]loader.Counts{
		series("a", read): counts(3, 0),
		series("b", read): counts(3, 0),
	})
	if snap.CallsOther != (loader.Counts{}) {
		t.Errorf("without pids: CallsOther = %+v, want zero", snap.CallsOther)
	}
}

// The totals kept of evicted label sets stay bounded: past maxIdleKept, a
// quarter go; a label set never owned (overflowed) is not kept at all.
func TestIdleTotalsKeptBounded(t *testing.T) {
	c := newSeriesCap[int, uint64]()
	full := make(map[int]uint64)
	for k := range maxIdleKept + 1 {
		full[k] = uint64(k + 1)
	}
	overflowed := maxIdleKept + 1
	full[overflowed] = 5
	c.apply(full, maxIdleKept+1, plusErrors, func(a, b int) int { return a - b }) // the last overflows
	for k := range full {
		c.evict(k, full[k], plusErrors)
	}
	if n := len(c.idle); n > maxIdleKept || n < maxIdleKept*3/4 {
		t.Errorf("%d totals kept, want between %d and %d", n, maxIdleKept*3/4, maxIdleKept)
	}
	if _, kept := c.idle[overflowed]; kept || c.base != 5 {
		t.Errorf("the overflowed label set: kept %v, base %d; want only in the overflow's base (5)", kept, c.base)
	}
}
