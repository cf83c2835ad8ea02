package tally

import (
	"time"

	"github.com/sysobsd/sysobsd/internal/loader"
)

// arith is how one kind of value (calls and time, an error count, ...) adds
// up. Values are comparable: the zero value means "nothing counted".
type arith[V comparable] struct {
	plus, minus func(V, V) V
}

// countsArith and errorsArith are the two kinds of value counted today:
// loader.Counts per call (calls and time), a plain count per errno.
var (
	countsArith = arith[loader.Counts]{plus: plusCounts, minus: sub}
	errorsArith = arith[uint64]{plus: plusErrors, minus: func(a, b uint64) uint64 { return a - b }}
)

func plusCounts(a, b loader.Counts) loader.Counts { return a.Plus(b) }

func sub(a, b loader.Counts) loader.Counts { return a.Minus(b) }

func plusErrors(a, b uint64) uint64 { return a + b }

// addTo adds v to m[k]; nothing for zero, so that a name a process had
// without calls (renamed again before any) gets no series.
func addTo[K comparable, V comparable](m map[K]V, k K, v V, a arith[V]) {
	var zero V
	if v == zero {
		return
	}
	m[k] = a.plus(m[k], v)
}

// ledger holds one metric's lasting totals by label set (SK): what exited
// processes and removed cgroups counted, the series cap, and when each
// total last changed, for idle eviction. Calls and errors each have one;
// a new per-call value gets one more.
type ledger[SK comparable, V comparable] struct {
	arith   arith[V]
	folded  map[SK]V
	touched map[SK]time.Time // when each folded total last changed
	cap     *seriesCap[SK, V]
	// live are the label sets running processes (and group entries) are
	// attributed to at this scrape, with new counts or not: never idle.
	live map[SK]struct{}
	// compare orders label sets for the series cap; labelsOf and
	// withLabels read and replace a key's process labels.
	compare    func(SK, SK) int
	labelsOf   func(SK) Labels
	withLabels func(SK, Labels) SK
}

func newLedger[SK comparable, V comparable](a arith[V], compare func(SK, SK) int,
	labelsOf func(SK) Labels, withLabels func(SK, Labels) SK) *ledger[SK, V] {
	return &ledger[SK, V]{
		arith:      a,
		folded:     make(map[SK]V),
		touched:    make(map[SK]time.Time),
		cap:        newSeriesCap[SK, V](),
		live:       make(map[SK]struct{}),
		compare:    compare,
		labelsOf:   labelsOf,
		withLabels: withLabels,
	}
}

// fold adds v to k's lasting total and notes when.
func (l *ledger[SK, V]) fold(k SK, v V, now time.Time) {
	var zero V
	if v == zero {
		return
	}
	l.folded[k] = l.arith.plus(l.folded[k], v)
	l.touched[k] = now
}

// addFolded adds every lasting total to a snapshot's series.
func (l *ledger[SK, V]) addFolded(snap map[SK]V) {
	for k, v := range l.folded {
		addTo(snap, k, v, l.arith)
	}
}

// relabel projects the lasting totals onto a new label set (label sets that
// become equal add up) and starts the series cap afresh.
func (l *ledger[SK, V]) relabel(set LabelSet, now time.Time) {
	folded := make(map[SK]V, len(l.folded))
	for k, v := range l.folded {
		addTo(folded, l.withLabels(k, l.labelsOf(k).project(set)), v, l.arith)
	}
	l.folded = folded
	clear(l.touched)
	for k := range l.folded {
		l.touched[k] = now
	}
	l.cap.reset()
}

// limit drops idle label sets from snap (evicted is called for each, with
// its total) and applies the series cap: it returns the series kept and the
// overflow series' value. Call revive first.
func (l *ledger[SK, V]) limit(snap map[SK]V, lim Limits, now time.Time, evicted func(SK, V)) (map[SK]V, V) {
	if lim.IdleTimeout > 0 {
		cutoff := now.Add(-lim.IdleTimeout)
		for k, when := range l.touched {
			if when.Before(cutoff) && !has(l.live, k) && snap[k] == l.folded[k] {
				l.cap.evict(k, l.folded[k], l.arith.plus)
				evicted(k, l.folded[k])
				delete(snap, k)
				delete(l.folded, k)
				delete(l.touched, k)
			}
		}
	}
	return l.cap.apply(snap, lim.maxSeries(), l.arith.plus, l.compare)
}

// revive gives each label set of this snapshot that was evicted as idle and
// is back (live, folded since, or counted by name) the total it had
// (seriesCap.revive), in the snapshot and in the folded totals.
func (l *ledger[SK, V]) revive(snap map[SK]V, max int, now time.Time, revived func(SK, V)) {
	if len(l.cap.idle) == 0 {
		return
	}
	for k := range snap {
		if v, ok := l.cap.revive(k, max); ok {
			snap[k] = l.arith.plus(snap[k], v)
			l.folded[k] = l.arith.plus(l.folded[k], v)
			l.touched[k] = now
			revived(k, v)
		}
	}
}

// maxSeries is the series cap, or no cap.
func (lim Limits) maxSeries() int {
	if lim.MaxSeries <= 0 {
		return int(^uint(0) >> 1)
	}
	return lim.MaxSeries
}
