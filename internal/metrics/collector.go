// Package metrics turns the tally's snapshots into Prometheus metrics at
// scrape time.
package metrics

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/tally"
)

// Source gives the current totals (tally.Engine).
type Source interface {
	Snapshot(ctx context.Context) (*tally.Snapshot, error)
}

// Kernel histogram bucket b holds durations in (2^(b-31), 2^(b-30)] s
// (bpf/sysobsd.bpf.c latency_bucket). Classic buckets exported: le =
// 2^(b-30) s for b in [firstBucket, lastBucket]
// (about 1 µs to 17 s); shorter calls fall in the first, longer in +Inf.
const (
	firstBucket    = 10 // 2^-20 s, about 1 µs
	lastBucket     = 34 // 2^4 s
	bucketExponent = 30
)

// processDescs are the per-process metrics' descriptors for one label set.
type processDescs struct {
	calls, errors, seconds, bytes *prometheus.Desc
	inFlight, inFlightOldest      *prometheus.Desc
}

func newProcessDescs(set tally.LabelSet) processDescs {
	labels := set.Names()
	withSyscall := append(slices.Clone(labels), "syscall")
	withErrno := append(slices.Clone(withSyscall), "errno")
	withState := append(slices.Clone(withSyscall), "state")
	return processDescs{
		calls: prometheus.NewDesc("sysobsd_syscalls_total",
			"System calls completed, counted at exit.", withSyscall, nil),
		errors: prometheus.NewDesc("sysobsd_syscall_errors_total",
			"System calls that returned -errno.", withErrno, nil),
		seconds: prometheus.NewDesc("sysobsd_syscall_seconds_total",
			"Time spent inside system calls, from entry to exit.", withSyscall, nil),
		bytes: prometheus.NewDesc("sysobsd_syscall_bytes_total",
			"Bytes moved by the system calls that return them (read, write, send, recv families, sendfile, splice, copy_file_range): the sum of their successful return values.", withSyscall, nil),
		inFlight: prometheus.NewDesc("sysobsd_syscalls_in_flight",
			"Threads inside the system call at the scrape, by state: running, sleeping (interruptible), uninterruptible (D), stopped.", withState, nil),
		inFlightOldest: prometheus.NewDesc("sysobsd_syscall_in_flight_oldest_seconds",
			"How long the thread inside the system call longest (of those sysobsd_syscalls_in_flight counts) has been inside, at the scrape.", withState, nil),
	}
}

var (
	seriesOverflowDesc = prometheus.NewDesc("sysobsd_series_overflow_total",
		"Label sets summed into the overflow series (labels \"~other\") of sysobsd_<metric>_total because it reached its series cap.", []string{"metric"}, nil)
	durationDesc = prometheus.NewDesc("sysobsd_syscall_duration_seconds",
		"Latency of system calls, host-wide.", []string{"syscall"}, nil)
	dropsDesc = prometheus.NewDesc("sysobsd_drops_total",
		"Losses in the kernel by reason: ringbuf_full (a lifecycle record not sent), stats_map_full and errors_map_full (counted by process name and cgroup, without pid, instead of per process), group_stats_map_full and group_errors_map_full (those full too: counted under comm=\"~other\"), error_uncounted (an error not counted), no_start_time (a call counted without its duration), start_storage_unavailable (an entry time not stored), listed_map_full (a filter verdict not stored).",
		[]string{"reason"}, nil)
	eventsDroppedDesc = prometheus.NewDesc("sysobsd_events_dropped_total",
		"Notable events (failed and slow calls) not sent to user space, by reason: rate_limited (over events.rate_limit per CPU), ringbuf_full.",
		[]string{"reason"}, nil)
	mapEntriesDesc = prometheus.NewDesc("sysobsd_bpf_map_entries",
		"Entries in the kernel's maps of counters at the last scrape (call_slots: slots in use on all CPUs).", []string{"map"}, nil)
	mapCapacityDesc = prometheus.NewDesc("sysobsd_bpf_map_max_entries",
		"Capacity of the kernel's maps of counters (call_slots: slots on all CPUs; 0: off).", []string{"map"}, nil)
	processesDesc = prometheus.NewDesc("sysobsd_processes_tracked",
		"Running processes with counts in the kernel maps.", nil, nil)
	foldedDesc = prometheus.NewDesc("sysobsd_processes_folded_total",
		"Exited processes whose counts were folded into lasting totals and removed from the kernel maps.", nil, nil)
	mapReadsDesc = prometheus.NewDesc("sysobsd_bpf_map_reads_total",
		"Reads of the per-process kernel maps by how: by_keys (a fold looking up only the entries of processes that exited or exec'd), full (every entry: scrapes, and folds of many processes or after a lost entry announcement).",
		[]string{"how"}, nil)
	entryKeysLostDesc = prometheus.NewDesc("sysobsd_bpf_entry_announcements_lost_total",
		"New kernel map entries the daemon was not told of (entry_keys ring buffer full). No count is lost: the next fold reads the maps in full.", nil, nil)
	missedByKeysDesc = prometheus.NewDesc("sysobsd_bpf_entries_missed_by_keys_total",
		"Entries of exited or exec'd processes that a full read of the kernel maps found but the daemon had not been told of: folds by key had left them to it. None is lost (they are folded under their process's name); a rising count means the kernel's entry announcements are incomplete.", nil, nil)
	decodeErrorsDesc = prometheus.NewDesc("sysobsd_lifecycle_decode_errors_total",
		"Lifecycle ring-buffer records that could not be decoded.", nil, nil)
	inFlightErrorsDesc = prometheus.NewDesc("sysobsd_in_flight_read_errors_total",
		"Reads of the calls in flight (the in_flight iterator) that failed: those scrapes have no sysobsd_syscalls_in_flight.", nil, nil)
	scrapeErrorDesc = prometheus.NewDesc("sysobsd_scrape_error",
		"1 if reading the kernel maps failed during this scrape.", nil, nil)
)

// Collector is a prometheus.Collector over a Source.
type Collector struct {
	// native adds native-histogram buckets (schema 0) to the classic ones;
	// a reload may change it while a scrape runs.
	native atomic.Bool
	mu     sync.Mutex
	descs  map[tally.LabelSet]processDescs
	// series keeps the per-process series between scrapes (seriesCache),
	// for the label set in set; one scrape at a time uses it.
	series struct {
		sync.Mutex
		set    tally.LabelSet
		calls  seriesCache[nameKey, loader.Counts]
		errors seriesCache[errnoKey, uint64]
	}
	source   Source
	names    *syscalls.Table
	capacity loader.Capacities
	timeout  time.Duration
	log      *zap.Logger
}

// NewCollector names syscalls with names; capacity is the kernel hash maps'
// size (loader.Maps.Capacity), exported beside their fill.
func NewCollector(source Source, names *syscalls.Table, capacity loader.Capacities, log *zap.Logger) *Collector {
	return &Collector{
		source:   source,
		names:    names,
		capacity: capacity,
		timeout:  10 * time.Second,
		log:      log,
	}
}

// SetNativeHistograms adds exact native-histogram buckets (schema 0: the
// kernel's own power-of-two bounds) to the classic ones, for Prometheus
// servers that scrape protobuf.
func (c *Collector) SetNativeHistograms(on bool) { c.native.Store(on) }

// nativeHistogram is a classic const histogram plus the same counts as
// native schema-0 buckets: kernel bucket b is native index b-30.
type nativeHistogram struct {
	prometheus.Metric
	buckets loader.Histogram
}

func (h nativeHistogram) Write(m *dto.Metric) error {
	if err := h.Metric.Write(m); err != nil {
		return err
	}
	hist := m.GetHistogram()
	schema, zero, zeroCount := int32(0), 0.0, uint64(0)
	hist.Schema, hist.ZeroThreshold, hist.ZeroCount = &schema, &zero, &zeroCount
	prevIndex, prevCount := 0, int64(0)
	var span *dto.BucketSpan
	for b, n := range h.buckets {
		if n == 0 {
			continue
		}
		index := b - bucketExponent
		if span == nil || index != prevIndex+1 {
			offset := int32(index)
			if span != nil {
				offset = int32(index - prevIndex - 1)
			}
			span = &dto.BucketSpan{Offset: &offset, Length: new(uint32)}
			hist.PositiveSpan = append(hist.PositiveSpan, span)
		}
		*span.Length++
		hist.PositiveDelta = append(hist.PositiveDelta, int64(n)-prevCount)
		prevIndex, prevCount = index, int64(n)
	}
	return nil
}

// Describe sends nothing: the collector is unchecked, since a SIGHUP can
// change the labels of the per-process metrics.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

func (c *Collector) descsFor(set tally.LabelSet) processDescs {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.descs[set]
	if !ok {
		if c.descs == nil {
			c.descs = make(map[tally.LabelSet]processDescs)
		}
		d = newProcessDescs(set)
		c.descs[set] = d
	}
	return d
}

type nameKey struct {
	labels  tally.Labels
	syscall string
}

type errnoKey struct {
	nameKey
	errno string
}

// Collect takes a snapshot and emits it as metrics: the per-process series
// (emitProcessSeries), then the overflow series, histograms and self-metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	snap, err := c.source.Snapshot(ctx)
	if err != nil {
		c.log.Error("scrape: read kernel counters", zap.Error(err))
		ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, 0)

	descs := c.descsFor(snap.LabelSet)
	values := func(l tally.Labels, extra ...string) []string {
		return append(l.Values(snap.LabelSet), extra...)
	}
	c.emitProcessSeries(ch, snap, descs)
	c.emitInFlight(ch, snap, descs)

	// The overflow series of the series cap: every label "~other".
	other := tally.EveryLabel(tally.OtherComm)
	if snap.CallsSeriesOverflows > 0 {
		c.emit(ch, descs.calls, prometheus.CounterValue, float64(snap.CallsOther.Calls), values(other, tally.OtherComm)...)
		c.emit(ch, descs.seconds, prometheus.CounterValue, float64(snap.CallsOther.NS)/1e9, values(other, tally.OtherComm)...)
		c.emit(ch, descs.bytes, prometheus.CounterValue, float64(snap.CallsOther.Bytes), values(other, tally.OtherComm)...)
	}
	if snap.ErrorsSeriesOverflows > 0 {
		c.emit(ch, descs.errors, prometheus.CounterValue, float64(snap.ErrorsOther), values(other, tally.OtherComm, tally.OtherComm)...)
	}
	c.emit(ch, seriesOverflowDesc, prometheus.CounterValue, float64(snap.CallsSeriesOverflows), "syscalls")
	c.emit(ch, seriesOverflowDesc, prometheus.CounterValue, float64(snap.ErrorsSeriesOverflows), "syscall_errors")

	c.collectHistograms(ch, snap)

	for i, n := range snap.Drops {
		if i >= len(loader.DropReasons) {
			continue
		}
		if reason, ok := strings.CutPrefix(loader.DropReasons[i], "notable_"); ok {
			c.emit(ch, eventsDroppedDesc, prometheus.CounterValue, float64(n), reason)
			continue
		}
		c.emit(ch, dropsDesc, prometheus.CounterValue, float64(n), loader.DropReasons[i])
	}
	for _, m := range []struct {
		name              string
		entries, capacity int
	}{
		{"call_slots", snap.CallSlotsEntries, int(c.capacity.CallSlots)},
		{"syscall_stats", snap.StatsEntries, int(c.capacity.Stats)},
		{"syscall_errors", snap.ErrorsEntries, int(c.capacity.Errors)},
		{"group_stats", snap.GroupStatsEntries, int(c.capacity.GroupStats)},
		{"group_errors", snap.GroupErrorsEntries, int(c.capacity.GroupErrors)},
	} {
		c.emit(ch, mapEntriesDesc, prometheus.GaugeValue, float64(m.entries), m.name)
		c.emit(ch, mapCapacityDesc, prometheus.GaugeValue, float64(m.capacity), m.name)
	}
	c.emit(ch, processesDesc, prometheus.GaugeValue, float64(snap.Processes))
	c.emit(ch, foldedDesc, prometheus.CounterValue, float64(snap.FoldedProcesses))
	c.emit(ch, mapReadsDesc, prometheus.CounterValue, float64(snap.FoldsByKeys), "by_keys")
	c.emit(ch, mapReadsDesc, prometheus.CounterValue, float64(snap.FullReads), "full")
	c.emit(ch, entryKeysLostDesc, prometheus.CounterValue, float64(snap.EntryKeysLost))
	c.emit(ch, missedByKeysDesc, prometheus.CounterValue, float64(snap.MissedByKeys))
	c.emit(ch, decodeErrorsDesc, prometheus.CounterValue, float64(snap.DecodeErrors))
	c.emit(ch, inFlightErrorsDesc, prometheus.CounterValue, float64(snap.InFlightErrors))
}

// emitProcessSeries emits the per-process counters. Syscalls of different
// ABIs with the same name are one series.
func (c *Collector) emitProcessSeries(ch chan<- prometheus.Metric, snap *tally.Snapshot, descs processDescs) {
	c.series.Lock()
	defer c.series.Unlock()
	set := snap.LabelSet
	if c.series.set != set { // relabelled (SIGHUP): every series is new
		c.series.set = set
		c.series.calls = seriesCache[nameKey, loader.Counts]{}
		c.series.errors = seriesCache[errnoKey, uint64]{}
	}
	logInvalid := func(desc *prometheus.Desc, err error) {
		c.log.Error("scrape: build metric", zap.Stringer("desc", desc), zap.Error(err))
	}
	for k, v := range snap.Calls {
		key := nameKey{k.Labels, c.names.Name(syscalls.ABI(k.ABI), uint32(k.NR))}
		s, err := c.series.calls.add(key, descs.calls, func() []string { return append(key.labels.Values(set), key.syscall) })
		if err != nil {
			logInvalid(descs.calls, err)
		}
		s.value = s.value.Plus(v)
	}
	for k, v := range snap.Errors {
		key := errnoKey{nameKey{k.Labels, c.names.Name(syscalls.ABI(k.ABI), uint32(k.NR))}, syscalls.ErrnoName(k.Errno)}
		s, err := c.series.errors.add(key, descs.errors, func() []string {
			return append(key.labels.Values(set), key.syscall, key.errno)
		})
		if err != nil {
			logInvalid(descs.errors, err)
		}
		s.value += v
	}
	calls := c.series.calls.endScrape()
	// calls, seconds and bytes have the same label names and values;
	// bytes only for the syscalls that return them.
	for _, s := range calls {
		ch <- &counterSeries{desc: descs.calls, labels: s.labels, value: float64(s.value.Calls)}
	}
	for _, s := range calls {
		ch <- &counterSeries{desc: descs.seconds, labels: s.labels, value: float64(s.value.NS) / 1e9}
	}
	for _, s := range calls {
		if syscalls.MovesBytes(s.key.syscall) {
			ch <- &counterSeries{desc: descs.bytes, labels: s.labels, value: float64(s.value.Bytes)}
		}
	}
	for _, s := range c.series.errors.endScrape() {
		ch <- &counterSeries{desc: descs.errors, labels: s.labels, value: float64(s.value)}
	}
}

// emitInFlight emits the threads inside a call now; ABIs with the same
// syscall name are one series (threads added, the oldest kept).
func (c *Collector) emitInFlight(ch chan<- prometheus.Metric, snap *tally.Snapshot, descs processDescs) {
	type key struct {
		labels         tally.Labels
		syscall, state string
	}
	merged := make(map[key]tally.InFlight, len(snap.InFlight))
	for k, v := range snap.InFlight {
		mk := key{k.Labels, c.names.Name(syscalls.ABI(k.ABI), uint32(k.NR)), loader.ThreadStateName(k.State)}
		m := merged[mk]
		merged[mk] = tally.InFlight{Threads: m.Threads + v.Threads, OldestNS: max(m.OldestNS, v.OldestNS)}
	}
	for k, v := range merged {
		values := append(k.labels.Values(snap.LabelSet), k.syscall, k.state)
		c.emit(ch, descs.inFlight, prometheus.GaugeValue, float64(v.Threads), values...)
		c.emit(ch, descs.inFlightOldest, prometheus.GaugeValue, float64(v.OldestNS)/1e9, values...)
	}
}

// histogramName labels a kernel histogram (tally.HistogramSlot): the
// syscall's name, and for the slot that numbers from 1023 up share,
// "unknown_1023+".
func (c *Collector) histogramName(slot tally.Syscall) string {
	if slot.NR == loader.NRSlots-1 {
		return fmt.Sprintf("unknown_%d+", slot.NR)
	}
	return c.names.Name(syscalls.ABI(slot.ABI), uint32(slot.NR))
}

func (c *Collector) collectHistograms(ch chan<- prometheus.Metric, snap *tally.Snapshot) {
	type histogram struct {
		buckets loader.Histogram
		ns      uint64
	}
	hists := make(map[string]*histogram)
	for sc, h := range snap.Histograms {
		name := c.histogramName(sc)
		sum := hists[name]
		if sum == nil {
			sum = &histogram{}
			hists[name] = sum
		}
		for b, n := range h {
			sum.buckets[b] += n
		}
	}
	// The sum of durations is the per-process seconds of the same calls:
	// only calls with a measured duration add nanoseconds to either.
	for sc, ns := range snap.SyscallNS {
		if h := hists[c.histogramName(tally.HistogramSlot(sc))]; h != nil {
			h.ns += ns
		}
	}
	for name, h := range hists {
		var count uint64
		for _, n := range h.buckets {
			count += n
		}
		if count == 0 {
			continue // latency not measured for this syscall
		}
		buckets := make(map[float64]uint64, lastBucket-firstBucket+1)
		cumulative := uint64(0)
		for b := 0; b <= lastBucket; b++ {
			cumulative += h.buckets[b]
			if b >= firstBucket {
				buckets[math.Ldexp(1, b-bucketExponent)] = cumulative
			}
		}
		m, err := prometheus.NewConstHistogram(durationDesc, count, float64(h.ns)/1e9, buckets, name)
		if err != nil {
			c.log.Error("scrape: build histogram", zap.String("syscall", name), zap.Error(err))
			continue
		}
		if c.native.Load() {
			m = nativeHistogram{Metric: m, buckets: h.buckets}
		}
		ch <- m
	}
}

// emit never panics: a bad label value is logged and the metric skipped.
func (c *Collector) emit(ch chan<- prometheus.Metric, desc *prometheus.Desc, typ prometheus.ValueType, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(desc, typ, v, labels...)
	if err != nil {
		c.log.Error("scrape: build metric", zap.Stringer("desc", desc), zap.Error(err))
		return
	}
	ch <- m
}
