package tally

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sysobsd/sysobsd/internal/lifecycle"
	"github.com/sysobsd/sysobsd/internal/loader"
)

// Syscalls used in the tests (x86_64 and i386 numbers).
var (
	read     = Syscall{ABI: 0, NR: 0}
	write    = Syscall{ABI: 0, NR: 1}
	openat   = Syscall{ABI: 0, NR: 257}
	read32   = Syscall{ABI: 1, NR: 3}
	execve   = Syscall{ABI: 0, NR: 59}
	enoent   = uint32(2)
	eacces   = uint32(13)
	errFaked = errors.New("faked map read failure")
)

// fakeKernel is loader.Maps in memory: per-process counters that only grow
// until deleted, overflow counters, histograms and drops.
type fakeKernel struct {
	stats        map[loader.SyscallKey]loader.Counts
	errs         map[loader.ErrnoKey]uint64
	overflow     map[Syscall]loader.Counts
	overflowErrs map[loader.ErrnoKey]uint64
	groups       map[loader.GroupKey]loader.Counts
	groupErrs    map[loader.GroupKey]uint64
	hists        map[Syscall]loader.Histogram
	drops        []uint64

	deletedStats  []loader.SyscallKey
	deletedErrors []loader.ErrnoKey
	deleteBudget  *int // keys the deletes may still delete; nil: no limit
	histReads     []Syscall
	failMethod    string // name of the method that fails with errFaked

	// announced holds the new entries' keys not drained yet, as the
	// entry_keys ring buffer would; muted drops them (ring buffer full)
	// and counts them in keysLost.
	announced []loader.ErrnoKey
	muted     bool
	keysLost  uint64
	// fullReads and lookups count how the maps were read.
	fullReads, lookups int
	// statsAtRead and errorsAtRead are the stats' and errors' entries when
	// last read in full; callSlots and errorSlots the call_slots fill.
	statsAtRead, errorsAtRead int
	callSlots, errorSlots     int
	// afterStatsRead runs after each read of the stats map: what running
	// processes count while the tally goes on with its sync.
	afterStatsRead func()
	// inFlight are the threads the in_flight iterator reports; nil: the
	// programs cannot report them.
	inFlight []loader.InFlightRecord
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{
		stats:        make(map[loader.SyscallKey]loader.Counts),
		errs:         make(map[loader.ErrnoKey]uint64),
		overflow:     make(map[Syscall]loader.Counts),
		overflowErrs: make(map[loader.ErrnoKey]uint64),
		groups:       make(map[loader.GroupKey]loader.Counts),
		groupErrs:    make(map[loader.GroupKey]uint64),
		hists:        make(map[Syscall]loader.Histogram),
		drops:        []uint64{0, 2, 3, 4, 5}, // [0]: no lifecycle record lost (a loss brings sweeps early)
	}
}

func statsKey(tgid, execID uint32, sc Syscall) loader.SyscallKey {
	return loader.SyscallKey{Tgid: tgid, ExecId: execID, Nr: sc.NR, Abi: sc.ABI}
}

func errnoKey(tgid, execID uint32, sc Syscall, errno uint32) loader.ErrnoKey {
	return loader.ErrnoKey{Tgid: tgid, ExecId: execID, Nr: sc.NR, Abi: sc.ABI, Err: errno}
}

// call counts n calls taking ns nanoseconds in all, as sys_exit does.
func (k *fakeKernel) call(tgid, execID uint32, sc Syscall, n, ns uint64) {
	key := statsKey(tgid, execID, sc)
	c, ok := k.stats[key]
	if !ok {
		k.announce(errnoKey(tgid, execID, sc, 0))
	}
	c.Calls += n
	c.NS += ns
	k.stats[key] = c
}

// fail counts n calls that returned -errno.
func (k *fakeKernel) fail(tgid, execID uint32, sc Syscall, errno uint32, n uint64) {
	key := errnoKey(tgid, execID, sc, errno)
	if _, ok := k.errs[key]; !ok {
		k.announce(key)
	}
	k.errs[key] += n
}

func (k *fakeKernel) announce(key loader.ErrnoKey) {
	if k.muted {
		k.keysLost++
		return
	}
	k.announced = append(k.announced, key)
}

func (k *fakeKernel) DrainEntryKeys(fn func(loader.ErrnoKey)) error {
	if err := k.failing("DrainEntryKeys"); err != nil {
		return err
	}
	for _, key := range k.announced {
		fn(key)
	}
	k.announced = k.announced[:0]
	return nil
}

func (k *fakeKernel) ReadInFlight(fn func(loader.InFlightRecord)) error {
	if err := k.failing("ReadInFlight"); err != nil {
		return err
	}
	if k.inFlight == nil {
		return loader.ErrNoInFlight
	}
	for _, r := range k.inFlight {
		fn(r)
	}
	return nil
}

func (k *fakeKernel) EntryKeysLost() (uint64, error) {
	return k.keysLost, k.failing("EntryKeysLost")
}

// StatsFill and ErrorsFill: every entry of the fake is in its hash; the
// slots are only what a test says.
func (k *fakeKernel) StatsFill() (slots, hashEntries int)  { return k.callSlots, k.statsAtRead }
func (k *fakeKernel) ErrorsFill() (slots, hashEntries int) { return k.errorSlots, k.errorsAtRead }

func (k *fakeKernel) statsRead() {
	if k.afterStatsRead != nil {
		k.afterStatsRead()
	}
}

func (k *fakeKernel) failing(method string) error {
	if k.failMethod == method {
		return fmt.Errorf("%s: %w", method, errFaked)
	}
	return nil
}

// groupKey is the kernel's key for calls of a process named comm in a
// cgroup that had no room in the per-process map.
func groupKey(cgroup uint64, comm string, sc Syscall, errno uint32) loader.GroupKey {
	k := loader.GroupKey{CgroupId: cgroup, Nr: sc.NR, Abi: sc.ABI, Err: errno}
	for i := range min(len(comm), len(k.Comm)-1) {
		k.Comm[i] = int8(comm[i])
	}
	return k
}

// callInGroup counts n calls as sys_exit does when the per-process map is full.
func (k *fakeKernel) callInGroup(cgroup uint64, comm string, sc Syscall, n, ns uint64) {
	key := groupKey(cgroup, comm, sc, 0)
	k.groups[key] = plusCounts(k.groups[key], counts(n, ns))
}

func (k *fakeKernel) ReadOverflowStats(fn func(abi, nr uint16, c loader.Counts)) error {
	if err := k.failing("ReadOverflowStats"); err != nil {
		return err
	}
	for sc, c := range k.overflow {
		fn(sc.ABI, sc.NR, c)
	}
	return nil
}

func (k *fakeKernel) ReadOverflowErrors(fn func(loader.ErrnoKey, uint64)) error {
	if err := k.failing("ReadOverflowErrors"); err != nil {
		return err
	}
	for key, n := range k.overflowErrs {
		fn(key, n)
	}
	return nil
}

func (k *fakeKernel) ReadHistogram(abi, nr uint16) (loader.Histogram, error) {
	if err := k.failing("ReadHistogram"); err != nil {
		return loader.Histogram{}, err
	}
	sc := Syscall{ABI: abi, NR: min(nr, loader.NRSlots-1)} // as the kernel's array
	k.histReads = append(k.histReads, sc)
	return k.hists[sc], nil
}

func (k *fakeKernel) ReadDrops() ([]uint64, error) {
	if err := k.failing("ReadDrops"); err != nil {
		return nil, err
	}
	return slices.Clone(k.drops), nil
}

// fakeTable is one of the fake kernel's maps of counters. Its methods fail
// with errFaked when failMethod names them as the Kernel's did: "Read" and
// the table's name ("ReadStats"), "Lookup...", "Delete...".
type fakeTable[K comparable, V any] struct {
	k       *fakeKernel
	name    string
	entries map[K]V
	deleted *[]K // the keys deleted, if kept
	// afterRead runs after each read or lookup.
	afterRead func()
}

func (tb fakeTable[K, V]) Read(fn func(K, V)) error {
	if err := tb.k.failing("Read" + tb.name); err != nil {
		return err
	}
	if tb.name == "Stats" {
		tb.k.fullReads++
		tb.k.statsAtRead = len(tb.entries)
	}
	if tb.name == "Errors" {
		tb.k.errorsAtRead = len(tb.entries)
	}
	for key, v := range tb.entries {
		fn(key, v)
	}
	if tb.afterRead != nil {
		tb.afterRead()
	}
	return nil
}

// Lookup counts each key looked up and calls fn for those with entries.
func (tb fakeTable[K, V]) Lookup(keys []K, fn func(K, V)) error {
	if tb.afterRead != nil {
		defer tb.afterRead()
	}
	if err := tb.k.failing("Lookup" + tb.name); err != nil {
		return err
	}
	for _, key := range keys {
		tb.k.lookups++
		if v, ok := tb.entries[key]; ok {
			fn(key, v)
		}
	}
	return nil
}

// Delete deletes in order and stops at a missing key, like
// BPF_MAP_DELETE_BATCH.
func (tb fakeTable[K, V]) Delete(keys []K) (int, error) {
	return deleteKeys(tb.k, "Delete"+tb.name, tb.entries, keys, tb.deleted)
}

func (k *fakeKernel) Stats() Table[loader.SyscallKey, loader.Counts] {
	return fakeTable[loader.SyscallKey, loader.Counts]{k, "Stats", k.stats, &k.deletedStats, k.statsRead}
}

func (k *fakeKernel) Errors() Table[loader.ErrnoKey, uint64] {
	return fakeTable[loader.ErrnoKey, uint64]{k, "Errors", k.errs, &k.deletedErrors, nil}
}

func (k *fakeKernel) GroupStats() Table[loader.GroupKey, loader.Counts] {
	return fakeTable[loader.GroupKey, loader.Counts]{k: k, name: "GroupStats", entries: k.groups}
}

func (k *fakeKernel) GroupErrors() Table[loader.GroupKey, uint64] {
	return fakeTable[loader.GroupKey, uint64]{k: k, name: "GroupErrors", entries: k.groupErrs}
}

// deleteKeys deletes keys from m in order and says how many it deleted; it
// stops at a missing key, and after deleteBudget keys when that is set (a
// delete that fails part way). deleted, if not nil, lists the keys deleted.
func deleteKeys[K comparable, V any](k *fakeKernel, method string, m map[K]V, keys []K, deleted *[]K) (int, error) {
	if err := k.failing(method); err != nil {
		return 0, err
	}
	for i, key := range keys {
		if k.deleteBudget != nil {
			if *k.deleteBudget == 0 {
				return i, fmt.Errorf("%s: %w part way", method, errFaked)
			}
			*k.deleteBudget--
		}
		if _, ok := m[key]; !ok {
			return i, fmt.Errorf("%s %+v: key does not exist", method, key)
		}
		delete(m, key)
		if deleted != nil {
			*deleted = append(*deleted, key)
		}
	}
	return len(keys), nil
}

// harness is a tally over a fake kernel and a real process table whose
// /proc is a temporary directory.
type harness struct {
	t        *testing.T
	kernel   *fakeKernel
	procs    *lifecycle.ProcessTable
	procRoot string
	tally    *Tally
}

func newHarness(t *testing.T, alive func(uint32) bool) *harness {
	h := &harness{t: t, kernel: newFakeKernel(), procRoot: t.TempDir()}
	h.procs = lifecycle.NewProcessTable(h.procRoot)
	h.tally = New(h.kernel, h.procs, alive)
	return h
}

func (h *harness) record(kind lifecycle.Kind, tgid, execID uint32, comm string) {
	h.procs.Apply(lifecycle.Record{Kind: kind, TGID: tgid, ExecID: execID, Comm: comm})
}

// procComm makes /proc/<tgid>/comm say comm.
func (h *harness) procComm(tgid uint32, comm string) {
	h.t.Helper()
	dir := filepath.Join(h.procRoot, fmt.Sprint(tgid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// snapshot and fold drain first, as the engine does.
func (h *harness) snapshot() *Snapshot {
	h.t.Helper()
	h.tally.Drained()
	snap, err := h.tally.Snapshot()
	if err != nil {
		h.t.Fatalf("Snapshot() = %v", err)
	}
	return snap
}

func (h *harness) fold() {
	h.t.Helper()
	h.tally.Drained()
	if err := h.tally.Fold(); err != nil {
		h.t.Fatalf("Fold() = %v", err)
	}
}

// fullFold is a fold that reads the maps in full, as one after a lost
// announcement does.
func (h *harness) fullFold() {
	h.t.Helper()
	h.tally.book.complete = false
	h.fold()
}

func series(comm string, sc Syscall) SeriesKey {
	return SeriesKey{Labels: Labels{Comm: comm}, Syscall: sc}
}

func errSeries(comm string, sc Syscall, errno uint32) ErrorKey {
	return ErrorKey{SeriesKey: series(comm, sc), Errno: errno}
}

func counts(calls, ns uint64) loader.Counts { return loader.Counts{Calls: calls, NS: ns} }

func checkCalls(t *testing.T, step string, got, want map[SeriesKey]loader.Counts) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("%s: Calls =\n%s\nwant\n%s", step, formatMap(got), formatMap(want))
	}
}

func checkErrors(t *testing.T, step string, got, want map[ErrorKey]uint64) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("%s: Errors =\n%s\nwant\n%s", step, formatMap(got), formatMap(want))
	}
}

func formatMap[K comparable, V any](m map[K]V) string {
	var lines []string
	for k, v := range m {
		lines = append(lines, fmt.Sprintf("  %+v: %+v", k, v))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func sortedKeys[K any](keys []K, cmpKey func(a, b K) int) []K {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, cmpKey)
	return keys
}

func cmpStatsKey(a, b loader.SyscallKey) int {
	return cmp.Or(cmp.Compare(a.Tgid, b.Tgid), cmp.Compare(a.ExecId, b.ExecId), cmp.Compare(a.Abi, b.Abi), cmp.Compare(a.Nr, b.Nr))
}

func cmpErrnoKey(a, b loader.ErrnoKey) int {
	return cmp.Or(cmp.Compare(a.Tgid, b.Tgid), cmp.Compare(a.ExecId, b.ExecId), cmp.Compare(a.Abi, b.Abi), cmp.Compare(a.Nr, b.Nr), cmp.Compare(a.Err, b.Err))
}

func TestCountsSummedPerCommAndSyscall(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 10, 1, "nginx")
	h.record(lifecycle.Fork, 11, 1, "nginx")
	h.record(lifecycle.Fork, 20, 4, "postgres")
	h.kernel.call(10, 1, read, 10, 1000)
	h.kernel.call(11, 1, read, 5, 500)
	h.kernel.call(10, 1, write, 3, 30)
	h.kernel.call(20, 4, read, 7, 70)
	h.kernel.call(20, 4, read32, 2, 20) // another ABI is another series here
	h.kernel.fail(10, 1, openat, enoent, 2)
	h.kernel.fail(11, 1, openat, enoent, 3)
	h.kernel.fail(11, 1, openat, eacces, 1)
	h.kernel.hists[read] = loader.Histogram{10: 4, 12: 1}
	h.kernel.callSlots, h.kernel.errorSlots = 40, 9

	snap := h.snapshot()
	checkCalls(t, "snapshot", snap.Calls, map[SeriesKey]loader.Counts{
		series("nginx", read):      counts(15, 1500),
		series("nginx", write):     counts(3, 30),
		series("postgres", read):   counts(7, 70),
		series("postgres", read32): counts(2, 20),
	})
	checkErrors(t, "snapshot", snap.Errors, map[ErrorKey]uint64{
		errSeries("nginx", openat, enoent): 5,
		errSeries("nginx", openat, eacces): 1,
	})
	if snap.StatsEntries != 5 || snap.ErrorsEntries != 3 || snap.CallSlotsEntries != 49 {
		t.Errorf("entries = %d stats, %d errors, %d call slots; want 5, 3 and 49 (calls' and errors' slots)",
			snap.StatsEntries, snap.ErrorsEntries, snap.CallSlotsEntries)
	}
	if snap.Processes != 3 {
		t.Errorf("Processes = %d, want 3", snap.Processes)
	}
	if snap.FoldedProcesses != 0 {
		t.Errorf("FoldedProcesses = %d, want 0", snap.FoldedProcesses)
	}
	if !slices.Equal(snap.Drops, []uint64{0, 2, 3, 4, 5}) {
		t.Errorf("Drops = %v, want [0 2 3 4 5]", snap.Drops)
	}
	// A histogram for every syscall seen in the stats map, none for the
	// errors map alone (openat made no stats entry here).
	wantHists := map[Syscall]loader.Histogram{read: {10: 4, 12: 1}, write: {}, read32: {}}
	if !maps.Equal(snap.Histograms, wantHists) {
		t.Errorf("Histograms = %v, want %v", snap.Histograms, wantHists)
	}
	if len(h.kernel.deletedStats)+len(h.kernel.deletedErrors) != 0 {
		t.Errorf("live processes' entries deleted: %v %v", h.kernel.deletedStats, h.kernel.deletedErrors)
	}
}

func TestSnapshotIsOwnedByTheCaller(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 10, 1, "a")
	h.kernel.call(10, 1, read, 1, 1)
	first := h.snapshot()
	first.Calls[series("a", read)] = counts(1000, 1000)
	first.Drops[1] = 1000
	h.kernel.call(10, 1, read, 1, 1)
	second := h.snapshot()
	checkCalls(t, "second", second.Calls, map[SeriesKey]loader.Counts{series("a", read): counts(2, 2)})
	if second.Drops[1] != 2 {
		t.Errorf("Drops[1] = %d after the caller changed the first snapshot, want 2", second.Drops[1])
	}
}

func TestFoldMovesExitedProcessToLastingTotals(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 10, 1, "curl")
	h.record(lifecycle.Fork, 11, 1, "curl")
	h.kernel.call(10, 1, read, 4, 40)
	h.kernel.call(10, 1, openat, 2, 20)
	h.kernel.call(11, 1, read, 1, 10)
	h.kernel.fail(10, 1, openat, enoent, 1)
	h.kernel.fail(10, 1, openat, eacces, 1)
	h.kernel.fail(11, 1, openat, enoent, 7)

	before := h.snapshot()
	h.kernel.call(10, 1, read, 1, 10) // its last call, after the scrape
	h.record(lifecycle.Exit, 10, 1, "curl")
	h.fold()

	wantDeletedStats := []loader.SyscallKey{statsKey(10, 1, read), statsKey(10, 1, openat)}
	if got := sortedKeys(h.kernel.deletedStats, cmpStatsKey); !slices.Equal(got, sortedKeys(wantDeletedStats, cmpStatsKey)) {
		t.Errorf("deleted stats %+v, want %+v", got, wantDeletedStats)
	}
	wantDeletedErrors := []loader.ErrnoKey{errnoKey(10, 1, openat, enoent), errnoKey(10, 1, openat, eacces)}
	if got := sortedKeys(h.kernel.deletedErrors, cmpErrnoKey); !slices.Equal(got, sortedKeys(wantDeletedErrors, cmpErrnoKey)) {
		t.Errorf("deleted errors %+v, want %+v", got, wantDeletedErrors)
	}
	if len(h.kernel.stats) != 1 || len(h.kernel.errs) != 1 {
		t.Errorf("kernel keeps %d stats and %d errors entries, want 1 and 1 (process 11's)", len(h.kernel.stats), len(h.kernel.errs))
	}
	h.fullFold() // an exited process is kept through two full reads
	h.fullFold()
	if h.procs.Exited(10) || h.procs.ExitedCount() != 0 {
		t.Errorf("process 10 not forgotten after its fold")
	}

	after := h.snapshot()
	wantCalls := map[SeriesKey]loader.Counts{
		series("curl", read):   counts(6, 60),
		series("curl", openat): counts(2, 20),
	}
	checkCalls(t, "after fold", after.Calls, wantCalls)
	checkErrors(t, "after fold", after.Errors, map[ErrorKey]uint64{
		errSeries("curl", openat, enoent): 8,
		errSeries("curl", openat, eacces): 1,
	})
	checkNonDecreasing(t, "fold", before, after)
	if after.FoldedProcesses != 1 {
		t.Errorf("FoldedProcesses = %d, want 1", after.FoldedProcesses)
	}
	if after.Processes != 1 {
		t.Errorf("Processes = %d, want 1", after.Processes)
	}
	if after.StatsEntries != 1 || after.ErrorsEntries != 1 {
		t.Errorf("entries = %d, %d after fold; want 1, 1", after.StatsEntries, after.ErrorsEntries)
	}

	// The totals last: more folds and snapshots do not count them again.
	h.fold()
	checkCalls(t, "again", h.snapshot().Calls, wantCalls)
}

func TestSnapshotFoldsToo(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 10, 1, "a")
	h.kernel.call(10, 1, read, 3, 3)
	h.record(lifecycle.Exit, 10, 1, "a")
	snap := h.snapshot()
	checkCalls(t, "snapshot", snap.Calls, map[SeriesKey]loader.Counts{series("a", read): counts(3, 3)})
	if len(h.kernel.stats) != 0 || snap.FoldedProcesses != 1 || snap.Processes != 0 {
		t.Errorf("after a snapshot: %d kernel entries, %d folded, %d processes; want 0, 1, 0",
			len(h.kernel.stats), snap.FoldedProcesses, snap.Processes)
	}
	// The entry count is the map's fill when it was read, before the delete.
	if snap.StatsEntries != 1 {
		t.Errorf("StatsEntries = %d, want 1", snap.StatsEntries)
	}
}

func TestShortLivedProcessCountedExactly(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 1, 1, "init")
	h.kernel.call(1, 1, read, 1, 1)
	h.snapshot()

	// Born, busy and gone between two scrapes.
	h.record(lifecycle.Fork, 500, 3, "date")
	h.kernel.call(500, 3, read, 17, 170)
	h.kernel.call(500, 3, write, 1, 9)
	h.kernel.fail(500, 3, openat, enoent, 4)
	h.record(lifecycle.Exit, 500, 3, "date")

	snap := h.snapshot()
	checkCalls(t, "after", snap.Calls, map[SeriesKey]loader.Counts{
		series("init", read):  counts(1, 1),
		series("date", read):  counts(17, 170),
		series("date", write): counts(1, 9),
	})
	checkErrors(t, "after", snap.Errors, map[ErrorKey]uint64{errSeries("date", openat, enoent): 4})
	if len(h.kernel.stats) != 1 || len(h.kernel.errs) != 0 {
		t.Errorf("kernel keeps %d stats and %d errors entries, want 1 and 0", len(h.kernel.stats), len(h.kernel.errs))
	}
}

// A fork's calls before its exec (the shell's child: dup2, close, execve's
// setup) can no longer grow once the exec record is in: they are folded and
// their kernel entries freed while the program runs on, so that long-lived
// processes hold entries for their current program only.
func TestExecFoldsTheFinishedGeneration(t *testing.T) {
	h := newHarness(t, func(uint32) bool { return true })
	h.procComm(9, "sshd") // running before the daemon: its exec_id is not known
	h.kernel.call(9, 4, read, 2, 20)
	h.record(lifecycle.Fork, 7, 1, "bash")
	h.kernel.call(7, 1, read, 4, 40)
	h.kernel.fail(7, 1, openat, enoent, 1)
	h.fold()
	if len(h.kernel.deletedStats)+len(h.kernel.deletedErrors) != 0 {
		t.Fatalf("before any exec, deleted %v %v", h.kernel.deletedStats, h.kernel.deletedErrors)
	}

	h.record(lifecycle.Exec, 7, 2, "python3")
	h.kernel.call(7, 2, execve, 1, 1000)
	h.kernel.call(7, 2, read, 10, 100)
	h.fold()
	wantDeleted := []loader.SyscallKey{statsKey(7, 1, read)}
	if !slices.Equal(h.kernel.deletedStats, wantDeleted) {
		t.Errorf("deleted stats %v, want %v", h.kernel.deletedStats, wantDeleted)
	}
	if want := []loader.ErrnoKey{errnoKey(7, 1, openat, enoent)}; !slices.Equal(h.kernel.deletedErrors, want) {
		t.Errorf("deleted errors %v, want %v", h.kernel.deletedErrors, want)
	}

	h.kernel.call(7, 2, read, 1, 10)
	snap := h.snapshot()
	checkCalls(t, "after the fold", snap.Calls, map[SeriesKey]loader.Counts{
		series("sshd", read):      counts(2, 20),
		series("bash", read):      counts(4, 40),
		series("python3", execve): counts(1, 1000),
		series("python3", read):   counts(11, 110),
	})
	checkErrors(t, "after the fold", snap.Errors, map[ErrorKey]uint64{errSeries("bash", openat, enoent): 1})
	if snap.Processes != 2 || snap.FoldedProcesses != 0 {
		t.Errorf("Processes = %d, FoldedProcesses = %d, want 2 running and none folded", snap.Processes, snap.FoldedProcesses)
	}

	// A process found by the scan learns its generation at its first exec.
	h.record(lifecycle.Exec, 9, 5, "sshd-session")
	h.kernel.call(9, 5, read, 3, 30)
	h.fold()
	if got := h.kernel.deletedStats[len(h.kernel.deletedStats)-1]; got != statsKey(9, 4, read) {
		t.Errorf("last deleted %v, want sshd's pre-exec entry", got)
	}
	checkCalls(t, "scanned process exec'd", h.snapshot().Calls, map[SeriesKey]loader.Counts{
		series("sshd", read):         counts(2, 20),
		series("sshd-session", read): counts(3, 30),
		series("bash", read):         counts(4, 40),
		series("python3", execve):    counts(1, 1000),
		series("python3", read):      counts(11, 110),
	})
}

// A scrape whose drain of the ring buffer came between a process's fork and
// exec records reads what the exec'd program counted: those counts wait for
// the exec record, at the next scrape, rather than being exported under the
// name from before the exec, which would keep them (counters never go back).
func TestCountsOfAnExecInFlightWaitForItsRecord(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 7, 1, "integration.tes")
	h.kernel.call(7, 1, read, 4, 40)
	// The exec, and the new program's calls, after the drain.
	h.kernel.call(7, 2, execve, 1, 1000)
	h.kernel.call(7, 2, read, 50, 500)
	checkCalls(t, "exec record in flight", h.snapshot().Calls, map[SeriesKey]loader.Counts{
		series("integration.tes", read): counts(4, 40),
	})
	h.record(lifecycle.Exec, 7, 2, "pidb")
	checkCalls(t, "exec record applied", h.snapshot().Calls, map[SeriesKey]loader.Counts{
		series("integration.tes", read): counts(4, 40),
		series("pidb", execve):          counts(1, 1000),
		series("pidb", read):            counts(50, 500),
	})
}

func TestExecGenerationsAttributedToTheirNames(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 7, 1, "bash")
	h.kernel.call(7, 1, read, 4, 40)
	h.record(lifecycle.Exec, 7, 2, "python3")
	h.kernel.call(7, 2, execve, 1, 1000) // execve returns in the new generation
	h.kernel.call(7, 2, read, 10, 100)
	h.kernel.fail(7, 1, openat, enoent, 1)
	h.kernel.fail(7, 2, openat, enoent, 2)

	want := map[SeriesKey]loader.Counts{
		series("bash", read):      counts(4, 40),
		series("python3", execve): counts(1, 1000),
		series("python3", read):   counts(10, 100),
	}
	wantErrors := map[ErrorKey]uint64{
		errSeries("bash", openat, enoent):    1,
		errSeries("python3", openat, enoent): 2,
	}
	snap := h.snapshot()
	checkCalls(t, "live", snap.Calls, want)
	checkErrors(t, "live", snap.Errors, wantErrors)
	if snap.Processes != 1 {
		t.Errorf("Processes = %d, want 1 (two generations of one process)", snap.Processes)
	}

	h.record(lifecycle.Exit, 7, 2, "python3")
	snap = h.snapshot()
	checkCalls(t, "exited", snap.Calls, want)
	checkErrors(t, "exited", snap.Errors, wantErrors)
	if len(h.kernel.deletedStats) != 3 || len(h.kernel.deletedErrors) != 2 {
		t.Errorf("deleted %d stats and %d errors entries, want 3 and 2", len(h.kernel.deletedStats), len(h.kernel.deletedErrors))
	}
}

func TestRenameAfterSnapshot(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 9, 1, "worker")
	h.kernel.call(9, 1, read, 10, 100)
	h.kernel.fail(9, 1, openat, enoent, 1)
	steps := []struct {
		name       string
		act        func()
		wantCalls  map[SeriesKey]loader.Counts
		wantErrors map[ErrorKey]uint64
	}{
		{"before rename", func() {},
			map[SeriesKey]loader.Counts{series("worker", read): counts(10, 100)},
			map[ErrorKey]uint64{errSeries("worker", openat, enoent): 1}},
		{"renamed", func() {
			h.kernel.call(9, 1, read, 5, 50)
			h.kernel.fail(9, 1, openat, enoent, 2)
			h.record(lifecycle.Rename, 9, 1, "worker-1")
			h.kernel.call(9, 1, read, 3, 30)
		}, map[SeriesKey]loader.Counts{series("worker", read): counts(10, 100), series("worker-1", read): counts(8, 80)},
			map[ErrorKey]uint64{errSeries("worker", openat, enoent): 1, errSeries("worker-1", openat, enoent): 2}},
		{"more under the new name", func() { h.kernel.call(9, 1, read, 2, 20) },
			map[SeriesKey]loader.Counts{series("worker", read): counts(10, 100), series("worker-1", read): counts(10, 100)},
			map[ErrorKey]uint64{errSeries("worker", openat, enoent): 1, errSeries("worker-1", openat, enoent): 2}},
		{"renamed back, seen by a fold first", func() {
			h.kernel.call(9, 1, read, 1, 10)
			h.record(lifecycle.Rename, 9, 1, "worker")
			h.fold()
			h.kernel.call(9, 1, read, 4, 40)
			h.kernel.fail(9, 1, openat, enoent, 5)
		}, map[SeriesKey]loader.Counts{series("worker", read): counts(15, 150), series("worker-1", read): counts(10, 100)},
			map[ErrorKey]uint64{errSeries("worker", openat, enoent): 6, errSeries("worker-1", openat, enoent): 2}},
		{"exits under a third name", func() {
			h.kernel.call(9, 1, read, 1, 10)
			h.record(lifecycle.Exit, 9, 1, "done")
		}, map[SeriesKey]loader.Counts{series("worker", read): counts(15, 150), series("worker-1", read): counts(10, 100), series("done", read): counts(1, 10)},
			map[ErrorKey]uint64{errSeries("worker", openat, enoent): 6, errSeries("worker-1", openat, enoent): 2}},
	}
	var prev *Snapshot
	for _, s := range steps {
		s.act()
		var kernelCalls, kernelErrors uint64
		for _, c := range h.kernel.stats {
			kernelCalls += c.Calls
		}
		for _, n := range h.kernel.errs {
			kernelErrors += n
		}
		snap := h.snapshot()
		checkCalls(t, s.name, snap.Calls, s.wantCalls)
		checkErrors(t, s.name, snap.Errors, s.wantErrors)
		if calls, errs := sumCalls(snap).Calls, sumErrors(snap); calls != kernelCalls || errs != kernelErrors {
			t.Errorf("%s: series sum to %d calls and %d errors, the kernel has %d and %d", s.name, calls, errs, kernelCalls, kernelErrors)
		}
		if prev != nil {
			checkNonDecreasing(t, s.name, prev, snap)
		}
		prev = snap
	}
}

// checkNonDecreasing fails if a series of prev is missing or lower in next.
func checkNonDecreasing(t *testing.T, step string, prev, next *Snapshot) {
	t.Helper()
	for k, p := range prev.Calls {
		n, ok := next.Calls[k]
		if !ok || n.Calls < p.Calls || n.NS < p.NS {
			t.Errorf("%s: series %+v went from %+v to %+v (present: %v)", step, k, p, n, ok)
		}
	}
	for k, p := range prev.Errors {
		if n, ok := next.Errors[k]; !ok || n < p {
			t.Errorf("%s: error series %+v went from %d to %d (present: %v)", step, k, p, n, ok)
		}
	}
}

func sumCalls(s *Snapshot) loader.Counts {
	var sum loader.Counts
	for _, c := range s.Calls {
		sum.Calls += c.Calls
		sum.NS += c.NS
	}
	return sum
}

func sumErrors(s *Snapshot) uint64 {
	var sum uint64
	for _, n := range s.Errors {
		sum += n
	}
	return sum
}

// TestCountersNeverGoBackwards drives random process lives (forks with
// reused tgids and shared exec ids, execs, renames, exits, lost fork and exit
// records) and checks at every snapshot that no series decreased and that
// the series add up to exactly what the kernel counted, less what belongs to
// live processes that cannot be named yet.
func TestCountersNeverGoBackwards(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			runRandomLives(t, seed, 3000)
		})
	}
}

type simProcess struct {
	execID uint32
	comm   string
}

func runRandomLives(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	h, dead, _, clock := sweepHarness(t, 10*time.Second)
	// Every series stays: the sums below must equal every count.
	h.tally.SetLimits(Limits{})

	names := []string{"a", "b", "c", "d", "e"}
	syscalls := []Syscall{read, write, openat, read32}
	errnos := []uint32{enoent, eacces}
	live := make(map[uint32]*simProcess)
	var total loader.Counts
	var totalErrors uint64
	var prev *Snapshot

	liveTGID := func() (uint32, *simProcess, bool) {
		if len(live) == 0 {
			return 0, nil, false
		}
		tgids := slices.Sorted(maps.Keys(live))
		tgid := tgids[rng.IntN(len(tgids))]
		return tgid, live[tgid], true
	}
	// hidden is what the kernel holds for live generations nothing names
	// yet: a snapshot leaves them out until a record, /proc or the sweep
	// names them.
	hidden := func() (loader.Counts, uint64) {
		var c loader.Counts
		var e uint64
		for k, v := range h.kernel.stats {
			if _, ok := h.procs.Name(k.Tgid, k.ExecId); !ok && !h.procs.ExitedGeneration(k.Tgid, k.ExecId) {
				c.Calls += v.Calls
				c.NS += v.NS
			}
		}
		for k, n := range h.kernel.errs {
			if _, ok := h.procs.Name(k.Tgid, k.ExecId); !ok && !h.procs.ExitedGeneration(k.Tgid, k.ExecId) {
				e += n
			}
		}
		return c, e
	}
	check := func(step int) {
		t.Helper()
		clock.t = clock.t.Add(time.Duration(rng.IntN(12)) * time.Second)
		snap := h.snapshot()
		hiddenCalls, hiddenErrors := hidden()
		if got, want := sumCalls(snap), sub(total, hiddenCalls); got != want {
			t.Fatalf("step %d: series sum to %+v, want %+v (%+v counted, %+v not named yet)", step, got, want, total, hiddenCalls)
		}
		if got, want := sumErrors(snap), totalErrors-hiddenErrors; got != want {
			t.Fatalf("step %d: error series sum to %d, want %d (%d counted, %d not named yet)", step, got, want, totalErrors, hiddenErrors)
		}
		if prev != nil {
			checkNonDecreasing(t, fmt.Sprint("step ", step), prev, snap)
			if t.Failed() {
				t.FailNow()
			}
		}
		prev = snap
	}

	for step := range steps {
		switch r := rng.IntN(100); {
		case r < 55: // calls; a new entry's announcement may be lost
			if tgid, p, ok := liveTGID(); ok {
				n := uint64(rng.IntN(5) + 1)
				ns := n * uint64(rng.IntN(1000))
				h.kernel.muted = rng.IntN(20) == 0
				h.kernel.call(tgid, p.execID, syscalls[rng.IntN(len(syscalls))], n, ns)
				h.kernel.muted = false
				total.Calls += n
				total.NS += ns
			}
		case r < 65: // failed calls
			if tgid, p, ok := liveTGID(); ok {
				n := uint64(rng.IntN(3) + 1)
				h.kernel.muted = rng.IntN(20) == 0
				h.kernel.fail(tgid, p.execID, syscalls[rng.IntN(len(syscalls))], errnos[rng.IntN(len(errnos))], n)
				h.kernel.muted = false
				totalErrors += n
			}
		case r < 72: // fork, on a tgid that may wait for its fold; its record may be lost
			tgid := uint32(rng.IntN(6) + 100)
			if _, ok := live[tgid]; ok {
				continue
			}
			// The kernel's generation ids differ between processes of one
			// tgid (generation_of): each process numbers its own.
			p := &simProcess{execID: uint32(step)<<8 | uint32(rng.IntN(3)), comm: names[rng.IntN(len(names))]}
			live[tgid] = p
			dead[tgid] = false
			if rng.IntN(10) > 0 {
				h.record(lifecycle.Fork, tgid, p.execID, p.comm)
			}
		case r < 77: // exec
			if tgid, p, ok := liveTGID(); ok {
				p.execID++
				p.comm = names[rng.IntN(len(names))]
				h.record(lifecycle.Exec, tgid, p.execID, p.comm)
			}
		case r < 82: // rename
			if tgid, p, ok := liveTGID(); ok {
				p.comm = names[rng.IntN(len(names))]
				h.record(lifecycle.Rename, tgid, p.execID, p.comm)
			}
		case r < 90: // exit; its record may be lost
			if tgid, p, ok := liveTGID(); ok {
				if rng.IntN(10) > 0 {
					h.record(lifecycle.Exit, tgid, p.execID, p.comm)
				}
				delete(live, tgid)
				dead[tgid] = true
			}
		case r < 94:
			exited := func(k loader.ErrnoKey) bool { return h.procs.ExitedGeneration(k.Tgid, k.ExecId) }
			var final []loader.ErrnoKey
			for k := range h.kernel.stats {
				if k := (loader.ErrnoKey{Tgid: k.Tgid, ExecId: k.ExecId, Nr: k.Nr, Abi: k.Abi}); exited(k) {
					final = append(final, k)
				}
			}
			for k := range h.kernel.errs {
				if exited(k) {
					final = append(final, k)
				}
			}
			h.fold()
			// Whether it looked entries up by key or read them all, a
			// fold leaves nothing of a process that had exited.
			for _, k := range final {
				_, stats := h.kernel.stats[loader.SyscallKey{Tgid: k.Tgid, ExecId: k.ExecId, Nr: k.Nr, Abi: k.Abi}]
				if _, errs := h.kernel.errs[k]; (k.Err == 0 && stats) || (k.Err != 0 && errs) {
					t.Fatalf("step %d: the fold left %+v of an exited process", step, k)
				}
			}
		default:
			check(step)
		}
	}
	for tgid, p := range live {
		h.record(lifecycle.Exit, tgid, p.execID, p.comm)
		dead[tgid] = true
	}
	// Three sweeps: the first finds the entries nothing named, the second
	// finds their processes dead, the third (after a drain that brought no
	// exit record) marks them gone.
	for range 3 {
		clock.t = clock.t.Add(10 * time.Second)
		h.snapshot()
	}
	check(steps)
	if len(h.kernel.stats) != 0 || len(h.kernel.errs) != 0 {
		t.Errorf("after every process exited, the kernel keeps %d stats and %d errors entries", len(h.kernel.stats), len(h.kernel.errs))
	}
	if n := h.procs.ExitedCount(); n != 0 {
		t.Errorf("after the last fold, %d exited processes wait", n)
	}
}

func TestOverflowCountedUnderOther(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 10, 1, "busy")
	h.kernel.call(10, 1, read, 1, 10)
	h.kernel.overflow[read] = counts(100, 1000)
	h.kernel.overflow[openat] = counts(5, 50)
	h.kernel.overflowErrs[errnoKey(0, 0, openat, enoent)] = 3
	h.kernel.overflowErrs[errnoKey(0, 0, read32, eacces)] = 2

	snap := h.snapshot()
	checkCalls(t, "overflow", snap.Calls, map[SeriesKey]loader.Counts{
		series("busy", read):      counts(1, 10),
		series(OtherComm, read):   counts(100, 1000),
		series(OtherComm, openat): counts(5, 50),
	})
	checkErrors(t, "overflow", snap.Errors, map[ErrorKey]uint64{
		errSeries(OtherComm, openat, enoent): 3,
		errSeries(OtherComm, read32, eacces): 2,
	})
	if _, ok := snap.Histograms[openat]; !ok {
		t.Error("no histogram for a syscall seen only in the overflow counters")
	}
	if snap.StatsEntries != 1 || snap.ErrorsEntries != 0 {
		t.Errorf("entries = %d, %d; overflow slots are not per-process entries", snap.StatsEntries, snap.ErrorsEntries)
	}
	if len(h.kernel.deletedStats) != 0 {
		t.Errorf("overflow counters deleted: %v", h.kernel.deletedStats)
	}
}

// A full per-process map: the kernel counts by process name and cgroup,
// and those counts join the series of the processes that have entries.
func TestGroupCountsJoinTheirProcessesSeries(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 10, 1, "nginx")
	h.kernel.call(10, 1, read, 1, 10)
	h.kernel.callInGroup(nginxCgroup, "nginx", read, 100, 1000)
	h.kernel.callInGroup(dockerCgroup, "nginx", read, 20, 200)
	h.kernel.callInGroup(nginxCgroup, "postgres", openat, 5, 50)
	h.kernel.groupErrs[groupKey(nginxCgroup, "postgres", openat, enoent)] = 3

	snap := h.snapshot()
	checkCalls(t, "by comm", snap.Calls, map[SeriesKey]loader.Counts{
		series("nginx", read):      counts(121, 1210),
		series("postgres", openat): counts(5, 50),
	})
	checkErrors(t, "by comm", snap.Errors, map[ErrorKey]uint64{errSeries("postgres", openat, enoent): 3})
	if snap.GroupStatsEntries != 3 || snap.GroupErrorsEntries != 1 || snap.StatsEntries != 1 {
		t.Errorf("entries = %d group stats, %d group errors, %d stats; want 3, 1, 1", snap.GroupStatsEntries, snap.GroupErrorsEntries, snap.StatsEntries)
	}
	if _, ok := snap.Histograms[openat]; !ok {
		t.Error("no histogram for a syscall seen only in the group counters")
	}

	// With cgroup labels and pid, each group is its own series, pid "~other";
	// what was exported before stays under the old labels.
	h.tally.SetLabels(LabelSet(LabelComm|LabelUnit|LabelContainer|LabelPID), newFakeCgroups())
	h.kernel.callInGroup(nginxCgroup, "nginx", read, 1, 10)
	h.kernel.callInGroup(dockerCgroup, "nginx", read, 2, 20)
	next := h.snapshot()
	inNginx := Labels{Comm: "nginx", Unit: "nginx.service", PID: OtherComm}
	inDocker := Labels{Comm: "nginx", Unit: dockerUnit, Container: ctrID, PID: OtherComm}
	checkCalls(t, "by cgroup", next.Calls, map[SeriesKey]loader.Counts{
		series("nginx", read):      counts(121, 1210),
		series("postgres", openat): counts(5, 50),
		{inNginx, read}:            counts(1, 10),
		{inDocker, read}:           counts(2, 20),
	})
	checkErrors(t, "by cgroup", next.Errors, map[ErrorKey]uint64{errSeries("postgres", openat, enoent): 3})
	if len(h.kernel.groups) != 3 {
		t.Errorf("group entries deleted: %d left, want 3", len(h.kernel.groups))
	}
}

// groupHarness is a tally with group entries in two cgroups, labelled by
// comm and unit, on a fake clock.
func groupHarness(t *testing.T) (*harness, *fakeCgroups, *fakeClock) {
	h := newHarness(t, nil)
	clock := &fakeClock{time.Unix(1_000_000, 0)}
	h.tally.now = clock.now
	cg := newFakeCgroups()
	cg.gone = make(map[uint64]bool)
	h.tally.SetLabels(LabelSet(LabelComm|LabelUnit), cg)
	h.kernel.callInGroup(nginxCgroup, "nginx", read, 100, 1000)
	h.kernel.callInGroup(dockerCgroup, "nginx", read, 20, 200)
	h.kernel.groupErrs[groupKey(nginxCgroup, "nginx", openat, enoent)] = 3
	return h, cg, clock
}

var (
	nginxGroup  = Labels{Comm: "nginx", Unit: "nginx.service"}
	dockerGroup = Labels{Comm: "nginx", Unit: dockerUnit}
)

// A removed cgroup's group entries are folded and deleted at the first
// scrape cgroupGrace after its removal record; their counts stay exported,
// once, and the record is forgotten once they are.
func TestGroupEntriesOfARemovedCgroupFoldedAfterItsRecord(t *testing.T) {
	h, _, clock := groupHarness(t)
	want := map[SeriesKey]loader.Counts{{nginxGroup, read}: counts(100, 1000), {dockerGroup, read}: counts(20, 200)}
	wantErrs := map[ErrorKey]uint64{{SeriesKey{nginxGroup, openat}, enoent}: 3}
	checkCalls(t, "cgroup there", h.snapshot().Calls, want)

	h.tally.CgroupRemoved(nginxCgroup)
	h.tally.CgroupRemoved(rootCgroup) // a cgroup without group entries
	// A call that read the cgroup just before its removal, counted after
	// the next scrape: the entry waits cgroupGrace, and so is this count.
	clock.t = clock.t.Add(cgroupGrace / 2)
	h.snapshot()
	h.kernel.callInGroup(nginxCgroup, "nginx", read, 1, 10)
	want[SeriesKey{nginxGroup, read}] = counts(101, 1010)
	if len(h.kernel.groups) != 2 || len(h.kernel.groupErrs) != 1 {
		t.Fatalf("group entries deleted within cgroupGrace of the removal: %d stats, %d errors left, want 2, 1",
			len(h.kernel.groups), len(h.kernel.groupErrs))
	}

	clock.t = clock.t.Add(cgroupGrace / 2)
	snap := h.snapshot()
	checkCalls(t, "at the fold", snap.Calls, want)
	checkErrors(t, "at the fold", snap.Errors, wantErrs)
	if _, ok := h.kernel.groups[groupKey(nginxCgroup, "nginx", read, 0)]; ok || len(h.kernel.groups) != 1 || len(h.kernel.groupErrs) != 0 {
		t.Errorf("removed cgroup's group entries not deleted: %d stats, %d errors left, want 1, 0", len(h.kernel.groups), len(h.kernel.groupErrs))
	}
	if _, ok := h.tally.goneSince[rootCgroup]; ok {
		t.Error("a removed cgroup without group entries is still remembered after the grace")
	}
	// Folded: the same totals, from the lasting ones.
	snap = h.snapshot()
	checkCalls(t, "folded", snap.Calls, want)
	checkErrors(t, "folded", snap.Errors, wantErrs)
	if snap.GroupStatsEntries != 1 || snap.GroupErrorsEntries != 0 {
		t.Errorf("entries = %d group stats, %d group errors; want 1, 0", snap.GroupStatsEntries, snap.GroupErrorsEntries)
	}
	if len(h.tally.goneSince) != 0 {
		t.Errorf("removed cgroups still remembered after their entries were folded: %v", h.tally.goneSince)
	}
}

// Unscraped for long, the tally keeps removal records for the scrape to
// come, up to maxGoneCgroups, the newest.
func TestRemovalRecordsKeptUntilAScrapeReadsTheirEntries(t *testing.T) {
	h, _, clock := groupHarness(t)
	h.snapshot()
	// A cgroup the last scrape did not see: a short job, after it.
	h.kernel.callInGroup(rootCgroup, "job", read, 5, 50)
	h.tally.CgroupRemoved(rootCgroup)
	for range 30 {
		clock.t = clock.t.Add(time.Minute)
		h.fold()
	}
	snap := h.snapshot()
	if _, ok := h.kernel.groups[groupKey(rootCgroup, "job", read, 0)]; ok {
		t.Error("a removed cgroup's entry is left after 30 minutes of folds and a scrape")
	}
	checkCalls(t, "after", h.snapshot().Calls, snap.Calls)

	for i := range uint64(maxGoneCgroups + 1) {
		clock.t = clock.t.Add(time.Millisecond)
		h.tally.CgroupRemoved(1000 + i)
	}
	h.fold()
	if n := len(h.tally.goneSince); n > maxGoneCgroups {
		t.Errorf("%d removal records kept, want at most %d", n, maxGoneCgroups)
	}
	if _, ok := h.tally.goneSince[1000+maxGoneCgroups]; !ok {
		t.Error("the newest removal record was dropped")
	}
	if _, ok := h.tally.goneSince[1000]; ok {
		t.Error("the oldest removal record was kept")
	}
}

// Without its removal record (the ring buffer was full), the resolver finds
// a removed cgroup at a scrape; its entries are folded cgroupGrace later.
func TestGroupEntriesOfARemovedCgroupFoldedWithoutItsRecord(t *testing.T) {
	h, cg, clock := groupHarness(t)
	want := map[SeriesKey]loader.Counts{{nginxGroup, read}: counts(100, 1000), {dockerGroup, read}: counts(20, 200)}
	h.snapshot()
	h.snapshot()
	if cg.removedAsked != 1 {
		t.Errorf("the resolver was asked %d times in two scrapes within a sweep, want 1", cg.removedAsked)
	}
	cg.gone[dockerCgroup] = true
	// The resolver is asked once per sweep: this scrape is the next one's.
	clock.t = clock.t.Add(h.tally.sweepEvery)
	checkCalls(t, "found gone", h.snapshot().Calls, want)
	if len(h.kernel.groups) != 2 {
		t.Fatalf("group entries deleted at the scrape that found the cgroup gone: %d left, want 2", len(h.kernel.groups))
	}
	clock.t = clock.t.Add(cgroupGrace)
	checkCalls(t, "folded", h.snapshot().Calls, want)
	if _, ok := h.kernel.groups[groupKey(dockerCgroup, "nginx", read, 0)]; ok || len(h.kernel.groups) != 1 {
		t.Errorf("removed cgroup's group entry not deleted: %d left, want 1", len(h.kernel.groups))
	}
	checkCalls(t, "after", h.snapshot().Calls, want)
}

// A delete that fails part way: what it deleted is folded, the rest is
// retried at the next scrape; no count is lost or counted twice.
func TestGroupEntriesDeletedPartWayFoldOnlyWhatWasDeleted(t *testing.T) {
	h, _, clock := groupHarness(t)
	want := map[SeriesKey]loader.Counts{{nginxGroup, read}: counts(100, 1000), {dockerGroup, read}: counts(20, 200)}
	h.kernel.callInGroup(nginxCgroup, "nginx", openat, 7, 70)
	want[SeriesKey{nginxGroup, openat}] = counts(7, 70)
	h.snapshot()
	h.tally.CgroupRemoved(nginxCgroup)
	clock.t = clock.t.Add(cgroupGrace)
	budget := 1
	h.kernel.deleteBudget = &budget
	if _, err := h.tally.Snapshot(); err == nil {
		t.Fatal("Snapshot succeeded with a delete failing part way")
	}
	h.kernel.deleteBudget = nil
	if len(h.kernel.groups) != 2 {
		t.Fatalf("%d group entries left after a delete of one of two, want 2", len(h.kernel.groups))
	}
	checkCalls(t, "after a partial delete", h.snapshot().Calls, want)
	checkCalls(t, "all folded", h.snapshot().Calls, want)
	if len(h.kernel.groups) != 1 {
		t.Errorf("%d group entries left, want 1 (docker's)", len(h.kernel.groups))
	}
}

// A group entry whose labels change (its cgroup resolved a scrape late)
// keeps its total in the snapshot of the change: no counter dips.
func TestGroupEntryRelabelledKeepsItsTotalAtTheChange(t *testing.T) {
	h := newHarness(t, nil)
	cg := newFakeCgroups()
	path := cg.paths[nginxCgroup]
	delete(cg.paths, nginxCgroup)
	h.tally.SetLabels(LabelSet(LabelComm|LabelUnit), cg)
	h.kernel.callInGroup(nginxCgroup, "nginx", read, 100, 1000)
	unresolved := Labels{Comm: "nginx"}
	checkCalls(t, "unresolved", h.snapshot().Calls, map[SeriesKey]loader.Counts{{unresolved, read}: counts(100, 1000)})
	cg.paths[nginxCgroup] = path
	h.kernel.callInGroup(nginxCgroup, "nginx", read, 1, 10)
	checkCalls(t, "resolved", h.snapshot().Calls, map[SeriesKey]loader.Counts{
		{unresolved, read}: counts(100, 1000),
		{nginxGroup, read}: counts(1, 10),
	})
}

func TestExitedProcessWithoutNameCountedUnderUnknown(t *testing.T) {
	h := newHarness(t, nil)
	// No record and no /proc entry: its fork and exit records were lost.
	h.kernel.call(66, 2, read, 9, 90)
	h.kernel.fail(66, 2, openat, enoent, 1)
	h.procs.MarkGone(66)

	snap := h.snapshot()
	checkCalls(t, "unknown", snap.Calls, map[SeriesKey]loader.Counts{series(UnknownComm, read): counts(9, 90)})
	checkErrors(t, "unknown", snap.Errors, map[ErrorKey]uint64{errSeries(UnknownComm, openat, enoent): 1})
	h.fullFold() // an exited process is kept through two full reads
	if len(h.kernel.stats) != 0 || len(h.kernel.errs) != 0 || h.procs.Exited(66) {
		t.Errorf("unnamed exited process not folded: %d stats, %d errors entries left, exited %v",
			len(h.kernel.stats), len(h.kernel.errs), h.procs.Exited(66))
	}
}

func TestUnnameableLiveProcessSkippedUntilNamed(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 1, 1, "init")
	h.kernel.call(1, 1, read, 1, 1)
	// Process 70's fork record is still in flight and /proc does not have it.
	h.kernel.call(70, 3, read, 4, 40)
	h.kernel.fail(70, 3, openat, enoent, 1)

	snap := h.snapshot()
	checkCalls(t, "unnamed", snap.Calls, map[SeriesKey]loader.Counts{series("init", read): counts(1, 1)})
	checkErrors(t, "unnamed", snap.Errors, map[ErrorKey]uint64{})
	if snap.Processes != 1 {
		t.Errorf("Processes = %d, want 1", snap.Processes)
	}
	if len(h.kernel.stats) != 2 || len(h.kernel.errs) != 1 {
		t.Errorf("an unnamed live process's entries were deleted")
	}

	h.kernel.call(70, 3, read, 1, 10)
	h.procComm(70, "late")
	snap = h.snapshot()
	checkCalls(t, "named", snap.Calls, map[SeriesKey]loader.Counts{
		series("init", read): counts(1, 1),
		series("late", read): counts(5, 50),
	})
	checkErrors(t, "named", snap.Errors, map[ErrorKey]uint64{errSeries("late", openat, enoent): 1})
}

// sweepHarness is a harness on a fake clock whose tally sweeps every
// every, asking whether a process is alive of dead (false unless set) and
// counting the questions in asked.
func sweepHarness(t *testing.T, every time.Duration) (*harness, map[uint32]bool, map[uint32]int, *fakeClock) {
	dead := make(map[uint32]bool)
	asked := make(map[uint32]int)
	h := newHarness(t, func(tgid uint32) bool {
		asked[tgid]++
		return !dead[tgid]
	})
	clock := &fakeClock{time.Unix(1_000_000, 0)}
	h.tally.now = clock.now
	h.tally.sweepEvery = every
	return h, dead, asked, clock
}

// fakeClock is the tally's now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestSweepMarksDeadProcessesGone(t *testing.T) {
	h, dead, asked, clock := sweepHarness(t, 10*time.Second)

	h.record(lifecycle.Fork, 80, 1, "dying")
	h.record(lifecycle.Fork, 81, 1, "living")
	h.record(lifecycle.Fork, 82, 1, "exiting")
	h.kernel.call(80, 1, read, 2, 20)
	h.kernel.call(80, 1, write, 1, 10) // two entries, one question
	h.kernel.call(81, 1, read, 3, 30)
	h.kernel.call(82, 1, read, 1, 10)
	h.kernel.fail(80, 1, openat, enoent, 1)
	h.snapshot() // the first sync starts the sweep's clock: the table is fresh from /proc
	if len(asked) != 0 {
		t.Errorf("the first sync asked %v; want nobody asked before sweepEvery", asked)
	}

	// 80's exit record is lost; 82's arrives.
	dead[80], dead[82] = true, true
	h.record(lifecycle.Exit, 82, 1, "exiting")
	clock.t = clock.t.Add(5 * time.Second)
	h.snapshot()
	if len(asked) != 0 {
		t.Errorf("swept before sweepEvery passed: asked %v", asked)
	}
	if _, ok := h.kernel.stats[statsKey(80, 1, read)]; !ok {
		t.Fatal("process 80 folded before a sweep found it dead")
	}

	clock.t = clock.t.Add(5 * time.Second)
	h.snapshot()
	if asked[80] != 1 || asked[81] != 1 || asked[82] != 0 {
		t.Errorf("alive asked %v; want once each for 80 and 81, never for the exited 82", asked)
	}
	// Its records may still be in the ring buffer: it is marked gone only
	// after the next drain, if that brings no exit record.
	if _, ok := h.kernel.stats[statsKey(80, 1, read)]; !ok {
		t.Fatal("process 80 folded before a drain after the sweep")
	}
	snap := h.snapshot()
	if asked[80] != 2 {
		t.Errorf("alive asked %d times for 80, want twice (the sweep, then after the drain)", asked[80])
	}
	checkCalls(t, "swept", snap.Calls, map[SeriesKey]loader.Counts{
		series("dying", read):   counts(2, 20),
		series("dying", write):  counts(1, 10),
		series("living", read):  counts(3, 30),
		series("exiting", read): counts(1, 10),
	})
	checkErrors(t, "swept", snap.Errors, map[ErrorKey]uint64{errSeries("dying", openat, enoent): 1})
	for _, k := range []loader.SyscallKey{statsKey(80, 1, read), statsKey(80, 1, write)} {
		if _, ok := h.kernel.stats[k]; ok {
			t.Errorf("dead process's entry %+v still in the kernel", k)
		}
	}
	if len(h.kernel.errs) != 0 {
		t.Errorf("dead process's errors entries still in the kernel: %v", h.kernel.errs)
	}
	h.fullFold() // an exited process is kept through two full reads
	if h.procs.Exited(80) || !h.procs.Known(81) {
		t.Errorf("after the sweep: Exited(80) = %v, Known(81) = %v", h.procs.Exited(80), h.procs.Known(81))
	}
	if snap.FoldedProcesses != 2 {
		t.Errorf("FoldedProcesses = %d, want 2", snap.FoldedProcesses)
	}
}

// A process whose exit record was lost and that has no per-process entry
// (filtered out, or counted by name in full maps) is found by the sweep too:
// the table does not keep it until its pid comes back.
func TestSweepForgetsDeadProcessesWithoutEntries(t *testing.T) {
	h, dead, _, clock := sweepHarness(t, 10*time.Second)
	h.record(lifecycle.Fork, 90, 1, "quiet")
	h.record(lifecycle.Fork, 91, 1, "alive")
	h.snapshot()
	live := h.procs.Live()
	dead[90] = true // and its exit record lost
	for range 4 {   // a sweep, a drain, two full reads
		clock.t = clock.t.Add(10 * time.Second)
		h.snapshot()
	}
	if h.procs.Known(90) || h.procs.Exited(90) || !h.procs.Known(91) {
		t.Errorf("after the sweeps: Known(90) = %v, Exited(90) = %v, Known(91) = %v; want 90 forgotten, 91 kept",
			h.procs.Known(90), h.procs.Exited(90), h.procs.Known(91))
	}
	if got := h.procs.Live(); got != live-1 {
		t.Errorf("Live() = %d, want %d", got, live-1)
	}
}

// A lifecycle record lost (ring buffer full) may be an exit: the sync a
// second later sweeps, not the one sweepEvery later, and the process with
// a fork record but no exit record is folded. CI's churn of 100,000
// processes lost 10% of its records and left 58 processes' entries in the
// kernel past the test's 10 s when only the 30 s sweep could find them.
func TestLostRecordsBringTheSweepEarly(t *testing.T) {
	h, dead, asked, clock := sweepHarness(t, 30*time.Second)
	h.record(lifecycle.Fork, 60, 1, "churned")
	h.kernel.call(60, 1, read, 3, 30)
	h.snapshot() // the first sync starts the sweep's clock
	clock.t = clock.t.Add(lossSweepGap)
	h.snapshot()
	if len(asked) != 0 {
		t.Fatalf("swept with no record lost: asked %v", asked)
	}

	if pending, err := h.tally.SweepPending(); err != nil || pending {
		t.Errorf("SweepPending() = %v, %v with no record lost, want false", pending, err)
	}
	dead[60] = true // and its exit record lost, as the kernel counts
	h.kernel.drops[loader.DropLifecycleRecord]++
	if pending, err := h.tally.SweepPending(); err != nil || !pending {
		t.Errorf("SweepPending() = %v, %v after a lost record, want true (the engine folds for it)", pending, err)
	}
	clock.t = clock.t.Add(lossSweepGap)
	h.snapshot() // sweeps: 60 found dead
	if asked[60] != 1 {
		t.Errorf("alive asked %d times for 60 after a lost record, want once", asked[60])
	}
	snap := h.snapshot() // after a drain with no exit record: gone, folded
	if _, ok := h.kernel.stats[statsKey(60, 1, read)]; ok {
		t.Errorf("entry of a process whose exit record was lost still in the kernel %v after the loss (sweepEvery %v)",
			lossSweepGap, h.tally.sweepEvery)
	}
	checkCalls(t, "swept", snap.Calls, map[SeriesKey]loader.Counts{series("churned", read): counts(3, 30)})

	// A loss is counted at a process's exit, before its parent reaps it:
	// the sweep that loss brings may find the zombie alive. One more
	// sweep follows.
	h.record(lifecycle.Fork, 62, 1, "zombie")
	h.kernel.call(62, 1, read, 1, 10)
	h.snapshot()
	h.kernel.drops[loader.DropLifecycleRecord]++ // 62's exit record lost; not reaped yet
	clock.t = clock.t.Add(lossSweepGap)
	h.snapshot()    // the sweep for the loss: 62 alive
	dead[62] = true // reaped
	clock.t = clock.t.Add(lossSweepGap / 2)
	h.snapshot()
	if asked[62] != 1 {
		t.Errorf("alive asked %d times for 62 within lossSweepGap of the sweep for its loss, want once (that sweep)", asked[62])
	}
	clock.t = clock.t.Add(lossSweepGap / 2)
	h.snapshot() // the sweep after it: 62 dead
	snap = h.snapshot()
	if _, ok := h.kernel.stats[statsKey(62, 1, read)]; ok {
		t.Errorf("entry of a process reaped after the sweep its lost exit brought still in the kernel")
	}
	checkCalls(t, "reaped", snap.Calls, map[SeriesKey]loader.Counts{
		series("churned", read): counts(3, 30),
		series("zombie", read):  counts(1, 10),
	})

	// No new loss: the sweeps are every sweepEvery again.
	clear(asked)
	h.record(lifecycle.Fork, 63, 1, "calm")
	for range 3 {
		clock.t = clock.t.Add(lossSweepGap)
		h.snapshot()
	}
	if len(asked) != 0 {
		t.Errorf("swept %v after a sweep with no new loss, want none before sweepEvery", asked)
	}
	if pending, err := h.tally.SweepPending(); err != nil || pending {
		t.Errorf("SweepPending() = %v, %v after the sweeps and folds a loss brought, want false", pending, err)
	}
}

// Records lost before the daemon's first sync (a fork storm while it
// started, or while it was starved of CPU) bring the sweep early too.
func TestRecordsLostBeforeTheFirstSyncBringTheSweep(t *testing.T) {
	h, dead, _, clock := sweepHarness(t, 30*time.Second)
	dead[61] = true // its exit record lost
	h.kernel.drops[loader.DropLifecycleRecord] = 5
	h.record(lifecycle.Fork, 61, 1, "early")
	h.kernel.call(61, 1, read, 2, 20)
	h.snapshot()
	clock.t = clock.t.Add(lossSweepGap)
	h.snapshot() // sweeps: 61 found dead
	snap := h.snapshot()
	if _, ok := h.kernel.stats[statsKey(61, 1, read)]; ok {
		t.Errorf("entry of a process whose exit record was lost before the first sync still in the kernel %v later", lossSweepGap)
	}
	checkCalls(t, "swept", snap.Calls, map[SeriesKey]loader.Counts{series("early", read): counts(2, 20)})
}

// A storm loses runs of records: a process whose fork record came and whose
// exec and exit records were lost has entries under a generation the table
// never heard of. Marked gone, it owns them: folded under ~unknown at once,
// not after the table forgets it (two full reads, up to a minute).
func TestLostExecAndExitFoldedUnderUnknown(t *testing.T) {
	h, dead, _, clock := sweepHarness(t, 30*time.Second)
	h.record(lifecycle.Fork, 64, 1, "shell")
	h.kernel.call(64, 1, execve, 1, 10)
	h.kernel.call(64, 2, read, 4, 40) // after an exec whose record was lost
	h.snapshot()
	dead[64] = true
	h.kernel.drops[loader.DropLifecycleRecord] += 2
	clock.t = clock.t.Add(lossSweepGap)
	h.snapshot() // the sweep: 64 found dead
	snap := h.snapshot()
	if len(h.kernel.stats) != 0 {
		t.Errorf("entries left after the sweep and a drain: %v", h.kernel.stats)
	}
	checkCalls(t, "swept", snap.Calls, map[SeriesKey]loader.Counts{
		series("shell", execve):   counts(1, 10),
		series(UnknownComm, read): counts(4, 40),
	})
}

// A process the sweep finds dead whose records still wait in the ring
// buffer: its calls go to the name its records give, not to the one the
// table had. Seen in the 6.1 VM as 189 writes under the exec'd name: a full
// read met the process between its execve and its prctl(PR_SET_NAME) (named
// from /proc), it renamed itself, wrote and exited, and a sync served with
// no drain before it swept it dead and folded it under the old name.
func TestSweepWaitsForTheRecordsOfADeadProcess(t *testing.T) {
	h, dead, _, clock := sweepHarness(t, 10*time.Second)
	h.procComm(70, "workload")
	h.kernel.call(70, 3, execve, 1, 10)
	h.fold() // a full read: no record yet, named from /proc

	h.kernel.call(70, 3, write, 189, 1890)
	dead[70] = true
	clock.t = clock.t.Add(10 * time.Second)
	if err := h.tally.Fold(); err != nil { // served with the last, no drain between
		t.Fatal(err)
	}
	if _, ok := h.kernel.stats[statsKey(70, 3, write)]; !ok {
		t.Fatal("a dead process folded before its records were drained")
	}
	h.record(lifecycle.Fork, 70, 2, "integration.tes")
	h.record(lifecycle.Exec, 70, 3, "workload")
	h.record(lifecycle.Rename, 70, 3, "many188")
	h.record(lifecycle.Exit, 70, 3, "many188")
	snap := h.snapshot()
	// Nothing was exported before the rename: all under the last name.
	checkCalls(t, "named", snap.Calls, map[SeriesKey]loader.Counts{
		series("many188", execve): counts(1, 10),
		series("many188", write):  counts(189, 1890),
	})
}

func TestSweepDisabledWithoutAlive(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 80, 1, "a")
	h.kernel.call(80, 1, read, 1, 1)
	h.tally.sweepEvery = 0
	h.snapshot()
	h.snapshot()
	if h.procs.Exited(80) {
		t.Error("process marked gone with no alive func")
	}
}

func TestExitedProcessWithoutEntriesIsForgotten(t *testing.T) {
	h := newHarness(t, nil)
	// One exits before any call of its own was counted (fork, then _exit);
	// the other's calls all went to the overflow counters (map full).
	h.record(lifecycle.Fork, 30, 1, "quick")
	h.record(lifecycle.Exit, 30, 1, "quick")
	h.record(lifecycle.Fork, 31, 1, "crowded")
	h.kernel.overflow[read] = counts(4, 40)
	h.record(lifecycle.Exit, 31, 1, "crowded")
	h.fullFold()
	h.fullFold() // an exited process is kept through two full reads
	if n := h.procs.ExitedCount(); n != 0 {
		t.Errorf("ExitedCount() = %d after two full reads, want 0", n)
	}
	snap := h.snapshot()
	if snap.FoldedProcesses != 0 {
		t.Errorf("FoldedProcesses = %d, want 0: no counts were folded", snap.FoldedProcesses)
	}
	checkCalls(t, "overflow", snap.Calls, map[SeriesKey]loader.Counts{series(OtherComm, read): counts(4, 40)})
}

func TestDeadUnnamedProcessSweptUnderUnknown(t *testing.T) {
	dead := map[uint32]bool{90: true}
	h := newHarness(t, func(tgid uint32) bool { return !dead[tgid] })
	clock := &fakeClock{time.Unix(1_000_000, 0)}
	h.tally.now = clock.now
	h.tally.sweepEvery = 10 * time.Second
	// Both of 90's records were lost, and it was gone before /proc was read.
	h.kernel.call(90, 1, read, 6, 60)
	h.kernel.fail(90, 1, openat, enoent, 2)

	snap := h.snapshot()
	checkCalls(t, "unnamed", snap.Calls, map[SeriesKey]loader.Counts{})

	clock.t = clock.t.Add(10 * time.Second)
	snap = h.snapshot() // dead; marked gone after a drain brings no record
	checkCalls(t, "dead", snap.Calls, map[SeriesKey]loader.Counts{})
	snap = h.snapshot()
	checkCalls(t, "swept", snap.Calls, map[SeriesKey]loader.Counts{series(UnknownComm, read): counts(6, 60)})
	checkErrors(t, "swept", snap.Errors, map[ErrorKey]uint64{errSeries(UnknownComm, openat, enoent): 2})
	if len(h.kernel.stats) != 0 || len(h.kernel.errs) != 0 {
		t.Errorf("dead unnamed process's entries still in the kernel: %v %v", h.kernel.stats, h.kernel.errs)
	}
}

// A process born after a drain, dead before the next: its records wait in
// the ring buffer (they wake the reader in batches), and syncs served
// before the next drain must leave its entries for its name.
func TestUnnamedProcessWaitsForTheNextDrain(t *testing.T) {
	dead := map[uint32]bool{90: true}
	h := newHarness(t, func(tgid uint32) bool { return !dead[tgid] })
	h.kernel.call(90, 1, read, 6, 60)
	h.kernel.fail(90, 1, openat, enoent, 2)

	h.fold()
	// A fold and a scrape served together: no drain between them.
	for step, sync := range []func() error{h.tally.Fold, func() error { _, err := h.tally.Snapshot(); return err }} {
		if err := sync(); err != nil {
			t.Fatalf("sync %d: %v", step, err)
		}
	}
	if len(h.kernel.stats) == 0 || len(h.kernel.errs) == 0 {
		t.Fatalf("entries of a process whose records are in flight were folded before the next drain")
	}
	// The drain brings its records.
	h.record(lifecycle.Fork, 90, 1, "short")
	h.record(lifecycle.Exit, 90, 1, "short")
	snap := h.snapshot()
	checkCalls(t, "named", snap.Calls, map[SeriesKey]loader.Counts{series("short", read): counts(6, 60)})
	checkErrors(t, "named", snap.Errors, map[ErrorKey]uint64{errSeries("short", openat, enoent): 2})
	if len(h.kernel.stats) != 0 || len(h.kernel.errs) != 0 {
		t.Errorf("exited process's entries still in the kernel: %v %v", h.kernel.stats, h.kernel.errs)
	}
}

// A tgid reused before the exited process was folded: the fold takes the
// new process's entries too (the tgid is exited), each under its own name.
func TestReusedTGIDBeforeFold(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 40, 2, "old")
	h.kernel.call(40, 2, read, 3, 30)
	h.record(lifecycle.Exit, 40, 2, "old")
	h.record(lifecycle.Fork, 40, 5, "new")
	h.kernel.call(40, 5, read, 4, 40)
	h.record(lifecycle.Exec, 40, 6, "newer")
	h.kernel.call(40, 6, read, 5, 50)

	snap := h.snapshot()
	want := map[SeriesKey]loader.Counts{
		series("old", read):   counts(3, 30),
		series("new", read):   counts(4, 40),
		series("newer", read): counts(5, 50),
	}
	checkCalls(t, "fold", snap.Calls, want)
	h.fullFold() // an exited process is kept through two full reads
	if !h.procs.Known(40) || h.procs.Exited(40) {
		t.Errorf("after the fold: Known(40) = %v, Exited(40) = %v; want the new process live", h.procs.Known(40), h.procs.Exited(40))
	}

	h.kernel.call(40, 6, read, 1, 10) // the entry comes back from zero
	want[series("newer", read)] = counts(6, 60)
	snap2 := h.snapshot()
	checkCalls(t, "after", snap2.Calls, want)
	checkNonDecreasing(t, "after", snap, snap2)
}

// A tgid reused before the fold: the exited process's generation is final,
// the new process's runs on. Its entries are left alone while it counts
// (deleting them between the read and the delete lost what it counted
// meanwhile), and each process keeps its own name and cgroup.
func TestReusedTGIDRunningProcessKeepsCounting(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 40, 2, "old")
	h.kernel.call(40, 2, read, 3, 30)
	h.snapshot()
	h.procs.Apply(lifecycle.Record{Kind: lifecycle.Exit, TGID: 40, ExecID: 2, Comm: "old", CgroupID: 7})
	h.procs.Apply(lifecycle.Record{Kind: lifecycle.Fork, TGID: 40, ExecID: 9, Comm: "new", CgroupID: 8})
	h.kernel.call(40, 9, read, 4, 40)
	made := counts(4, 40)
	h.kernel.afterStatsRead = func() { // "new" counts while each sync goes on
		h.kernel.call(40, 9, read, 10, 100)
		made = plusCounts(made, counts(10, 100))
	}
	for range 3 {
		h.fold()
	}
	h.kernel.afterStatsRead = nil
	if _, ok := h.kernel.stats[statsKey(40, 2, read)]; ok {
		t.Error("the exited process's entry is still in the kernel after the folds")
	}
	if h.procs.ExitedGeneration(40, 9) || !h.procs.ExitedGeneration(40, 2) {
		t.Errorf("ExitedGeneration(40, 9) = %v, (40, 2) = %v; want false, true", h.procs.ExitedGeneration(40, 9), h.procs.ExitedGeneration(40, 2))
	}
	if id, _ := h.procs.CgroupID(40, 9); id != 8 {
		t.Errorf("CgroupID(40, 9) = %d, want the new process's 8", id)
	}
	if id, _ := h.procs.CgroupID(40, 2); id != 7 {
		t.Errorf("CgroupID(40, 2) = %d, want the exited process's 7", id)
	}
	checkCalls(t, "both", h.snapshot().Calls, map[SeriesKey]loader.Counts{
		series("old", read): counts(3, 30),
		series("new", read): made,
	})
}

// Syscall numbers from 1023 up share the kernel's last histogram slot: it is
// read and exported once, not once per number (which counted its calls as
// many times as numbers were seen).
func TestSharedHistogramSlotReadOnce(t *testing.T) {
	h := newHarness(t, nil)
	big1, big2 := Syscall{NR: 2000}, Syscall{NR: 3000}
	shared := Syscall{NR: loader.NRSlots - 1}
	h.record(lifecycle.Fork, 10, 1, "fuzz")
	h.kernel.call(10, 1, big1, 2, 20)
	h.kernel.call(10, 1, big2, 3, 30)
	h.kernel.call(10, 1, read, 1, 10)
	h.kernel.hists[shared] = loader.Histogram{10: 5}
	h.kernel.hists[read] = loader.Histogram{10: 1}
	h.kernel.histReads = nil
	snap := h.snapshot()
	if len(snap.Histograms) != 2 || snap.Histograms[shared][10] != 5 || snap.Histograms[read][10] != 1 {
		t.Errorf("Histograms = %v; want the shared slot's and read's, once each", snap.Histograms)
	}
	if n := len(h.kernel.histReads); n != 2 {
		t.Errorf("%d histogram reads (%v), want 2", n, h.kernel.histReads)
	}
	if snap.SyscallNS[big1] != 20 || snap.SyscallNS[big2] != 30 {
		t.Errorf("SyscallNS = %v; each number keeps its own time", snap.SyscallNS)
	}
}

// A delete of exited processes' entries that fails part way: the entries
// it deleted are folded, the others are at the next sync; each once.
func TestDeleteFailingPartWayFoldsWhatItDeleted(t *testing.T) {
	h := newHarness(t, nil)
	h.record(lifecycle.Fork, 1, 1, "a")
	h.kernel.call(1, 1, read, 5, 50)
	h.kernel.call(1, 1, openat, 3, 30)
	h.kernel.call(1, 1, write, 2, 20)
	h.record(lifecycle.Exit, 1, 1, "a")
	want := map[SeriesKey]loader.Counts{
		series("a", read): counts(5, 50), series("a", openat): counts(3, 30), series("a", write): counts(2, 20),
	}
	budget := 2
	h.kernel.deleteBudget = &budget
	if _, err := h.tally.Snapshot(); !errors.Is(err, errFaked) {
		t.Fatalf("Snapshot() error = %v; want the faked error", err)
	}
	h.kernel.deleteBudget = nil
	if len(h.kernel.stats) != 1 {
		t.Fatalf("%d entries left after a delete of two of three, want 1", len(h.kernel.stats))
	}
	checkCalls(t, "retry", h.snapshot().Calls, want)
	if len(h.kernel.stats) != 0 {
		t.Errorf("entries left after the retry: %v", h.kernel.stats)
	}
	checkCalls(t, "folded", h.snapshot().Calls, want)
}

// A sync that fails part way (a map read or delete error) must leave the
// tally so that the next one counts every exited entry exactly once.
func TestFailedSyncDoesNotCountTwice(t *testing.T) {
	for _, method := range []string{"ReadStats", "ReadErrors", "DeleteStats", "DeleteErrors",
		"ReadGroupStats", "ReadGroupErrors", "ReadOverflowStats", "ReadOverflowErrors", "ReadHistogram", "ReadDrops"} {
		t.Run(method, func(t *testing.T) {
			h := newHarness(t, nil)
			h.record(lifecycle.Fork, 1, 1, "a")
			h.kernel.call(1, 1, read, 5, 50)
			h.kernel.fail(1, 1, openat, enoent, 2)
			h.snapshot()
			h.kernel.call(1, 1, read, 1, 10)
			h.kernel.fail(1, 1, openat, enoent, 1)
			h.record(lifecycle.Rename, 1, 1, "b")
			h.record(lifecycle.Exit, 1, 1, "b")

			h.kernel.failMethod = method
			if snap, err := h.tally.Snapshot(); !errors.Is(err, errFaked) || snap != nil {
				t.Fatalf("Snapshot() = %v, %v; want nil and the faked error", snap, err)
			}
			h.kernel.failMethod = ""
			snap := h.snapshot()
			checkCalls(t, "retry", snap.Calls, map[SeriesKey]loader.Counts{
				series("a", read): counts(5, 50),
				series("b", read): counts(1, 10),
			})
			checkErrors(t, "retry", snap.Errors, map[ErrorKey]uint64{
				errSeries("a", openat, enoent): 2,
				errSeries("b", openat, enoent): 1,
			})
			if len(h.kernel.stats)+len(h.kernel.errs) != 0 {
				t.Errorf("entries left after the retry: %v %v", h.kernel.stats, h.kernel.errs)
			}
		})
	}
}
