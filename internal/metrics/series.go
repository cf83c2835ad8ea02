package metrics

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// seriesCache keeps the per-process series from one scrape to the next: their
// label pairs, built once per series, and their exposition order.
//
// Building label pairs (validating, sorting, two allocations a label) was
// the largest part of a scrape's own work on a host with 10,000 series, and
// a series' labels never change while it lives. The registry sorts each
// family by label values; emitted in that order, the registry finds them
// sorted, and only a scrape's new series are sorted here. Only the series of
// the last scrape are kept: the cache is as large as one scrape, not as the
// host's history.
type seriesCache[K comparable, V any] struct {
	byKey map[K]*series[K, V]
	order []*series[K, V] // the last scrape's series, sorted by label values
	fresh []*series[K, V] // this scrape's new series
	// invalid are the series whose label values are invalid (never emitted;
	// kept so that each is logged once, not at every scrape).
	invalid []*series[K, V]
	scrape  uint64 // counts scrapes: a series' scrape says whether it is in this one
}

type series[K comparable, V any] struct {
	key    K
	labels []*dto.LabelPair // nil: a label value was invalid; never emitted
	value  V
	scrape uint64
}

// add returns key's series in this scrape, its value zero at its first add
// of the scrape. A new series' label pairs are built from desc and values;
// if they are invalid, add returns NewConstMetric's error, once for the
// series' life, and the series (labels nil) is not emitted.
func (c *seriesCache[K, V]) add(key K, desc *prometheus.Desc, values func() []string) (*series[K, V], error) {
	s, ok := c.byKey[key]
	if !ok {
		if c.byKey == nil {
			c.byKey = make(map[K]*series[K, V])
		}
		s = &series[K, V]{key: key}
		c.byKey[key] = s
		m, err := prometheus.NewConstMetric(desc, prometheus.CounterValue, 0, values()...)
		if err == nil {
			var out dto.Metric
			err = m.Write(&out)
			s.labels = out.Label
		}
		if err != nil {
			s.labels = nil
			c.invalid = append(c.invalid, s)
		} else {
			c.fresh = append(c.fresh, s)
		}
		s.scrape = c.scrape
		return s, err
	}
	if s.scrape != c.scrape {
		var zero V
		s.value, s.scrape = zero, c.scrape
	}
	return s, nil
}

// endScrape returns this scrape's series in the registry's order and
// forgets those the scrape did not have.
func (c *seriesCache[K, V]) endScrape() []*series[K, V] {
	kept := make([]*series[K, V], 0, len(c.order)+len(c.fresh))
	for _, s := range c.order {
		if s.scrape == c.scrape {
			kept = append(kept, s)
		} else {
			delete(c.byKey, s.key)
		}
	}
	c.invalid = slices.DeleteFunc(c.invalid, func(s *series[K, V]) bool {
		if s.scrape != c.scrape {
			delete(c.byKey, s.key)
			return true
		}
		return false
	})
	byLabels := func(a, b *series[K, V]) int { return compareLabelValues(a.labels, b.labels) }
	slices.SortFunc(c.fresh, byLabels)
	merged := make([]*series[K, V], 0, len(kept)+len(c.fresh))
	i, j := 0, 0
	for i < len(kept) && j < len(c.fresh) {
		if byLabels(c.fresh[j], kept[i]) < 0 {
			merged = append(merged, c.fresh[j])
			j++
		} else {
			merged = append(merged, kept[i])
			i++
		}
	}
	merged = append(append(merged, kept[i:]...), c.fresh[j:]...)
	clear(c.fresh) // no hold on series that may go
	c.order, c.fresh = merged, c.fresh[:0]
	c.scrape++
	return merged
}

// compareLabelValues orders two series of one family as the registry does:
// by their label values, label by label in label-name order.
func compareLabelValues(a, b []*dto.LabelPair) int {
	for i := range min(len(a), len(b)) {
		if c := strings.Compare(a[i].GetValue(), b[i].GetValue()); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// counterSeries is one counter sample. Its label pairs are shared with other
// scrapes' samples of the series: the registry and the encoders only read
// them (the registry copies before it sorts).
type counterSeries struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	value   float64
	counter dto.Counter
}

func (s *counterSeries) Desc() *prometheus.Desc { return s.desc }

func (s *counterSeries) Write(m *dto.Metric) error {
	s.counter.Value = &s.value
	m.Label = s.labels
	m.Counter = &s.counter
	return nil
}
