// Package tally keeps exact totals per process name and syscall: it reads
// the kernel's per-process counters, folds the counters of exited processes
// into lasting totals and deletes them from the kernel, and attributes each
// count to the name its process had, so that no exported counter ever goes
// backwards.
package tally

import (
	"time"

	"github.com/sysobsd/sysobsd/internal/loader"
)

// Comm values for counts that have no process name of their own.
const (
	// OtherComm holds calls the kernel could not key by process (map full).
	OtherComm = "~other"
	// UnknownComm holds counts of a process that exited unseen by any record.
	UnknownComm = "~unknown"
)

// Syscall is one syscall of one ABI.
type Syscall struct {
	ABI uint16
	NR  uint16
}

// SeriesKey is one exported label set of the per-process counters.
type SeriesKey struct {
	Comm string
	Syscall
}

// ErrorKey is SeriesKey plus an errno.
type ErrorKey struct {
	SeriesKey
	Errno uint32
}

// Snapshot is everything a scrape exports, owned by the caller.
type Snapshot struct {
	Calls      map[SeriesKey]loader.Counts
	Errors     map[ErrorKey]uint64
	Histograms map[Syscall]loader.Histogram
	Drops      []uint64 // indexed like loader.DropReasons
	// Fill of the per-process kernel maps when the snapshot was taken.
	StatsEntries, ErrorsEntries int
	// Processes is how many running processes have counts in the kernel.
	Processes int
	// FoldedProcesses counts processes whose counts were folded since start.
	FoldedProcesses uint64
	// DecodeErrors counts lifecycle records that did not decode.
	DecodeErrors uint64
}

// Kernel is what the tally reads from and trims in the kernel (loader.Maps).
type Kernel interface {
	ReadStats(func(loader.SyscallKey, loader.Counts)) error
	ReadErrors(func(loader.ErrnoKey, uint64)) error
	ReadOverflowStats(func(abi, nr uint16, c loader.Counts)) error
	ReadOverflowErrors(func(loader.ErrnoKey, uint64)) error
	ReadHistogram(abi, nr uint16) (loader.Histogram, error)
	ReadDrops() ([]uint64, error)
	DeleteStats([]loader.SyscallKey) error
	DeleteErrors([]loader.ErrnoKey) error
}

// Processes names process generations and says which have exited
// (events.ProcessTable).
type Processes interface {
	Name(tgid, execID uint32) (string, bool)
	Exited(tgid uint32) bool
	ForgetExited()
	MarkGone(tgid uint32)
}

// attribution is what a live kernel entry has been exported as: counts up to
// base belong to earlier names (already in the folded totals), counts from
// base on to comm. exported is the value the last scrape showed.
type attribution struct {
	comm     string
	base     loader.Counts
	exported loader.Counts
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
	syscalls     map[Syscall]struct{} // every syscall ever seen, for histograms

	foldedProcesses uint64
	lastSweep       time.Time
	sweepEvery      time.Duration
	now             func() time.Time

	// scratch, reused between syncs
	deadStats  []loader.SyscallKey
	deadErrors []loader.ErrnoKey
	// what each dead entry adds to the folded totals once it is deleted
	deadCalls  []foldedCalls
	deadErrnos []foldedErrors
	exitedSeen map[uint32]struct{}
	// unnamed holds the processes whose entries the last sync could not
	// name: the sweep checks them too, or a process whose fork and exit
	// records were both lost would keep its entries, uncounted, forever.
	unnamed map[uint32]struct{}
}

// New returns an empty tally over kernel and procs.
func New(kernel Kernel, procs Processes, alive func(tgid uint32) bool) *Tally {
	return &Tally{
		kernel:       kernel,
		procs:        procs,
		alive:        alive,
		folded:       make(map[SeriesKey]loader.Counts),
		foldedErrors: make(map[ErrorKey]uint64),
		live:         make(map[loader.SyscallKey]*attribution),
		liveErrors:   make(map[loader.ErrnoKey]*attribution),
		syscalls:     make(map[Syscall]struct{}),
		exitedSeen:   make(map[uint32]struct{}),
		unnamed:      make(map[uint32]struct{}),
		sweepEvery:   30 * time.Second,
		now:          time.Now,
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
	liveTGIDs := make(map[uint32]struct{})

	err := t.kernel.ReadStats(func(k loader.SyscallKey, v loader.Counts) {
		if scrape {
			snap.StatsEntries++
		}
		sc := Syscall{ABI: k.Abi, NR: k.Nr}
		t.syscalls[sc] = struct{}{}
		a := attribute(t.procs, t.live, k, k.Tgid, k.ExecId, func(old string, c loader.Counts) {
			addCounts(t.folded, SeriesKey{old, sc}, c)
		})
		if a == nil {
			t.unnamed[k.Tgid] = struct{}{}
			return
		}
		if t.procs.Exited(k.Tgid) {
			// Folded only once deleted: after a failed sync, the entry
			// and its attribution are still there for the next one.
			t.deadStats = append(t.deadStats, k)
			t.deadCalls = append(t.deadCalls, foldedCalls{SeriesKey{a.comm, sc}, sub(v, a.base)})
			t.exitedSeen[k.Tgid] = struct{}{}
			return
		}
		liveTGIDs[k.Tgid] = struct{}{}
		if scrape {
			addCounts(snap.Calls, SeriesKey{a.comm, sc}, sub(v, a.base))
			a.exported = v
		}
	})
	if err != nil {
		return nil, err
	}
	err = t.kernel.ReadErrors(func(k loader.ErrnoKey, n uint64) {
		if scrape {
			snap.ErrorsEntries++
		}
		v := loader.Counts{Calls: n}
		sc := Syscall{ABI: k.Abi, NR: k.Nr}
		a := attribute(t.procs, t.liveErrors, k, k.Tgid, k.ExecId, func(old string, c loader.Counts) {
			addErrors(t.foldedErrors, ErrorKey{SeriesKey{old, sc}, k.Err}, c.Calls)
		})
		if a == nil {
			t.unnamed[k.Tgid] = struct{}{}
			return
		}
		key := ErrorKey{SeriesKey{a.comm, sc}, k.Err}
		if t.procs.Exited(k.Tgid) {
			t.deadErrors = append(t.deadErrors, k)
			t.deadErrnos = append(t.deadErrnos, foldedErrors{key, n - a.base.Calls})
			t.exitedSeen[k.Tgid] = struct{}{}
			return
		}
		if scrape {
			addErrors(snap.Errors, key, n-a.base.Calls)
			a.exported = v
		}
	})
	if err != nil {
		return nil, err
	}
	// Delete only after both reads: an exited process's entries are final,
	// and what was read is now in the folded totals.
	if err := t.kernel.DeleteStats(t.deadStats); err != nil {
		return nil, err
	}
	for i, k := range t.deadStats {
		addCounts(t.folded, t.deadCalls[i].key, t.deadCalls[i].counts)
		delete(t.live, k)
	}
	if err := t.kernel.DeleteErrors(t.deadErrors); err != nil {
		return nil, err
	}
	for i, k := range t.deadErrors {
		addErrors(t.foldedErrors, t.deadErrnos[i].key, t.deadErrnos[i].n)
		delete(t.liveErrors, k)
	}
	t.foldedProcesses += uint64(len(t.exitedSeen))
	// Every exited process's entries were read and deleted above, so all
	// are done with, also those that had none (no calls counted, or all in
	// the overflow counters): forgetting only those seen would keep them,
	// and the engine folding every tick for them, forever.
	t.procs.ForgetExited()
	if !scrape {
		return nil, nil
	}

	for k, v := range t.folded {
		addCounts(snap.Calls, k, v)
	}
	for k, v := range t.foldedErrors {
		snap.Errors[k] += v
	}
	err = t.kernel.ReadOverflowStats(func(abi, nr uint16, c loader.Counts) {
		sc := Syscall{ABI: abi, NR: nr}
		t.syscalls[sc] = struct{}{}
		addCounts(snap.Calls, SeriesKey{OtherComm, sc}, c)
	})
	if err != nil {
		return nil, err
	}
	err = t.kernel.ReadOverflowErrors(func(k loader.ErrnoKey, n uint64) {
		snap.Errors[ErrorKey{SeriesKey{OtherComm, Syscall{ABI: k.Abi, NR: k.Nr}}, k.Err}] += n
	})
	if err != nil {
		return nil, err
	}
	for sc := range t.syscalls {
		h, err := t.kernel.ReadHistogram(sc.ABI, sc.NR)
		if err != nil {
			return nil, err
		}
		snap.Histograms[sc] = h
	}
	if snap.Drops, err = t.kernel.ReadDrops(); err != nil {
		return nil, err
	}
	snap.Processes = len(liveTGIDs)
	snap.FoldedProcesses = t.foldedProcesses
	return snap, nil
}

// attribute returns the live entry's attribution, creating it or following
// a rename; on a rename, freeze hands what was exported under the old name
// to the folded totals. It returns nil for an entry whose process cannot be
// named yet (its records are still in flight): it is exported once they arrive.
func attribute[K comparable](procs Processes, live map[K]*attribution, k K, tgid, execID uint32, freeze func(oldComm string, exported loader.Counts)) *attribution {
	comm, ok := procs.Name(tgid, execID)
	if !ok {
		if !procs.Exited(tgid) {
			return nil
		}
		comm = UnknownComm
	}
	a := live[k]
	if a == nil {
		a = &attribution{comm: comm}
		live[k] = a
	} else if a.comm != comm {
		freeze(a.comm, sub(a.exported, a.base))
		a.base, a.comm = a.exported, comm
	}
	return a
}

// sweepLostExits marks processes gone whose exit record never came (ring
// buffer full), so their entries do not stay in the kernel forever.
func (t *Tally) sweepLostExits() {
	if t.alive == nil || t.now().Sub(t.lastSweep) < t.sweepEvery {
		return
	}
	t.lastSweep = t.now()
	checked := make(map[uint32]bool)
	check := func(tgid uint32) {
		if _, done := checked[tgid]; done || t.procs.Exited(tgid) {
			return
		}
		alive := t.alive(tgid)
		checked[tgid] = alive
		if !alive {
			t.procs.MarkGone(tgid)
		}
	}
	for k := range t.live {
		check(k.Tgid)
	}
	for tgid := range t.unnamed {
		check(tgid)
	}
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
