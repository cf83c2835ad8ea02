package tally

import (
	"slices"
	"testing"
	"time"

	"github.com/sysobsd/sysobsd/internal/lifecycle"
	"github.com/sysobsd/sysobsd/internal/loader"
)

// busyHost has n workers (tgids from 100) with three entries each, scraped
// once: the tally has read the maps in full and knows every key.
func busyHost(t *testing.T, n uint32) *harness {
	t.Helper()
	h := newHarness(t, nil)
	for tgid := uint32(100); tgid < 100+n; tgid++ {
		h.record(lifecycle.Fork, tgid, 1, "worker")
		h.kernel.call(tgid, 1, read, 3, 300)
		h.kernel.call(tgid, 1, write, 2, 200)
		h.kernel.fail(tgid, 1, openat, enoent, 1)
	}
	h.snapshot()
	if h.kernel.fullReads != 1 {
		t.Fatalf("first snapshot made %d full reads, want 1", h.kernel.fullReads)
	}
	return h
}

func TestFoldLooksUpOnlyTheFinishedProcessesEntries(t *testing.T) {
	h := busyHost(t, 20)
	h.kernel.call(105, 1, read, 4, 400)
	h.kernel.call(105, 1, openat, 1, 10) // a new entry: announced
	h.record(lifecycle.Exit, 105, 1, "worker")
	h.record(lifecycle.Exec, 110, 2, "other") // 110's first generation is final
	h.kernel.call(110, 2, read, 1, 5)
	h.fold()

	if h.kernel.fullReads != 1 {
		t.Errorf("the fold read the maps in full (%d full reads, want 1)", h.kernel.fullReads)
	}
	// 105: read, write, openat and its error; 110's first generation: read,
	// write and its error. 110's new generation is running: not looked up.
	if h.kernel.lookups != 7 {
		t.Errorf("the fold looked up %d entries, want 7", h.kernel.lookups)
	}
	wantDeleted := []loader.SyscallKey{
		statsKey(105, 1, read), statsKey(105, 1, write), statsKey(105, 1, openat),
		statsKey(110, 1, read), statsKey(110, 1, write),
	}
	if got := sortedKeys(h.kernel.deletedStats, cmpStatsKey); !slices.Equal(got, sortedKeys(wantDeleted, cmpStatsKey)) {
		t.Errorf("deleted %+v, want %+v", got, wantDeleted)
	}

	snap := h.snapshot()
	checkCalls(t, "after the fold", snap.Calls, map[SeriesKey]loader.Counts{
		series("worker", read):   counts(20*3+4, 20*300+400),
		series("worker", write):  counts(20*2, 20*200),
		series("worker", openat): counts(1, 10),
		series("other", read):    counts(1, 5),
	})
	checkErrors(t, "after the fold", snap.Errors, map[ErrorKey]uint64{
		errSeries("worker", openat, enoent): 20,
	})
	if snap.FoldsByKeys != 1 || snap.FullReads != 2 {
		t.Errorf("FoldsByKeys, FullReads = %d, %d; want 1, 2", snap.FoldsByKeys, snap.FullReads)
	}
}

func TestLostAnnouncementsMakeTheNextFoldReadEverything(t *testing.T) {
	h := busyHost(t, 20)
	h.record(lifecycle.Fork, 200, 1, "unannounced")
	h.kernel.muted = true // the ring buffer is full
	h.kernel.call(200, 1, read, 7, 70)
	h.kernel.fail(200, 1, openat, eacces, 2)
	h.kernel.muted = false
	h.record(lifecycle.Exit, 200, 1, "unannounced")
	h.fold()

	if h.kernel.fullReads != 2 || h.kernel.lookups != 0 {
		t.Errorf("after a lost announcement: %d full reads and %d lookups, want 2 and 0", h.kernel.fullReads, h.kernel.lookups)
	}
	if _, ok := h.kernel.stats[statsKey(200, 1, read)]; ok {
		t.Errorf("the unannounced process's entry was not folded")
	}
	// The full read taught the book every key: folds go by keys again.
	h.record(lifecycle.Exit, 101, 1, "worker")
	h.fold()
	if h.kernel.fullReads != 2 || h.kernel.lookups != 3 {
		t.Errorf("next fold: %d full reads and %d lookups, want 2 and 3", h.kernel.fullReads, h.kernel.lookups)
	}
	snap := h.snapshot()
	checkCalls(t, "after both folds", snap.Calls, map[SeriesKey]loader.Counts{
		series("worker", read):      counts(20*3, 20*300),
		series("worker", write):     counts(20*2, 20*200),
		series("unannounced", read): counts(7, 70),
	})
	checkErrors(t, "after both folds", snap.Errors, map[ErrorKey]uint64{
		errSeries("worker", openat, enoent):      20,
		errSeries("unannounced", openat, eacces): 2,
	})
	if snap.EntryKeysLost != 2 {
		t.Errorf("EntryKeysLost = %d, want 2", snap.EntryKeysLost)
	}
}

func TestFoldOfMostProcessesReadsEverything(t *testing.T) {
	h := busyHost(t, 200)
	// 150 of 200 processes: 450 lookups cost more than reading 600 entries.
	for tgid := uint32(100); tgid < 250; tgid++ {
		h.record(lifecycle.Exit, tgid, 1, "worker")
	}
	h.fold()
	if h.kernel.fullReads != 2 || h.kernel.lookups != 0 {
		t.Errorf("%d full reads and %d lookups, want 2 and 0", h.kernel.fullReads, h.kernel.lookups)
	}
	if len(h.kernel.stats) != 50*2 || len(h.kernel.errs) != 50 {
		t.Errorf("kernel keeps %d stats and %d errors entries, want 100 and 50", len(h.kernel.stats), len(h.kernel.errs))
	}
	checkCalls(t, "after the fold", h.snapshot().Calls, map[SeriesKey]loader.Counts{
		series("worker", read):  counts(200*3, 200*300),
		series("worker", write): counts(200*2, 200*200),
	})
}

func TestFoldsReadEverythingAfterAWhileWithoutScrapes(t *testing.T) {
	h := busyHost(t, 20)
	clock := &fakeClock{time.Now()}
	h.tally.now = clock.now
	h.tally.book.lastFullRead = clock.t

	h.record(lifecycle.Exit, 100, 1, "worker")
	h.fold()
	clock.t = clock.t.Add(fullReadEvery)
	h.record(lifecycle.Exit, 101, 1, "worker")
	h.fold()
	if h.kernel.fullReads != 2 || h.kernel.lookups != 3 {
		t.Errorf("%d full reads and %d lookups, want 2 (the first snapshot, then after %v) and 3", h.kernel.fullReads, h.kernel.lookups, fullReadEvery)
	}
}

func TestPackedKeysRoundTrip(t *testing.T) {
	for _, k := range []loader.ErrnoKey{
		{Tgid: 1, ExecId: 0, Nr: 0, Abi: 0, Err: 0},
		{Tgid: 4194304, ExecId: 0xffffffff, Nr: 0xffff, Abi: 1, Err: 4095},
		{Tgid: 77, ExecId: 3, Nr: 257, Abi: 0, Err: 13},
	} {
		p, ok := packKey(k.ExecId, k.Nr, k.Abi, k.Err)
		if got := unpackKey(k.Tgid, p); !ok || got != k {
			t.Errorf("packKey(%+v) = %#x, %v; unpacks to %+v", k, p, ok, got)
		}
	}
	if _, ok := packKey(1, 2, 2, 0); ok {
		t.Errorf("packKey took abi 2, which it cannot hold")
	}
}

// An entry whose key the book never learned (not announced, and not counted
// lost) escapes folds by key; its process stays known until full reads have
// passed over it, so the next one folds it under its name.
func TestEntryMissedByKeysIsFoldedByNameAtTheNextFullRead(t *testing.T) {
	h := busyHost(t, 20)
	h.record(lifecycle.Fork, 300, 1, "missed")
	h.kernel.stats[statsKey(300, 1, read)] = counts(5, 50)
	h.record(lifecycle.Exit, 300, 1, "missed")
	for range 3 {
		h.fold()
	}
	if _, ok := h.kernel.stats[statsKey(300, 1, read)]; !ok || !h.procs.Exited(300) {
		t.Fatalf("folds by key: entry kept %v, process known %v; want both", ok, h.procs.Exited(300))
	}
	snap := h.snapshot()
	checkCalls(t, "next full read", snap.Calls, map[SeriesKey]loader.Counts{
		series("worker", read):  counts(20*3, 20*300),
		series("worker", write): counts(20*2, 20*200),
		series("missed", read):  counts(5, 50),
	})
	if snap.MissedByKeys != 1 {
		t.Errorf("MissedByKeys = %d, want 1", snap.MissedByKeys)
	}
}
