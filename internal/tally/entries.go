package tally

import (
	"github.com/sysobsd/sysobsd/internal/loader"
)

// attribution is what a live kernel entry has been exported as: counts up to
// base belong to earlier names (already in the folded totals), counts from
// base on to labels. exported is the value the last scrape showed.
type attribution[V comparable] struct {
	labels *Labels // shared by the generation's entries (see generationInfo.shared)
	// base is nil while zero, as it is until a rename or a label change:
	// ~1.6 MB less on a large host than a value in every entry.
	base     *V
	exported V
}

// since returns v less what belongs to earlier names.
func (a *attribution[V]) since(v V, ar arith[V]) V {
	if a.base == nil {
		return v
	}
	return ar.minus(v, *a.base)
}

// rebase hands everything exported so far to earlier names.
func (a *attribution[V]) rebase() {
	var zero V
	if a.exported == zero {
		a.base = nil
		return
	}
	base := a.exported
	a.base = &base
}

// entryTable is one kernel table of counters (KK → V) and what the tally
// knows of its entries: what each was exported as, which are final, and the
// ledger (by series key SK) their counts end in. A key splits into its owner
// (a process generation, or a process name in a cgroup) and its part P, the
// rest of the series key: the syscall, and for errors the errno.
type entryTable[KK, P, SK, V comparable] struct {
	ledger       *ledger[SK, V]
	attributions map[KK]*attribution[V]

	table Table[KK, V] // the kernel map

	part       func(KK) P
	series     func(Labels, P) SK
	syscall    func(P) Syscall
	snapshotOf func(*Snapshot) map[SK]V
	// calls marks the calls' tables: they note the syscalls seen (for the
	// histograms) and which processes are running.
	calls bool

	// Per-process tables: the entry's process generation, and its key in
	// the key book (fromBook: the book's key, if it is one of this table's).
	owner    func(KK) (tgid, execID uint32)
	bookKey  func(KK) loader.ErrnoKey
	fromBook func(loader.ErrnoKey) (KK, bool)
	// Group tables: the process name and cgroup an entry counts.
	group func(KK) (comm string, cgroupID uint64)

	// scratch, reused between syncs
	seen       int                  // entries read by this sync (the group tables')
	lookupKeys []KK                 // the finished entries a fold by keys reads
	dead       []KK                 // final entries, deleted at the end of the sync
	deadValues []foldedValue[SK, V] // what each dead entry adds to the ledger
	liveSums   map[liveSeries[P]]V  // live entries summed by label set index
}

// foldedValue is what a dead entry adds to its ledger once deleted.
type foldedValue[SK, V comparable] struct {
	key SK
	v   V
}

// liveSeries keys the live sums: an index into Tally.seriesLabels instead of
// five strings, turned into a series key once per series.
type liveSeries[P comparable] struct {
	labels int32
	part   P
}

func (tb *entryTable[KK, P, SK, V]) init(l *ledger[SK, V]) *entryTable[KK, P, SK, V] {
	tb.ledger = l
	tb.attributions = make(map[KK]*attribution[V])
	tb.liveSums = make(map[liveSeries[P]]V)
	return tb
}

// startSync empties the scratch of the last sync.
func (tb *entryTable[KK, P, SK, V]) startSync() {
	tb.seen = 0
	tb.dead, tb.deadValues = tb.dead[:0], tb.deadValues[:0]
	clear(tb.liveSums)
}

// freezeExported hands what each entry's last scrape exported to the
// ledger, under the labels it had, and leaves the entry owning only what
// comes after (the labels are about to change).
func (tb *entryTable[KK, P, SK, V]) freezeExported() {
	for k, a := range tb.attributions {
		addTo(tb.ledger.folded, tb.series(*a.labels, tb.part(k)), a.since(a.exported, tb.ledger.arith), tb.ledger.arith)
		a.rebase()
	}
}

// attribute returns the entry's attribution, creating it or following a
// rename or a move to another cgroup: what was exported under the old
// labels goes to the ledger. It returns nil for an entry whose process
// cannot be named yet (its records are still in flight): it is exported
// once they arrive.
func (tb *entryTable[KK, P, SK, V]) attribute(t *Tally, k KK, g *generationInfo) *attribution[V] {
	labels := &g.labels
	if !g.named {
		if !g.exited {
			return nil
		}
		unknown := unknownLabels.project(t.labeler.set)
		labels = &unknown
	}
	a := tb.attributions[k]
	if a == nil {
		a = &attribution[V]{labels: g.shared(*labels)}
		tb.attributions[k] = a
	} else if a.labels != g.sharedLabels {
		// The strings are compared once per generation and sync: its other
		// entries then share the pointer (comparing and copying them per
		// entry was a third of the tally's part of a large scrape).
		switch {
		case *a.labels != *labels:
			tb.ledger.fold(tb.series(*a.labels, tb.part(k)), a.since(a.exported, tb.ledger.arith), t.now())
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

// markDead notes a final entry: folded into the ledger once deleted, so
// that after a failed sync the entry and its attribution are still there.
func (tb *entryTable[KK, P, SK, V]) markDead(k KK, key SK, v V) {
	tb.dead = append(tb.dead, k)
	tb.deadValues = append(tb.deadValues, foldedValue[SK, V]{key, v})
}

// retire deletes the dead entries from the kernel and folds what each one
// deleted counted; forget drops what else the tally keeps of it.
func (tb *entryTable[KK, P, SK, V]) retire(t *Tally, forget func(KK)) error {
	return deleteThenFold(tb.dead, tb.table.Delete, func(i int, k KK) {
		tb.ledger.fold(tb.deadValues[i].key, tb.deadValues[i].v, t.now())
		delete(tb.attributions, k)
		if forget != nil {
			forget(k)
		}
	})
}

// collect notes a book key of a finished entry of this table, for a fold
// by keys.
func (tb *entryTable[KK, P, SK, V]) collect(k loader.ErrnoKey) {
	if kk, ok := tb.fromBook(k); ok {
		tb.lookupKeys = append(tb.lookupKeys, kk)
	}
}

// flushLive turns the live sums into the snapshot's series.
func (tb *entryTable[KK, P, SK, V]) flushLive(t *Tally, snap *Snapshot) {
	out := tb.snapshotOf(snap)
	for k, v := range tb.liveSums {
		key := tb.series(t.seriesLabels[k.labels], k.part)
		tb.ledger.live[key] = struct{}{}
		addTo(out, key, v, tb.ledger.arith)
	}
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
