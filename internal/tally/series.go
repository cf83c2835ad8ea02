package tally

import (
	"cmp"
	"slices"
)

// seriesCap bounds the series of one metric: the first max label sets get
// series of their own, later ones are summed into one overflow series, so
// that the sum over all series stays the exact total. A label set never
// moves between its own series and the overflow: that would make both go
// backwards.
type seriesCap[K comparable, V any] struct {
	owned      map[K]struct{}
	overflowed map[K]struct{}
	// base holds what evicted overflowed label sets had contributed, so the
	// overflow series does not go backwards when they leave.
	base V
	// Overflows counts label sets sent to the overflow series since start.
	Overflows uint64
	// idle holds the totals of label sets evicted with series of their own:
	// one that comes back goes on from its total (revive). From zero, its
	// series would repeat values it had shown, and increase() across the gap
	// would miss those calls.
	idle map[K]V
}

// maxIdleKept bounds the totals kept of evicted label sets (~180 bytes each,
// ~1.8 MB a metric): more than the label sets a host without pid labels
// evicts; with pid labels, where every exited process's go, a quarter of
// them, picked at random, are forgotten whenever the bound is passed.
const maxIdleKept = 10000

func newSeriesCap[K comparable, V any]() *seriesCap[K, V] {
	return &seriesCap[K, V]{owned: make(map[K]struct{}), overflowed: make(map[K]struct{}), idle: make(map[K]V)}
}

// apply splits full into the series kept and the overflow sum. New label
// sets are admitted in sorted order, so the same history gives the same
// series.
func (c *seriesCap[K, V]) apply(full map[K]V, max int, add func(V, V) V, compare func(K, K) int) (map[K]V, V) {
	kept := make(map[K]V, min(len(full), max))
	other := c.base
	var fresh []K
	for k, v := range full {
		switch {
		case has(c.owned, k):
			kept[k] = v
		case has(c.overflowed, k):
			other = add(other, v)
		default:
			fresh = append(fresh, k)
		}
	}
	slices.SortFunc(fresh, compare)
	for _, k := range fresh {
		if len(c.owned) < max {
			c.owned[k] = struct{}{}
			kept[k] = full[k]
			continue
		}
		c.overflowed[k] = struct{}{}
		c.Overflows++
		other = add(other, full[k])
	}
	return kept, other
}

// evict forgets a label set whose totals leave the tally; v is its total.
// The overflow series keeps an overflowed one's; an owned one's is kept for
// revive.
func (c *seriesCap[K, V]) evict(k K, v V, add func(V, V) V) {
	if has(c.overflowed, k) {
		c.base = add(c.base, v)
		delete(c.overflowed, k)
	}
	if has(c.owned, k) {
		delete(c.owned, k)
		c.idle[k] = v
		if len(c.idle) > maxIdleKept {
			for old := range c.idle { // map order: at random
				if len(c.idle) <= maxIdleKept*3/4 {
					break
				}
				delete(c.idle, old)
			}
		}
	}
}

// revive returns the total an evicted label set had, if it is kept and can
// have its own series again (fewer than max are owned): it is owned again at
// once. One that cannot starts afresh, in the overflow series; its old total
// is forgotten, or the overflow series would count it a second time.
func (c *seriesCap[K, V]) revive(k K, max int) (V, bool) {
	v, kept := c.idle[k]
	if !kept {
		return v, false
	}
	delete(c.idle, k)
	if len(c.owned) >= max {
		var zero V
		return zero, false
	}
	c.owned[k] = struct{}{}
	return v, true
}

// reset forgets which label sets had series (the label set changed).
func (c *seriesCap[K, V]) reset() {
	clear(c.owned)
	clear(c.overflowed)
	clear(c.idle)
}

func has[K comparable](m map[K]struct{}, k K) bool {
	_, ok := m[k]
	return ok
}

func compareLabels(a, b Labels) int {
	for _, d := range dimensions {
		if c := cmp.Compare(*a.value(d.label), *b.value(d.label)); c != 0 {
			return c
		}
	}
	return 0
}

func compareSeries(a, b SeriesKey) int {
	return cmp.Or(compareLabels(a.Labels, b.Labels), cmp.Compare(a.ABI, b.ABI), cmp.Compare(a.NR, b.NR))
}

func compareErrors(a, b ErrorKey) int {
	return cmp.Or(compareSeries(a.SeriesKey, b.SeriesKey), cmp.Compare(a.Errno, b.Errno))
}
