// Package tally keeps exact totals per process name and syscall: it reads
// the kernel's per-process counters, folds the counters of exited processes
// into lasting totals and deletes them from the kernel, and attributes each
// count to the name its process had, so that no exported counter ever goes
// backwards.
package tally

import (
	"slices"
	"time"

	"github.com/sysobsd/sysobsd/internal/loader"
)

// Label values for counts that have no process of their own.
const (
	// OtherComm labels calls the kernel could not key by process (map full),
	// and the overflow series of the series cap.
	OtherComm = "~other"
	// UnknownComm labels counts of a process that exited unseen by any record.
	UnknownComm = "~unknown"
)

const (
	// cgroupGrace is how long a removed cgroup's group entries wait to be
	// folded: a call that read the cgroup just before the removal (its
	// task moved out) may still be counting.
	cgroupGrace = 2 * time.Second
	// maxGoneCgroups bounds the removal records kept for a scrape to come
	// (each until a scrape has read the group maps cgroupGrace after it):
	// without scrapes, the oldest go first.
	maxGoneCgroups = 65536
)

var (
	otherLabels   = EveryLabel(OtherComm)
	unknownLabels = EveryLabel(UnknownComm)
)

// Limits bound what the tally keeps and exports.
type Limits struct {
	// MaxSeries caps the series of each per-process metric; label sets
	// beyond it are summed into one overflow series.
	MaxSeries int
	// IdleTimeout drops the series of label sets whose totals have not
	// changed for that long and that no running process contributes to
	// (0: never), bounding memory under process churn with a pid label.
	IdleTimeout time.Duration
}

// DefaultLimits suit a busy host.
var DefaultLimits = Limits{MaxSeries: 20000, IdleTimeout: 15 * time.Minute}

// Syscall is one syscall of one ABI.
type Syscall struct {
	ABI uint16
	NR  uint16
}

// SeriesKey is one exported label set of the per-process counters.
type SeriesKey struct {
	Labels
	Syscall
}

// ErrorKey is SeriesKey plus an errno.
type ErrorKey struct {
	SeriesKey
	Errno uint32
}

// Snapshot is everything a scrape exports, owned by the caller.
type Snapshot struct {
	Calls  map[SeriesKey]loader.Counts
	Errors map[ErrorKey]uint64
	// Histograms are the kernel's latency histograms by HistogramSlot.
	Histograms map[Syscall]loader.Histogram
	// SyscallNS is the time spent per syscall over all processes: the
	// histograms' sums.
	SyscallNS map[Syscall]uint64
	// LabelSet is the process labels of Calls and Errors.
	LabelSet LabelSet
	// CallsOther and ErrorsOther are the overflow series of the series cap
	// (every label "~other"); Overflows count the label sets sent there.
	CallsOther            loader.Counts
	ErrorsOther           uint64
	CallsSeriesOverflows  uint64
	ErrorsSeriesOverflows uint64
	Drops                 []uint64 // indexed like loader.DropReasons
	// Fill of the kernel's hash maps when the snapshot was taken.
	StatsEntries, ErrorsEntries int
	// CallSlotsEntries is the slots of call_slots in use, calls' and
	// errors' (loader.SlotCounts).
	CallSlotsEntries                      int
	GroupStatsEntries, GroupErrorsEntries int
	// Processes is how many running processes have counts in the kernel.
	Processes int
	// FoldedProcesses counts processes whose counts were folded since start.
	FoldedProcesses uint64
	// FoldsByKeys and FullReads count how syncs read the per-process maps:
	// looking up only finished processes' entries, or reading every entry.
	FoldsByKeys, FullReads uint64
	// EntryKeysLost counts the kernel's announcements of new entries that
	// were not sent (no count lost: the next syncs read the maps in full).
	EntryKeysLost uint64
	// MissedByKeys counts finished entries a full read found that the
	// tally had not been told of: folds by key had left them (none is lost).
	MissedByKeys uint64
	// DecodeErrors counts lifecycle records that did not decode.
	DecodeErrors uint64
	// InFlight are the threads inside a syscall at the scrape, by label
	// set; nil where the programs cannot report them (latency off, Linux
	// before 5.15) or the read failed (InFlightErrors counts those).
	InFlight       map[InFlightKey]InFlight
	InFlightErrors uint64
}

// Table is one kernel table of counters (loader.Counters, a hash map; or
// loader.SlotCounts, call_slots' calls or errors with their hash map):
// every entry, the given entries, and deletion, which returns how many of
// the keys, in order, it deleted (all of them unless it fails).
type Table[K comparable, V any] interface {
	Read(fn func(K, V)) error
	Lookup(keys []K, fn func(K, V)) error
	Delete(keys []K) (int, error)
}

// Kernel is what the tally reads from and trims in the kernel (loader.Maps,
// through KernelOf).
type Kernel interface {
	Stats() Table[loader.SyscallKey, loader.Counts]
	Errors() Table[loader.ErrnoKey, uint64]
	// GroupStats and GroupErrors are what the kernel counted by process
	// name and cgroup, its per-process maps being full.
	GroupStats() Table[loader.GroupKey, loader.Counts]
	GroupErrors() Table[loader.GroupKey, uint64]
	ReadOverflowStats(func(abi, nr uint16, c loader.Counts)) error
	// StatsFill is what Stats' last full read found in use: slots of
	// call_slots, entries of the syscall_stats hash map; ErrorsFill the
	// same for Errors (syscall_errors).
	StatsFill() (slots, hashEntries int)
	ErrorsFill() (slots, hashEntries int)
	ReadOverflowErrors(func(loader.ErrnoKey, uint64)) error
	ReadHistogram(abi, nr uint16) (loader.Histogram, error)
	ReadDrops() ([]uint64, error)
	// DrainEntryKeys hands over the kernel's announcements of new entries;
	// EntryKeysLost counts those it could not send.
	DrainEntryKeys(func(loader.ErrnoKey)) error
	EntryKeysLost() (uint64, error)
	// ReadInFlight hands over the threads inside a call now
	// (loader.ErrNoInFlight where the programs cannot tell).
	ReadInFlight(func(loader.InFlightRecord)) error
}

// KernelOf is the loaded maps as the tally's Kernel.
func KernelOf(m *loader.Maps) Kernel { return mapsKernel{m} }

type mapsKernel struct{ *loader.Maps }

func (k mapsKernel) Stats() Table[loader.SyscallKey, loader.Counts] { return k.Maps.Stats() }
func (k mapsKernel) Errors() Table[loader.ErrnoKey, uint64]         { return k.Maps.Errors() }
func (k mapsKernel) GroupStats() Table[loader.GroupKey, loader.Counts] {
	return k.Maps.GroupStats()
}
func (k mapsKernel) GroupErrors() Table[loader.GroupKey, uint64] { return k.Maps.GroupErrors() }
func (k mapsKernel) StatsFill() (slots, hashEntries int)         { return k.Maps.Stats().Fill() }
func (k mapsKernel) ErrorsFill() (slots, hashEntries int)        { return k.Maps.Errors().Fill() }

// Processes names process generations, knows their cgroups and says which
// have exited (events.ProcessTable).
type Processes interface {
	Name(tgid, execID uint32) (string, bool)
	CgroupID(tgid, execID uint32) (uint64, bool)
	Exited(tgid uint32) bool
	ExitedGeneration(tgid, execID uint32) bool
	Superseded(tgid, execID uint32) bool
	Running(tgid, execID uint32) bool
	Finishing(fn func(tgid uint32))
	EachLive(fn func(tgid uint32))
	ForgetExited(fullRead bool)
	MarkGone(tgid uint32)
}

// Tally is not safe for concurrent use; the Engine serializes it.
type Tally struct {
	kernel Kernel
	procs  Processes
	// alive reports whether a process still exists (kill(pid, 0)); used to
	// find processes whose exit record was lost.
	alive func(tgid uint32) bool

	// One ledger per exported value, fed by the kernel's tables: per
	// process, and by process name and cgroup (groupCalls, groupErrors:
	// no process's exit ends those, their cgroup's removal does).
	callLedger  *ledger[SeriesKey, loader.Counts]
	errorLedger *ledger[ErrorKey, uint64]
	calls       *entryTable[loader.SyscallKey, Syscall, SeriesKey, loader.Counts]
	errors      *entryTable[loader.ErrnoKey, errnoPart, ErrorKey, uint64]
	groupCalls  *entryTable[loader.GroupKey, Syscall, SeriesKey, loader.Counts]
	groupErrors *entryTable[loader.GroupKey, errnoPart, ErrorKey, uint64]

	// goneSince holds when each removed cgroup was known gone: from its
	// removal record (CgroupRemoved), or, for a record lost, from the
	// resolver at a scrape. Its group entries are folded and deleted once
	// it has been gone cgroupGrace, time for a call that read the cgroup
	// just before its removal to be counted.
	goneSince    map[uint64]time.Time
	groupCgroups map[uint64]struct{} // the cgroups of the last scrape's group entries
	// lastRemovedCheck is when the resolver was last asked which cgroups
	// were removed (findRemovedCgroups).
	lastRemovedCheck time.Time
	syscalls         map[Syscall]struct{} // every syscall ever seen, for histograms

	labeler labeler
	limits  Limits
	// evictedNS is the time spent per syscall by label sets evicted as
	// idle: the histograms' sums (SyscallNS) keep it, as the kernel's
	// histograms keep their calls.
	evictedNS map[Syscall]uint64

	foldedProcesses uint64
	// book knows the entries' keys, so that most folds look up only the
	// finished processes' entries; foldsByKeys and fullReads count how
	// syncs read the maps.
	book         keyBook
	foldsByKeys  uint64
	fullReads    uint64
	missedByKeys uint64
	lastSweep    time.Time
	sweepEvery   time.Duration
	// recordsLostAtSweep is the kernel's count of lifecycle records lost
	// at the last full sweep: more since, and the next sweep comes early.
	// sweepAgain: the last full sweep came for a loss, so one more follows
	// (a loss counted at a process's exit comes before its parent reaps it,
	// and kill(pid, 0) finds a zombie alive).
	recordsLostAtSweep uint64
	sweepAgain         bool
	// recordsLostAtFullRead is that count at the last full read of the
	// per-process maps.
	recordsLostAtFullRead uint64
	now                   func() time.Time
	monotonic             func() uint64 // the clock of the kernel's entry times
	// inFlightErrors counts failed reads of the calls in flight.
	inFlightErrors uint64

	// scratch, reused between syncs
	exitedSeen map[uint32]struct{}
	liveTGIDs  map[uint32]struct{} // running processes with calls counted per process
	// unnamed holds the processes whose entries the last sync could not
	// name. Drained makes them suspects: their records, if sent, were in
	// the ring buffer before that drain, so one still unnamed after it lost
	// them. The sweep checks suspects too, or a process whose fork and exit
	// records were both lost would keep its entries, uncounted, forever.
	unnamed  map[uint32]struct{}
	suspects map[uint32]struct{}
	// dead holds the processes a sweep found gone (kill(pid, 0)) without
	// an exit record applied. Their records, if sent, may still wait in the
	// ring buffer (a rename among them names their calls, the exit record
	// their last name), so they are marked gone only once a drain has come
	// after and brought no exit: Drained moves them to deadBeforeDrain.
	dead            map[uint32]struct{}
	deadBeforeDrain map[uint32]struct{}
	// generations holds, for one sync, what each process generation's
	// entries share: a generation has an entry per syscall it made, and
	// working out its labels and state takes several lookups in large maps
	// (most of a large host's scrape). genPool keeps them between syncs.
	generations map[generation]*generationInfo
	genPool     []*generationInfo
	// seriesLabels and labelIndex number the label sets of one scrape's
	// live entries (liveSeries): cheaper keys than five strings.
	seriesLabels []Labels
	labelIndex   map[Labels]int32
}

type generation struct{ tgid, execID uint32 }

// generationInfo is one process generation's part of a sync.
type generationInfo struct {
	labels Labels
	named  bool  // labels are known (else its records are still in flight)
	exited bool  // the process exited: its entries are folded
	final  bool  // its counts can no longer grow (exited or exec'd since)
	live   bool  // counted among the running processes of this sync
	series int32 // index of labels in seriesLabels, -1 until needed
	// sharedLabels is what the attributions made in this sync point to:
	// a generation's entries share one copy (a large host has 14 entries
	// per process; 80 bytes of labels each was most of the daemon's heap).
	sharedLabels *Labels
}

// shared returns a copy of l that the generation's attributions share.
func (g *generationInfo) shared(l Labels) *Labels {
	if g.sharedLabels == nil || *g.sharedLabels != l {
		g.sharedLabels = &l
	}
	return g.sharedLabels
}

// errnoPart is an error entry's part of its series key.
type errnoPart struct {
	Syscall
	errno uint32
}

// New returns an empty tally over kernel and procs.
func New(kernel Kernel, procs Processes, alive func(tgid uint32) bool) *Tally {
	t := &Tally{
		kernel:          kernel,
		procs:           procs,
		alive:           alive,
		goneSince:       make(map[uint64]time.Time),
		groupCgroups:    make(map[uint64]struct{}),
		syscalls:        make(map[Syscall]struct{}),
		exitedSeen:      make(map[uint32]struct{}),
		liveTGIDs:       make(map[uint32]struct{}),
		unnamed:         make(map[uint32]struct{}),
		suspects:        make(map[uint32]struct{}),
		dead:            make(map[uint32]struct{}),
		deadBeforeDrain: make(map[uint32]struct{}),
		generations:     make(map[generation]*generationInfo),
		book:            newKeyBook(),
		labelIndex:      make(map[Labels]int32),
		sweepEvery:      30 * time.Second,
		now:             time.Now,
		monotonic:       monotonicNS,
		labeler:         labeler{set: LabelSet(LabelComm)},
		limits:          DefaultLimits,
		evictedNS:       make(map[Syscall]uint64),
	}
	t.callLedger = newLedger(countsArith, compareSeries,
		func(k SeriesKey) Labels { return k.Labels },
		func(k SeriesKey, l Labels) SeriesKey { k.Labels = l; return k })
	t.errorLedger = newLedger(errorsArith, compareErrors,
		func(k ErrorKey) Labels { return k.Labels },
		func(k ErrorKey, l Labels) ErrorKey { k.Labels = l; return k })
	t.calls = t.callTable()
	t.errors = t.errorTable()
	t.groupCalls = t.groupCallTable()
	t.groupErrors = t.groupErrorTable()
	return t
}

// The four kernel tables: calls and errors, per process and by group. A
// value's tables share its series key and snapshot map (callsOf, errorsOf);
// per-process and group tables differ in their keys' owners.

func callsOf[KK comparable](table Table[KK, loader.Counts], part func(KK) Syscall) *entryTable[KK, Syscall, SeriesKey, loader.Counts] {
	return &entryTable[KK, Syscall, SeriesKey, loader.Counts]{
		table:      table,
		part:       part,
		series:     func(l Labels, sc Syscall) SeriesKey { return SeriesKey{l, sc} },
		syscall:    func(sc Syscall) Syscall { return sc },
		snapshotOf: func(s *Snapshot) map[SeriesKey]loader.Counts { return s.Calls },
		calls:      true,
	}
}

func errorsOf[KK comparable](table Table[KK, uint64], part func(KK) errnoPart) *entryTable[KK, errnoPart, ErrorKey, uint64] {
	return &entryTable[KK, errnoPart, ErrorKey, uint64]{
		table:      table,
		part:       part,
		series:     func(l Labels, p errnoPart) ErrorKey { return ErrorKey{SeriesKey{l, p.Syscall}, p.errno} },
		syscall:    func(p errnoPart) Syscall { return p.Syscall },
		snapshotOf: func(s *Snapshot) map[ErrorKey]uint64 { return s.Errors },
	}
}

func (t *Tally) callTable() *entryTable[loader.SyscallKey, Syscall, SeriesKey, loader.Counts] {
	tb := callsOf(t.kernel.Stats(), func(k loader.SyscallKey) Syscall { return Syscall{ABI: k.Abi, NR: k.Nr} })
	tb.owner = func(k loader.SyscallKey) (uint32, uint32) { return k.Tgid, k.ExecId }
	tb.bookKey = statsEntry
	tb.fromBook = func(k loader.ErrnoKey) (loader.SyscallKey, bool) {
		return loader.SyscallKey{Tgid: k.Tgid, ExecId: k.ExecId, Nr: k.Nr, Abi: k.Abi}, k.Err == 0
	}
	return tb.init(t.callLedger)
}

func (t *Tally) errorTable() *entryTable[loader.ErrnoKey, errnoPart, ErrorKey, uint64] {
	tb := errorsOf(t.kernel.Errors(), func(k loader.ErrnoKey) errnoPart { return errnoPart{Syscall{ABI: k.Abi, NR: k.Nr}, k.Err} })
	tb.owner = func(k loader.ErrnoKey) (uint32, uint32) { return k.Tgid, k.ExecId }
	tb.bookKey = func(k loader.ErrnoKey) loader.ErrnoKey { return k }
	tb.fromBook = func(k loader.ErrnoKey) (loader.ErrnoKey, bool) { return k, k.Err != 0 }
	return tb.init(t.errorLedger)
}

func (t *Tally) groupCallTable() *entryTable[loader.GroupKey, Syscall, SeriesKey, loader.Counts] {
	tb := callsOf(t.kernel.GroupStats(), func(k loader.GroupKey) Syscall { return Syscall{ABI: k.Abi, NR: k.Nr} })
	tb.group = groupOf
	return tb.init(t.callLedger)
}

func (t *Tally) groupErrorTable() *entryTable[loader.GroupKey, errnoPart, ErrorKey, uint64] {
	tb := errorsOf(t.kernel.GroupErrors(), func(k loader.GroupKey) errnoPart { return errnoPart{Syscall{ABI: k.Abi, NR: k.Nr}, k.Err} })
	tb.group = groupOf
	return tb.init(t.errorLedger)
}

func groupOf(k loader.GroupKey) (string, uint64) { return loader.CString(k.Comm[:]), k.CgroupId }

// SetLimits changes the series cap and idle timeout from the next snapshot.
func (t *Tally) SetLimits(l Limits) { t.limits = l }

// SetLabels changes the process labels of the counters without losing a
// count: what the last scrape exported is frozen under the old labels, and
// the lasting totals are carried over to the new label set (a label the old
// set lacked is "" on them).
func (t *Tally) SetLabels(set LabelSet, cgroups Cgroups) {
	if set == t.labeler.set && cgroups == t.labeler.cgroups {
		return
	}
	t.calls.freezeExported()
	t.groupCalls.freezeExported()
	t.errors.freezeExported()
	t.groupErrors.freezeExported()
	now := t.now()
	t.callLedger.relabel(set, now)
	t.errorLedger.relabel(set, now)
	t.labeler = labeler{set: set, cgroups: cgroups}
}

// Fold moves the counts of exited processes into the lasting totals and
// deletes their kernel entries.
func (t *Tally) Fold() error {
	_, err := t.sync(false)
	return err
}

// Snapshot folds, then returns the totals of every series.
func (t *Tally) Snapshot() (*Snapshot, error) {
	return t.sync(true)
}

// readPlan is how one sync reads the per-process maps.
type readPlan struct {
	scrape bool
	// learn: this sync reads every entry, and the book may lack some.
	learn bool
	// byKeys: a fold that looks up only the finished processes' entries.
	byKeys bool
	// checkBook: a full read with a complete book, which should know every
	// finished process's entry (their announcements came before the
	// records that finished them); one it lacks, folds by key had missed.
	checkBook bool
	lost      uint64 // announcements the kernel could not send, so far
	// drops are the kernel's loss counters, read once at the start of the
	// sync: the sweep, the plan and a scrape's snapshot all use them.
	drops []uint64
	began time.Time
}

// sync folds what is final and, for a scrape, returns every series.
func (t *Tally) sync(scrape bool) (*Snapshot, error) {
	drops, err := t.kernel.ReadDrops()
	if err != nil {
		return nil, err
	}
	t.sweepLostExits(recordsLost(drops))
	t.startSync()
	plan, err := t.planRead(scrape, drops)
	if err != nil {
		return nil, err
	}
	var snap *Snapshot
	if scrape {
		snap = &Snapshot{
			Calls:      make(map[SeriesKey]loader.Counts, len(t.callLedger.folded)),
			Errors:     make(map[ErrorKey]uint64, len(t.errorLedger.folded)),
			Histograms: make(map[Syscall]loader.Histogram),
		}
	}
	if err := readProcessEntries(t, t.calls, plan); err != nil {
		return nil, err
	}
	if err := readProcessEntries(t, t.errors, plan); err != nil {
		return nil, err
	}
	if err := t.foldFinished(plan); err != nil {
		return nil, err
	}
	if !scrape {
		t.boundGoneCgroups()
		return nil, nil
	}
	t.calls.flushLive(t, snap)
	t.errors.flushLive(t, snap)
	if err := t.completeSnapshot(snap, plan); err != nil {
		return nil, err
	}
	return snap, nil
}

// startSync empties what the last sync left.
func (t *Tally) startSync() {
	t.calls.startSync()
	t.errors.startSync()
	clear(t.exitedSeen)
	clear(t.unnamed)
	clear(t.liveTGIDs)
	clear(t.callLedger.live)
	clear(t.errorLedger.live)
	clear(t.generations)
	clear(t.labelIndex)
	t.seriesLabels = t.seriesLabels[:0]
}

// planRead takes the kernel's announcements of new entries into the book
// and decides how this sync reads the per-process maps.
func (t *Tally) planRead(scrape bool, drops []uint64) (readPlan, error) {
	if err := t.kernel.DrainEntryKeys(t.book.add); err != nil {
		return readPlan{}, err
	}
	lost, err := t.kernel.EntryKeysLost()
	if err != nil {
		return readPlan{}, err
	}
	p := readPlan{scrape: scrape, lost: lost, drops: drops, began: t.now()}
	p.learn = !t.book.complete || lost != t.book.lostAt
	// A process whose every lifecycle record was lost is unknown to the
	// table: only a full read finds its entries (unnamed), so a fold after
	// new losses reads in full.
	p.byKeys = !scrape && t.book.usable(lost, p.began) && recordsLost(drops) == t.recordsLostAtFullRead &&
		t.collectFinished()
	p.checkBook = !p.learn && !p.byKeys
	return p, nil
}

// readProcessEntries reads one per-process table: running processes'
// entries are attributed (and, for a scrape, summed by label set), final
// ones noted for foldFinished.
func readProcessEntries[KK, P, SK, V comparable](t *Tally, tb *entryTable[KK, P, SK, V], plan readPlan) error {
	read := tb.table.Read
	if plan.byKeys {
		read = func(fn func(KK, V)) error { return tb.table.Lookup(tb.lookupKeys, fn) }
	}
	ar := tb.ledger.arith
	return read(func(k KK, v V) {
		if plan.learn {
			t.book.add(tb.bookKey(k))
		}
		tgid, execID := tb.owner(k)
		if !plan.scrape && t.procs.Running(tgid, execID) {
			// A fold only takes final entries: a running process's are
			// left for the next scrape to attribute (most of a large
			// host's entries, and most of a fold's work otherwise).
			return
		}
		p := tb.part(k)
		if tb.calls {
			t.syscalls[tb.syscall(p)] = struct{}{}
		}
		g := t.generation(tgid, execID)
		a := tb.attribute(t, k, g)
		if a == nil {
			t.unnamed[tgid] = struct{}{}
			return
		}
		if g.final {
			if plan.checkBook && !t.book.has(tb.bookKey(k)) {
				t.missedByKeys++
			}
			tb.markDead(k, tb.series(*a.labels, p), a.since(v, ar))
			if g.exited {
				t.exitedSeen[tgid] = struct{}{}
			}
			return
		}
		if tb.calls {
			g.live = true
			t.liveTGIDs[tgid] = struct{}{}
		}
		if plan.scrape {
			key := liveSeries[P]{t.seriesIndex(g), p}
			tb.liveSums[key] = ar.plus(tb.liveSums[key], a.since(v, ar))
			a.exported = v
		}
	})
}

// foldFinished deletes the final entries both reads found, only after both:
// an exited process's entries are final, and what was read is then in the
// folded totals.
func (t *Tally) foldFinished(plan readPlan) error {
	if err := t.calls.retire(t, func(k loader.SyscallKey) { t.book.remove(statsEntry(k)) }); err != nil {
		return err
	}
	if err := t.errors.retire(t, t.book.remove); err != nil {
		return err
	}
	if plan.byKeys {
		t.foldsByKeys++
	} else {
		t.fullReads++
		t.book.fullReadDone(plan.lost, plan.began)
		t.recordsLostAtFullRead = recordsLost(plan.drops)
	}
	t.foldedProcesses += uint64(len(t.exitedSeen))
	// Every exited process's entries were read and deleted above, so all
	// are done with, also those that had none (no calls counted, or all in
	// the overflow counters): forgetting only those seen would keep them,
	// and the engine folding every tick for them, forever. Only full reads
	// count: what a fold by keys missed, the next full read folds by name.
	t.procs.ForgetExited(!plan.byKeys)
	return nil
}

// completeSnapshot adds to a scrape's live series what the kernel counted
// by name, the lasting totals, the overflow counters, the histograms and the
// drops, then applies the series cap.
func (t *Tally) completeSnapshot(snap *Snapshot, plan readPlan) error {
	callSlots, statsEntries := t.kernel.StatsFill()
	errorSlots, errorsEntries := t.kernel.ErrorsFill()
	snap.CallSlotsEntries = callSlots + errorSlots
	snap.StatsEntries, snap.ErrorsEntries = statsEntries, errorsEntries
	// The folded totals after readGroups: a label change there freezes what
	// an entry had exported into them, for this snapshot too.
	if err := t.readGroups(snap); err != nil {
		return err
	}
	t.callLedger.addFolded(snap.Calls)
	t.errorLedger.addFolded(snap.Errors)
	if err := t.retireGroups(); err != nil {
		return err
	}
	if err := t.readOverflow(snap); err != nil {
		return err
	}
	if err := t.readHistograms(snap); err != nil {
		return err
	}
	if err := t.readInFlight(snap); err != nil {
		return err
	}
	snap.Drops = plan.drops
	t.limitSeries(snap)
	snap.Processes = len(t.liveTGIDs)
	snap.FoldedProcesses = t.foldedProcesses
	snap.FoldsByKeys, snap.FullReads, snap.EntryKeysLost = t.foldsByKeys, t.fullReads, plan.lost
	snap.MissedByKeys = t.missedByKeys
	snap.InFlightErrors = t.inFlightErrors
	return nil
}

// readOverflow adds the calls and errors the kernel could key by syscall
// only (every map full), under the "~other" labels.
func (t *Tally) readOverflow(snap *Snapshot) error {
	other := otherLabels.project(t.labeler.set)
	err := t.kernel.ReadOverflowStats(func(abi, nr uint16, c loader.Counts) {
		sc := Syscall{ABI: abi, NR: nr}
		t.syscalls[sc] = struct{}{}
		addTo(snap.Calls, SeriesKey{other, sc}, c, countsArith)
	})
	if err != nil {
		return err
	}
	return t.kernel.ReadOverflowErrors(func(k loader.ErrnoKey, n uint64) {
		snap.Errors[ErrorKey{SeriesKey{other, Syscall{ABI: k.Abi, NR: k.Nr}}, k.Err}] += n
	})
}

// readHistograms reads the latency histogram of every syscall ever seen.
func (t *Tally) readHistograms(snap *Snapshot) error {
	for sc := range t.syscalls {
		slot := HistogramSlot(sc)
		if _, done := snap.Histograms[slot]; done {
			continue
		}
		h, err := t.kernel.ReadHistogram(slot.ABI, slot.NR)
		if err != nil {
			return err
		}
		snap.Histograms[slot] = h
	}
	return nil
}

// HistogramSlot is the kernel histogram that sc's latencies are in: each
// syscall's own, but numbers from loader.NRSlots-1 up (none is a syscall:
// invalid numbers, probes) share the last, which is read once, not once per
// number.
func HistogramSlot(sc Syscall) Syscall {
	return Syscall{ABI: sc.ABI, NR: min(sc.NR, loader.NRSlots-1)}
}

// readGroups adds what the kernel counted by process name and cgroup, its
// per-process maps being full: exact for every label but pid. The entries
// of cgroups removed long enough ago are final: retireGroups folds them.
func (t *Tally) readGroups(snap *Snapshot) error {
	clear(t.groupCgroups)
	t.groupCalls.startSync()
	t.groupErrors.startSync()
	settled := t.now().Add(-cgroupGrace)
	final := func(cgroupID uint64) bool {
		t.groupCgroups[cgroupID] = struct{}{}
		since, gone := t.goneSince[cgroupID]
		return gone && !since.After(settled)
	}
	if err := readGroupEntries(t, t.groupCalls, snap, final); err != nil {
		return err
	}
	if err := readGroupEntries(t, t.groupErrors, snap, final); err != nil {
		return err
	}
	snap.GroupStatsEntries, snap.GroupErrorsEntries = t.groupCalls.seen, t.groupErrors.seen
	t.findRemovedCgroups()
	return nil
}

// readGroupEntries reads one group table into the snapshot: each entry is
// named by its key (process name and cgroup), live until final says its
// cgroup is gone for good.
func readGroupEntries[P, SK, V comparable](t *Tally, tb *entryTable[loader.GroupKey, P, SK, V], snap *Snapshot, final func(cgroupID uint64) bool) error {
	var g generationInfo
	out := tb.snapshotOf(snap)
	ar := tb.ledger.arith
	return tb.table.Read(func(k loader.GroupKey, v V) {
		tb.seen++
		p := tb.part(k)
		if tb.calls {
			t.syscalls[tb.syscall(p)] = struct{}{}
		}
		comm, cgroupID := tb.group(k)
		g = generationInfo{labels: t.labeler.groupLabels(comm, cgroupID), named: true, series: -1}
		a := tb.attribute(t, k, &g)
		key := tb.series(*a.labels, p)
		addTo(out, key, a.since(v, ar), ar)
		if final(cgroupID) {
			tb.markDead(k, key, a.since(v, ar))
		}
		a.exported = v
		tb.ledger.live[key] = struct{}{}
	})
}

// findRemovedCgroups asks the resolver which of the group entries' cgroups,
// not known gone, were removed: those whose removal record was lost.
func (t *Tally) findRemovedCgroups() {
	// A stat per cgroup: at most once per sweep, not at every scrape, for
	// records are rarely lost and full group maps hold thousands of cgroups.
	if t.labeler.cgroups == nil || t.now().Sub(t.lastRemovedCheck) < t.sweepEvery {
		return
	}
	t.lastRemovedCheck = t.now()
	var ids []uint64
	for id := range t.groupCgroups {
		if _, known := t.goneSince[id]; !known {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return
	}
	now := t.now()
	for id := range t.labeler.cgroups.Removed(ids) {
		t.goneSince[id] = now
	}
}

// retireGroups deletes the final group entries readGroups found and folds
// what they counted: this snapshot has them among the live entries, the
// next in the folded totals. Only what was deleted is folded: after a
// failed delete, the rest is retried at the next scrape.
func (t *Tally) retireGroups() error {
	if err := t.groupCalls.retire(t, nil); err != nil {
		return err
	}
	if err := t.groupErrors.retire(t, nil); err != nil {
		return err
	}
	t.forgetGoneCgroups(t.now().Add(-cgroupGrace))
	return nil
}

// CgroupCreated notes a cgroup's creation record: its path, for the labels
// of calls made in it, is known even if it is gone before any walk.
func (t *Tally) CgroupCreated(id uint64, path string) {
	if t.labeler.cgroups != nil {
		t.labeler.cgroups.Learn(id, path)
	}
}

// CgroupRemoved notes a cgroup's removal record.
func (t *Tally) CgroupRemoved(id uint64) {
	if _, known := t.goneSince[id]; !known {
		t.goneSince[id] = t.now()
	}
}

// boundGoneCgroups keeps at most maxGoneCgroups removal records, dropping
// the oldest: only a daemon left unscraped for long gets here, and a cgroup
// whose record is dropped keeps its counts by name (the fallback may still
// find it gone).
func (t *Tally) boundGoneCgroups() {
	if len(t.goneSince) <= maxGoneCgroups {
		return
	}
	ids := make([]uint64, 0, len(t.goneSince))
	for id := range t.goneSince {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b uint64) int { return t.goneSince[a].Compare(t.goneSince[b]) })
	for _, id := range ids[:len(ids)-maxGoneCgroups/2] {
		delete(t.goneSince, id)
	}
}

// forgetGoneCgroups forgets the cgroups gone since cutoff or before that
// had no group entries at the last scrape (most removed cgroups never had
// any).
func (t *Tally) forgetGoneCgroups(cutoff time.Time) {
	for id, since := range t.goneSince {
		if _, entries := t.groupCgroups[id]; !entries && !since.After(cutoff) {
			delete(t.goneSince, id)
		}
	}
}

// collectFinished gathers the book's keys of the finished processes'
// final entries, and reports whether looking them up costs less than
// reading the maps in full.
func (t *Tally) collectFinished() bool {
	t.calls.lookupKeys, t.errors.lookupKeys = t.calls.lookupKeys[:0], t.errors.lookupKeys[:0]
	t.procs.Finishing(func(tgid uint32) {
		t.book.each(tgid, func(k loader.ErrnoKey) {
			if !t.procs.Running(k.Tgid, k.ExecId) {
				t.calls.collect(k)
				t.errors.collect(k)
			}
		})
	})
	n := len(t.calls.lookupKeys) + len(t.errors.lookupKeys)
	return n <= foldByKeysAlways || n*foldByKeysCost < t.book.keys
}

// generation returns what this sync knows of a process generation, working
// it out at its first entry. An entry is final, so folded and deleted, when
// its process exited or exec'd since (which frees the kernel entries of a
// fork's pre-exec calls while the program runs on).
func (t *Tally) generation(tgid, execID uint32) *generationInfo {
	key := generation{tgid, execID}
	if g, ok := t.generations[key]; ok {
		return g
	}
	if len(t.generations) == len(t.genPool) {
		t.genPool = append(t.genPool, new(generationInfo))
	}
	g := t.genPool[len(t.generations)]
	*g = generationInfo{series: -1}
	g.labels, g.named = t.labeler.labels(t.procs, tgid, execID)
	g.exited = t.procs.ExitedGeneration(tgid, execID)
	g.final = g.exited || t.procs.Superseded(tgid, execID)
	t.generations[key] = g
	return g
}

// seriesIndex is the index of g's labels in seriesLabels.
func (t *Tally) seriesIndex(g *generationInfo) int32 {
	if g.series < 0 {
		i, ok := t.labelIndex[g.labels]
		if !ok {
			i = int32(len(t.seriesLabels))
			t.seriesLabels = append(t.seriesLabels, g.labels)
			t.labelIndex[g.labels] = i
		}
		g.series = i
	}
	return g.series
}

// limitSeries drops idle label sets and applies the series cap to a
// snapshot whose Calls and Errors hold every label set.
func (t *Tally) limitSeries(snap *Snapshot) {
	snap.LabelSet = t.labeler.set
	now := t.now()
	t.callLedger.revive(snap.Calls, t.limits.maxSeries(), now, func(k SeriesKey, v loader.Counts) {
		t.evictedNS[k.Syscall] -= v.NS // back in the series' sums
	})
	// The histograms' sums: every series', and the time of those evicted.
	snap.SyscallNS = make(map[Syscall]uint64, len(t.evictedNS))
	for k, v := range snap.Calls {
		snap.SyscallNS[k.Syscall] += v.NS
	}
	for sc, ns := range t.evictedNS {
		snap.SyscallNS[sc] += ns
	}
	snap.Calls, snap.CallsOther = t.callLedger.limit(snap.Calls, t.limits, now,
		func(k SeriesKey, v loader.Counts) { t.evictedNS[k.Syscall] += v.NS })
	t.errorLedger.revive(snap.Errors, t.limits.maxSeries(), now, func(ErrorKey, uint64) {})
	snap.Errors, snap.ErrorsOther = t.errorLedger.limit(snap.Errors, t.limits, now, func(ErrorKey, uint64) {})
	snap.CallsSeriesOverflows = t.callLedger.cap.Overflows
	snap.ErrorsSeriesOverflows = t.errorLedger.cap.Overflows
}

// Drained tells the tally that every lifecycle record sent before now has
// been applied. Call it after each drain of the ring buffer, before the
// syncs it precedes.
func (t *Tally) Drained() {
	for tgid := range t.unnamed {
		t.suspects[tgid] = struct{}{}
	}
	for tgid := range t.dead {
		t.deadBeforeDrain[tgid] = struct{}{}
	}
	clear(t.dead)
}

// SweepPending reports whether a fold would find processes gone without an
// exit record: lifecycle records lost since the last full sweep or the last
// full read (or a sweep after one due), or processes found dead or unnamed
// waiting for the next sync. The engine folds for them even when no exit
// record came: on a quiet host, none may come.
func (t *Tally) SweepPending() (bool, error) {
	if t.alive == nil {
		return false, nil
	}
	if t.sweepAgain || len(t.dead)+len(t.deadBeforeDrain)+len(t.suspects) > 0 {
		return true, nil
	}
	drops, err := t.kernel.ReadDrops()
	lost := recordsLost(drops)
	return lost != t.recordsLostAtSweep || lost != t.recordsLostAtFullRead, err
}

// recordsLost is, of the kernel's loss counters, the lifecycle records it
// could not send.
func recordsLost(drops []uint64) uint64 {
	if loader.DropLifecycleRecord >= len(drops) {
		return 0
	}
	return drops[loader.DropLifecycleRecord]
}

// lossSweepGap is the least time between full sweeps while lifecycle
// records are being lost: each asks the kernel about every process. A little
// under the engine's FoldEvery (1 s), so that a tick's jitter does not put
// the sweep off to the next one.
const lossSweepGap = 900 * time.Millisecond

// sweepLostExits marks processes gone whose exit record never came (ring
// buffer full), so their entries do not stay in the kernel forever.
func (t *Tally) sweepLostExits(lost uint64) {
	if t.alive == nil {
		return
	}
	// Suspects are checked at every sync: still unnamed after a drain, a
	// dead one lost both its fork and exit records, and its counts should
	// not wait 30 s to be exported. An entry first seen unnamed in this
	// drain's syncs is not one: its records may still be in the ring buffer
	// (they wake the reader only in batches), and marking it gone would
	// export its counts under ~unknown.
	//
	// A process whose fork record came and whose exit record was lost looks
	// running: only a full sweep finds it. Every sweepEvery, or within
	// lossSweepGap of a lost record and once more after that, so that a
	// burst of losses (a fork storm) leaves no entry behind for long. While
	// records are being lost, that is a kill(pid, 0) per known process a
	// second: about a millisecond per thousand processes.
	if t.lastSweep.IsZero() {
		// Nothing to sweep yet: the daemon has just read /proc, and the
		// kernel has lost no record it would not count.
		t.lastSweep = t.now()
	}
	since := t.now().Sub(t.lastSweep)
	newLoss := lost != t.recordsLostAtSweep
	full := since >= t.sweepEvery || ((newLoss || t.sweepAgain) && since >= lossSweepGap)
	if full {
		t.lastSweep = t.now()
		t.recordsLostAtSweep = lost
		t.sweepAgain = newLoss
	}
	// Found dead before the last drain, and that drain brought no exit
	// record: it was lost. (Alive again: the tgid is another process's.)
	for tgid := range t.deadBeforeDrain {
		if !t.procs.Exited(tgid) && !t.alive(tgid) {
			t.procs.MarkGone(tgid)
		}
	}
	clear(t.deadBeforeDrain)
	checked := make(map[uint32]bool)
	check := func(tgid uint32) {
		if _, done := checked[tgid]; done || t.procs.Exited(tgid) {
			return
		}
		alive := t.alive(tgid)
		checked[tgid] = alive
		if !alive {
			t.dead[tgid] = struct{}{}
		}
	}
	for tgid := range t.suspects {
		check(tgid)
	}
	clear(t.suspects)
	if !full {
		return
	}
	for k := range t.calls.attributions {
		check(k.Tgid)
	}
	// And those without an entry (no call counted per process: filtered
	// out, or counted by name in full maps), or the table would keep every
	// one whose exit record was lost until its pid came back.
	t.procs.EachLive(check)
}
