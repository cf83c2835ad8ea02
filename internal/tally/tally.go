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
	otherLabels   = Labels{Comm: OtherComm, Unit: OtherComm, Container: OtherComm, Cgroup: OtherComm, PID: OtherComm}
	unknownLabels = Labels{Comm: UnknownComm, Unit: UnknownComm, Container: UnknownComm, Cgroup: UnknownComm, PID: UnknownComm}
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
	StatsEntries, ErrorsEntries           int
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
}

// Kernel is what the tally reads from and trims in the kernel (loader.Maps).
type Kernel interface {
	ReadStats(func(loader.SyscallKey, loader.Counts)) error
	ReadErrors(func(loader.ErrnoKey, uint64)) error
	// ReadGroupStats and ReadGroupErrors read what the kernel counted by
	// process name and cgroup, its per-process maps being full.
	ReadGroupStats(func(loader.GroupKey, loader.Counts)) error
	ReadGroupErrors(func(loader.GroupKey, uint64)) error
	ReadOverflowStats(func(abi, nr uint16, c loader.Counts)) error
	ReadOverflowErrors(func(loader.ErrnoKey, uint64)) error
	ReadHistogram(abi, nr uint16) (loader.Histogram, error)
	ReadDrops() ([]uint64, error)
	// The deletes return how many of the keys, in order, they deleted:
	// all of them unless they fail.
	DeleteStats([]loader.SyscallKey) (int, error)
	DeleteErrors([]loader.ErrnoKey) (int, error)
	DeleteGroupStats([]loader.GroupKey) (int, error)
	DeleteGroupErrors([]loader.GroupKey) (int, error)
	// LookupStats and LookupErrors read the given entries only.
	LookupStats([]loader.SyscallKey, func(loader.SyscallKey, loader.Counts)) error
	LookupErrors([]loader.ErrnoKey, func(loader.ErrnoKey, uint64)) error
	// DrainEntryKeys hands over the kernel's announcements of new entries;
	// EntryKeysLost counts those it could not send.
	DrainEntryKeys(func(loader.ErrnoKey)) error
	EntryKeysLost() (uint64, error)
}

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

// attribution is what a live kernel entry has been exported as: counts up to
// base belong to earlier names (already in the folded totals), counts from
// base on to labels. exported is the value the last scrape showed.
type attribution struct {
	labels *Labels // shared by the generation's entries (see generationInfo.shared)
	// base is nil while zero, as it is until a rename or a label change:
	// 32 bytes an entry instead of 48, ~1.6 MB less on a large host.
	base     *loader.Counts
	exported loader.Counts
}

// since returns v less what belongs to earlier names.
func (a *attribution) since(v loader.Counts) loader.Counts {
	if a.base == nil {
		return v
	}
	return sub(v, *a.base)
}

// rebase hands everything exported so far to earlier names.
func (a *attribution) rebase() {
	if a.exported == (loader.Counts{}) {
		a.base = nil
		return
	}
	base := a.exported
	a.base = &base
}

// foldedCalls and foldedErrors are what a dead entry adds to the totals.
type foldedCalls struct {
	key    SeriesKey
	counts loader.Counts
}

type foldedErrors struct {
	key ErrorKey
	n   uint64
}

// Tally is not safe for concurrent use; the Engine serializes it.
type Tally struct {
	kernel Kernel
	procs  Processes
	// alive reports whether a process still exists (kill(pid, 0)); used to
	// find processes whose exit record was lost.
	alive func(tgid uint32) bool

	folded       map[SeriesKey]loader.Counts
	foldedErrors map[ErrorKey]uint64
	live         map[loader.SyscallKey]*attribution
	liveErrors   map[loader.ErrnoKey]*attribution
	// groupCalls and groupErrors attribute the kernel's entries by process
	// name and cgroup: no process's exit ends them, but their cgroup's
	// removal does. goneSince holds when each removed cgroup was known gone:
	// from its removal record (CgroupRemoved), or, for a record lost, from
	// the resolver at a scrape. Its entries are folded and deleted once it
	// has been gone cgroupGrace, time for a call that read the cgroup just
	// before its removal to be counted.
	groupCalls   map[loader.GroupKey]*attribution
	groupErrors  map[loader.GroupKey]*attribution
	goneSince    map[uint64]time.Time
	groupCgroups map[uint64]struct{} // the cgroups of the last scrape's group entries
	// lastRemovedCheck is when the resolver was last asked which cgroups
	// were removed (findRemovedCgroups).
	lastRemovedCheck time.Time
	deadGroupStats   []loader.GroupKey
	deadGroupCalls   []foldedCalls
	deadGroupErrors  []loader.GroupKey
	deadGroupErrnos  []foldedErrors
	syscalls         map[Syscall]struct{} // every syscall ever seen, for histograms

	labeler     labeler
	limits      Limits
	callsCap    *seriesCap[SeriesKey, loader.Counts]
	errorsCap   *seriesCap[ErrorKey, uint64]
	touched     map[SeriesKey]time.Time // when each folded total last changed
	touchedErrs map[ErrorKey]time.Time
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
	lookupStats  []loader.SyscallKey
	lookupErrors []loader.ErrnoKey
	lastSweep    time.Time
	sweepEvery   time.Duration
	now          func() time.Time

	// scratch, reused between syncs
	deadStats  []loader.SyscallKey
	deadErrors []loader.ErrnoKey
	// what each dead entry adds to the folded totals once it is deleted
	deadCalls  []foldedCalls
	deadErrnos []foldedErrors
	exitedSeen map[uint32]struct{}
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
	// liveCallKeys and liveErrKeys are the series running processes are
	// attributed to at this scrape, with new counts or not: never idle.
	liveCallKeys map[SeriesKey]struct{}
	liveErrKeys  map[ErrorKey]struct{}
	// generations holds, for one sync, what each process generation's
	// entries share: a generation has an entry per syscall it made, and
	// working out its labels and state takes several lookups in large maps
	// (most of a large host's scrape). genPool keeps them between syncs.
	generations map[generation]*generationInfo
	genPool     []*generationInfo
	// liveCalls sums, for one scrape, the live entries by label set (as an
	// index into seriesLabels) and syscall: cheaper keys than SeriesKey's
	// five strings; turned into SeriesKeys once per series at the end.
	liveCalls    map[liveSeries]loader.Counts
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

type liveSeries struct {
	labels  int32
	syscall Syscall
}

// New returns an empty tally over kernel and procs.
func New(kernel Kernel, procs Processes, alive func(tgid uint32) bool) *Tally {
	return &Tally{
		kernel:          kernel,
		procs:           procs,
		alive:           alive,
		folded:          make(map[SeriesKey]loader.Counts),
		foldedErrors:    make(map[ErrorKey]uint64),
		live:            make(map[loader.SyscallKey]*attribution),
		liveErrors:      make(map[loader.ErrnoKey]*attribution),
		groupCalls:      make(map[loader.GroupKey]*attribution),
		groupErrors:     make(map[loader.GroupKey]*attribution),
		goneSince:       make(map[uint64]time.Time),
		groupCgroups:    make(map[uint64]struct{}),
		syscalls:        make(map[Syscall]struct{}),
		exitedSeen:      make(map[uint32]struct{}),
		unnamed:         make(map[uint32]struct{}),
		suspects:        make(map[uint32]struct{}),
		dead:            make(map[uint32]struct{}),
		deadBeforeDrain: make(map[uint32]struct{}),
		liveCallKeys:    make(map[SeriesKey]struct{}),
		liveErrKeys:     make(map[ErrorKey]struct{}),
		generations:     make(map[generation]*generationInfo),
		book:            newKeyBook(),
		liveCalls:       make(map[liveSeries]loader.Counts),
		labelIndex:      make(map[Labels]int32),
		sweepEvery:      30 * time.Second,
		now:             time.Now,
		labeler:         labeler{set: LabelSet(LabelComm)},
		limits:          DefaultLimits,
		callsCap:        newSeriesCap[SeriesKey, loader.Counts](),
		errorsCap:       newSeriesCap[ErrorKey, uint64](),
		touched:         make(map[SeriesKey]time.Time),
		touchedErrs:     make(map[ErrorKey]time.Time),
		evictedNS:       make(map[Syscall]uint64),
	}
}

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
	frozenCalls := func(l Labels, abi, nr uint16, c loader.Counts) {
		addCounts(t.folded, SeriesKey{l, Syscall{ABI: abi, NR: nr}}, c)
	}
	frozenErrors := func(l Labels, abi, nr uint16, errno uint32, c loader.Counts) {
		addErrors(t.foldedErrors, ErrorKey{SeriesKey{l, Syscall{ABI: abi, NR: nr}}, errno}, c.Calls)
	}
	freezeExported(t.live, func(k loader.SyscallKey, l Labels, c loader.Counts) { frozenCalls(l, k.Abi, k.Nr, c) })
	freezeExported(t.groupCalls, func(k loader.GroupKey, l Labels, c loader.Counts) { frozenCalls(l, k.Abi, k.Nr, c) })
	freezeExported(t.liveErrors, func(k loader.ErrnoKey, l Labels, c loader.Counts) { frozenErrors(l, k.Abi, k.Nr, k.Err, c) })
	freezeExported(t.groupErrors, func(k loader.GroupKey, l Labels, c loader.Counts) { frozenErrors(l, k.Abi, k.Nr, k.Err, c) })
	folded := make(map[SeriesKey]loader.Counts, len(t.folded))
	for k, v := range t.folded {
		k.Labels = k.Labels.project(set)
		addCounts(folded, k, v)
	}
	foldedErrors := make(map[ErrorKey]uint64, len(t.foldedErrors))
	for k, v := range t.foldedErrors {
		k.Labels = k.Labels.project(set)
		addErrors(foldedErrors, k, v)
	}
	t.folded, t.foldedErrors = folded, foldedErrors
	now := t.now()
	clear(t.touched)
	clear(t.touchedErrs)
	for k := range t.folded {
		t.touched[k] = now
	}
	for k := range t.foldedErrors {
		t.touchedErrs[k] = now
	}
	t.callsCap.reset()
	t.errorsCap.reset()
	t.labeler = labeler{set: set, cgroups: cgroups}
}

// freezeExported hands what each attribution's last scrape exported to
// freeze, under the labels it had, and leaves the attribution owning only
// what comes after.
func freezeExported[K comparable](live map[K]*attribution, freeze func(K, Labels, loader.Counts)) {
	for k, a := range live {
		freeze(k, *a.labels, a.since(a.exported))
		a.rebase()
	}
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

func (t *Tally) sync(scrape bool) (*Snapshot, error) {
	t.sweepLostExits()

	var snap *Snapshot
	if scrape {
		snap = &Snapshot{
			Calls:      make(map[SeriesKey]loader.Counts, len(t.folded)),
			Errors:     make(map[ErrorKey]uint64, len(t.foldedErrors)),
			Histograms: make(map[Syscall]loader.Histogram),
		}
	}
	t.deadStats, t.deadCalls = t.deadStats[:0], t.deadCalls[:0]
	t.deadErrors, t.deadErrnos = t.deadErrors[:0], t.deadErrnos[:0]
	clear(t.exitedSeen)
	clear(t.unnamed)
	clear(t.liveCallKeys)
	clear(t.liveErrKeys)
	clear(t.generations)
	clear(t.liveCalls)
	clear(t.labelIndex)
	t.seriesLabels = t.seriesLabels[:0]
	liveTGIDs := make(map[uint32]struct{})

	if err := t.kernel.DrainEntryKeys(t.book.add); err != nil {
		return nil, err
	}
	lost, err := t.kernel.EntryKeysLost()
	if err != nil {
		return nil, err
	}
	began := t.now()
	// learn: this sync reads every entry, and the book may lack some.
	learn := !t.book.complete || lost != t.book.lostAt
	byKeys := !scrape && t.book.usable(lost, began) && t.collectFinished()
	// checkBook: a full read with a complete book, which should know every
	// finished process's entry (their announcements came before the
	// records that finished them); one it lacks, folds by key had missed.
	checkBook := !learn && !byKeys
	readStats, readErrors := t.kernel.ReadStats, t.kernel.ReadErrors
	if byKeys {
		readStats = func(fn func(loader.SyscallKey, loader.Counts)) error {
			return t.kernel.LookupStats(t.lookupStats, fn)
		}
		readErrors = func(fn func(loader.ErrnoKey, uint64)) error {
			return t.kernel.LookupErrors(t.lookupErrors, fn)
		}
	}

	err = readStats(func(k loader.SyscallKey, v loader.Counts) {
		if learn {
			t.book.add(statsEntry(k))
		}
		if scrape {
			snap.StatsEntries++
		} else if t.procs.Running(k.Tgid, k.ExecId) {
			// A fold only takes final entries: a running process's are
			// left for the next scrape to attribute (most of a large
			// host's entries, and most of a fold's work otherwise).
			return
		}
		sc := Syscall{ABI: k.Abi, NR: k.Nr}
		t.syscalls[sc] = struct{}{}
		g := t.generation(k.Tgid, k.ExecId)
		a := attribute(t, t.live, k, g, func(old Labels, c loader.Counts) {
			t.foldCalls(SeriesKey{old, sc}, c)
		})
		if a == nil {
			t.unnamed[k.Tgid] = struct{}{}
			return
		}
		if g.final {
			if checkBook && !t.book.has(statsEntry(k)) {
				t.missedByKeys++
			}
			// Folded only once deleted: after a failed sync, the entry
			// and its attribution are still there for the next one.
			t.deadStats = append(t.deadStats, k)
			t.deadCalls = append(t.deadCalls, foldedCalls{SeriesKey{*a.labels, sc}, a.since(v)})
			if g.exited {
				t.exitedSeen[k.Tgid] = struct{}{}
			}
			return
		}
		if !g.live {
			g.live = true
			liveTGIDs[k.Tgid] = struct{}{}
		}
		if scrape {
			key := liveSeries{t.seriesIndex(g), sc}
			t.liveCalls[key] = plusCounts(t.liveCalls[key], a.since(v))
			a.exported = v
		}
	})
	if err != nil {
		return nil, err
	}
	if scrape {
		for k, c := range t.liveCalls {
			key := SeriesKey{t.seriesLabels[k.labels], k.syscall}
			t.liveCallKeys[key] = struct{}{}
			addCounts(snap.Calls, key, c)
		}
	}
	err = readErrors(func(k loader.ErrnoKey, n uint64) {
		if learn {
			t.book.add(k)
		}
		if scrape {
			snap.ErrorsEntries++
		} else if t.procs.Running(k.Tgid, k.ExecId) {
			return
		}
		v := loader.Counts{Calls: n}
		sc := Syscall{ABI: k.Abi, NR: k.Nr}
		g := t.generation(k.Tgid, k.ExecId)
		a := attribute(t, t.liveErrors, k, g, func(old Labels, c loader.Counts) {
			t.foldErrors(ErrorKey{SeriesKey{old, sc}, k.Err}, c.Calls)
		})
		if a == nil {
			t.unnamed[k.Tgid] = struct{}{}
			return
		}
		key := ErrorKey{SeriesKey{*a.labels, sc}, k.Err}
		if g.final {
			if checkBook && !t.book.has(k) {
				t.missedByKeys++
			}
			t.deadErrors = append(t.deadErrors, k)
			t.deadErrnos = append(t.deadErrnos, foldedErrors{key, a.since(v).Calls})
			if g.exited {
				t.exitedSeen[k.Tgid] = struct{}{}
			}
			return
		}
		if scrape {
			addErrors(snap.Errors, key, a.since(v).Calls)
			a.exported = v
			t.liveErrKeys[key] = struct{}{}
		}
	})
	if err != nil {
		return nil, err
	}
	// Delete only after both reads: an exited process's entries are final,
	// and what was read is now in the folded totals.
	err = deleteThenFold(t.deadStats, t.kernel.DeleteStats, func(i int, k loader.SyscallKey) {
		t.foldCalls(t.deadCalls[i].key, t.deadCalls[i].counts)
		delete(t.live, k)
		t.book.remove(statsEntry(k))
	})
	if err != nil {
		return nil, err
	}
	err = deleteThenFold(t.deadErrors, t.kernel.DeleteErrors, func(i int, k loader.ErrnoKey) {
		t.foldErrors(t.deadErrnos[i].key, t.deadErrnos[i].n)
		delete(t.liveErrors, k)
		t.book.remove(k)
	})
	if err != nil {
		return nil, err
	}
	if byKeys {
		t.foldsByKeys++
	} else {
		t.fullReads++
		t.book.fullReadDone(lost, began)
	}
	t.foldedProcesses += uint64(len(t.exitedSeen))
	// Every exited process's entries were read and deleted above, so all
	// are done with, also those that had none (no calls counted, or all in
	// the overflow counters): forgetting only those seen would keep them,
	// and the engine folding every tick for them, forever. Only full reads
	// count: what a fold by keys missed, the next full read folds by name.
	t.procs.ForgetExited(!byKeys)
	if !scrape {
		t.boundGoneCgroups()
		return nil, nil
	}

	// The folded totals after readGroups: a label change there freezes what
	// an entry had exported into them, for this snapshot too.
	if err := t.readGroups(snap); err != nil {
		return nil, err
	}
	for k, v := range t.folded {
		addCounts(snap.Calls, k, v)
	}
	for k, v := range t.foldedErrors {
		snap.Errors[k] += v
	}
	if err := t.retireGroups(); err != nil {
		return nil, err
	}
	err = t.kernel.ReadOverflowStats(func(abi, nr uint16, c loader.Counts) {
		sc := Syscall{ABI: abi, NR: nr}
		t.syscalls[sc] = struct{}{}
		addCounts(snap.Calls, SeriesKey{otherLabels.project(t.labeler.set), sc}, c)
	})
	if err != nil {
		return nil, err
	}
	err = t.kernel.ReadOverflowErrors(func(k loader.ErrnoKey, n uint64) {
		snap.Errors[ErrorKey{SeriesKey{otherLabels.project(t.labeler.set), Syscall{ABI: k.Abi, NR: k.Nr}}, k.Err}] += n
	})
	if err != nil {
		return nil, err
	}
	for sc := range t.syscalls {
		slot := HistogramSlot(sc)
		if _, done := snap.Histograms[slot]; done {
			continue
		}
		h, err := t.kernel.ReadHistogram(slot.ABI, slot.NR)
		if err != nil {
			return nil, err
		}
		snap.Histograms[slot] = h
	}
	if snap.Drops, err = t.kernel.ReadDrops(); err != nil {
		return nil, err
	}
	t.limitSeries(snap)
	snap.Processes = len(liveTGIDs)
	snap.FoldedProcesses = t.foldedProcesses
	snap.FoldsByKeys, snap.FullReads, snap.EntryKeysLost = t.foldsByKeys, t.fullReads, lost
	snap.MissedByKeys = t.missedByKeys
	return snap, nil
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
	var g generationInfo
	clear(t.groupCgroups)
	t.deadGroupStats, t.deadGroupCalls = t.deadGroupStats[:0], t.deadGroupCalls[:0]
	t.deadGroupErrors, t.deadGroupErrnos = t.deadGroupErrors[:0], t.deadGroupErrnos[:0]
	settled := t.now().Add(-cgroupGrace)
	final := func(cgroupID uint64) bool {
		t.groupCgroups[cgroupID] = struct{}{}
		since, gone := t.goneSince[cgroupID]
		return gone && !since.After(settled)
	}
	err := t.kernel.ReadGroupStats(func(k loader.GroupKey, v loader.Counts) {
		snap.GroupStatsEntries++
		sc := Syscall{ABI: k.Abi, NR: k.Nr}
		t.syscalls[sc] = struct{}{}
		a := attribute(t, t.groupCalls, k, t.groupGeneration(&g, k), func(old Labels, c loader.Counts) {
			t.foldCalls(SeriesKey{old, sc}, c)
		})
		key := SeriesKey{*a.labels, sc}
		addCounts(snap.Calls, key, a.since(v))
		if final(k.CgroupId) {
			t.deadGroupStats = append(t.deadGroupStats, k)
			t.deadGroupCalls = append(t.deadGroupCalls, foldedCalls{key, a.since(v)})
		}
		a.exported = v
		t.liveCallKeys[key] = struct{}{}
	})
	if err != nil {
		return err
	}
	err = t.kernel.ReadGroupErrors(func(k loader.GroupKey, n uint64) {
		snap.GroupErrorsEntries++
		v := loader.Counts{Calls: n}
		sc := Syscall{ABI: k.Abi, NR: k.Nr}
		a := attribute(t, t.groupErrors, k, t.groupGeneration(&g, k), func(old Labels, c loader.Counts) {
			t.foldErrors(ErrorKey{SeriesKey{old, sc}, k.Err}, c.Calls)
		})
		key := ErrorKey{SeriesKey{*a.labels, sc}, k.Err}
		addErrors(snap.Errors, key, a.since(v).Calls)
		if final(k.CgroupId) {
			t.deadGroupErrors = append(t.deadGroupErrors, k)
			t.deadGroupErrnos = append(t.deadGroupErrnos, foldedErrors{key, a.since(v).Calls})
		}
		a.exported = v
		t.liveErrKeys[key] = struct{}{}
	})
	if err != nil {
		return err
	}
	t.findRemovedCgroups()
	return nil
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
	err := deleteThenFold(t.deadGroupStats, t.kernel.DeleteGroupStats, func(i int, k loader.GroupKey) {
		t.foldCalls(t.deadGroupCalls[i].key, t.deadGroupCalls[i].counts)
		delete(t.groupCalls, k)
	})
	if err != nil {
		return err
	}
	err = deleteThenFold(t.deadGroupErrors, t.kernel.DeleteGroupErrors, func(i int, k loader.GroupKey) {
		t.foldErrors(t.deadGroupErrnos[i].key, t.deadGroupErrnos[i].n)
		delete(t.groupErrors, k)
	})
	if err != nil {
		return err
	}
	t.forgetGoneCgroups(t.now().Add(-cgroupGrace))
	return nil
}

// deleteThenFold deletes final entries from the kernel and calls fold for
// each one deleted (i its index in keys): what a failed delete did delete
// is folded, the rest is left for the next sync, so no count is lost or
// folded twice.
func deleteThenFold[K any](keys []K, del func([]K) (int, error), fold func(i int, k K)) error {
	n, err := del(keys)
	for i, k := range keys[:n] {
		fold(i, k)
	}
	return err
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

// groupGeneration makes g stand for a group entry in attribute: named, by
// the labels its key gives.
func (t *Tally) groupGeneration(g *generationInfo, k loader.GroupKey) *generationInfo {
	*g = generationInfo{labels: t.labeler.groupLabels(loader.CString(k.Comm[:]), k.CgroupId), named: true, series: -1}
	return g
}

// collectFinished gathers the book's keys of the finished processes'
// final entries, and reports whether looking them up costs less than
// reading the maps in full.
func (t *Tally) collectFinished() bool {
	t.lookupStats, t.lookupErrors = t.lookupStats[:0], t.lookupErrors[:0]
	t.procs.Finishing(func(tgid uint32) {
		t.book.each(tgid, func(k loader.ErrnoKey) {
			switch {
			case t.procs.Running(k.Tgid, k.ExecId):
			case k.Err == 0:
				t.lookupStats = append(t.lookupStats, loader.SyscallKey{Tgid: k.Tgid, ExecId: k.ExecId, Nr: k.Nr, Abi: k.Abi})
			default:
				t.lookupErrors = append(t.lookupErrors, k)
			}
		})
	})
	n := len(t.lookupStats) + len(t.lookupErrors)
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

// attribute returns the live entry's attribution, creating it or following
// a rename or a move to another cgroup; freeze hands what was exported
// under the old labels to the folded totals. It returns nil for an entry
// whose process cannot be named yet (its records are still in flight): it
// is exported once they arrive.
func attribute[K comparable](t *Tally, live map[K]*attribution, k K, g *generationInfo, freeze func(old Labels, exported loader.Counts)) *attribution {
	labels := &g.labels
	if !g.named {
		if !g.exited {
			return nil
		}
		unknown := unknownLabels.project(t.labeler.set)
		labels = &unknown
	}
	a := live[k]
	if a == nil {
		a = &attribution{labels: g.shared(*labels)}
		live[k] = a
	} else if a.labels != g.sharedLabels {
		// The strings are compared once per generation and sync: its other
		// entries then share the pointer (comparing and copying them per
		// entry was a third of the tally's part of a large scrape).
		switch {
		case *a.labels != *labels:
			freeze(*a.labels, a.since(a.exported))
			a.rebase()
			a.labels = g.shared(*labels)
		case g.sharedLabels == nil:
			g.sharedLabels = a.labels
		default:
			a.labels = g.sharedLabels
		}
	}
	return a
}

// foldCalls and foldErrors add to the lasting totals and note when.
func (t *Tally) foldCalls(k SeriesKey, v loader.Counts) {
	if v == (loader.Counts{}) {
		return
	}
	addCounts(t.folded, k, v)
	t.touched[k] = t.now()
}

func (t *Tally) foldErrors(k ErrorKey, n uint64) {
	if n == 0 {
		return
	}
	addErrors(t.foldedErrors, k, n)
	t.touchedErrs[k] = t.now()
}

// revive gives each label set of this snapshot that was evicted as idle and
// is back (live, folded since, or counted by name) the total it had
// (seriesCap.revive), in the snapshot and in the folded totals. It returns
// each revived total.
func revive[K comparable, V any](c *seriesCap[K, V], snap, folded map[K]V, touched map[K]time.Time,
	add func(V, V) V, max int, now time.Time, revived func(K, V)) {
	if len(c.idle) == 0 {
		return
	}
	for k := range snap {
		if v, ok := c.revive(k, max); ok {
			snap[k] = add(snap[k], v)
			folded[k] = add(folded[k], v)
			touched[k] = now
			revived(k, v)
		}
	}
}

// maxSeries is the series cap, or no cap.
func (t *Tally) maxSeries() int {
	if t.limits.MaxSeries <= 0 {
		return int(^uint(0) >> 1)
	}
	return t.limits.MaxSeries
}

// limitSeries drops idle label sets and applies the series cap to a
// snapshot whose Calls and Errors hold every label set.
func (t *Tally) limitSeries(snap *Snapshot) {
	snap.LabelSet = t.labeler.set
	revive(t.callsCap, snap.Calls, t.folded, t.touched, plusCounts, t.maxSeries(), t.now(), func(k SeriesKey, v loader.Counts) {
		t.evictedNS[k.Syscall] -= v.NS // back in the series' sums
	})
	revive(t.errorsCap, snap.Errors, t.foldedErrors, t.touchedErrs, plusErrors, t.maxSeries(), t.now(), func(ErrorKey, uint64) {})
	snap.SyscallNS = make(map[Syscall]uint64, len(t.evictedNS))
	for k, v := range snap.Calls {
		snap.SyscallNS[k.Syscall] += v.NS
	}
	for sc, ns := range t.evictedNS {
		snap.SyscallNS[sc] += ns
	}
	if idle := t.limits.IdleTimeout; idle > 0 {
		cutoff := t.now().Add(-idle)
		for k, when := range t.touched {
			if when.Before(cutoff) && !has(t.liveCallKeys, k) && snap.Calls[k] == t.folded[k] {
				t.callsCap.evict(k, t.folded[k], plusCounts)
				t.evictedNS[k.Syscall] += t.folded[k].NS
				delete(snap.Calls, k)
				delete(t.folded, k)
				delete(t.touched, k)
			}
		}
		for k, when := range t.touchedErrs {
			if when.Before(cutoff) && !has(t.liveErrKeys, k) && snap.Errors[k] == t.foldedErrors[k] {
				t.errorsCap.evict(k, t.foldedErrors[k], plusErrors)
				delete(snap.Errors, k)
				delete(t.foldedErrors, k)
				delete(t.touchedErrs, k)
			}
		}
	}
	max := t.maxSeries()
	snap.Calls, snap.CallsOther = t.callsCap.apply(snap.Calls, max, plusCounts, compareSeries)
	snap.Errors, snap.ErrorsOther = t.errorsCap.apply(snap.Errors, max, plusErrors, compareErrors)
	snap.CallsSeriesOverflows = t.callsCap.Overflows
	snap.ErrorsSeriesOverflows = t.errorsCap.Overflows
}

func plusCounts(a, b loader.Counts) loader.Counts {
	return loader.Counts{Calls: a.Calls + b.Calls, NS: a.NS + b.NS}
}

func plusErrors(a, b uint64) uint64 { return a + b }

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

// sweepLostExits marks processes gone whose exit record never came (ring
// buffer full), so their entries do not stay in the kernel forever.
func (t *Tally) sweepLostExits() {
	if t.alive == nil {
		return
	}
	// Suspects are checked at every sync: still unnamed after a drain, a
	// dead one lost both its fork and exit records, and its counts should
	// not wait 30 s to be exported. An entry first seen unnamed in this
	// drain's syncs is not one: its records may still be in the ring buffer
	// (they wake the reader only in batches), and marking it gone would
	// export its counts under ~unknown.
	full := t.now().Sub(t.lastSweep) >= t.sweepEvery
	if full {
		t.lastSweep = t.now()
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
	for k := range t.live {
		check(k.Tgid)
	}
	// And those without an entry (no call counted per process: filtered
	// out, or counted by name in full maps), or the table would keep every
	// one whose exit record was lost until its pid came back.
	t.procs.EachLive(check)
}

// addCounts and addErrors add nothing for zero, so that a name a process
// had without calls (renamed again before any) gets no series.
func addCounts[K comparable](m map[K]loader.Counts, k K, v loader.Counts) {
	if v == (loader.Counts{}) {
		return
	}
	c := m[k]
	c.Calls += v.Calls
	c.NS += v.NS
	m[k] = c
}

func addErrors(m map[ErrorKey]uint64, k ErrorKey, n uint64) {
	if n != 0 {
		m[k] += n
	}
}

func sub(a, b loader.Counts) loader.Counts {
	return loader.Counts{Calls: a.Calls - b.Calls, NS: a.NS - b.NS}
}
