package metrics

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/tally"
)

var update = flag.Bool("update", false, "rewrite testdata/collector.golden from the collector's output")

// fakeSource returns a fixed snapshot, or err.
type fakeSource struct {
	snap     *tally.Snapshot
	err      error
	deadline time.Duration // how far ahead the last call's deadline was
}

func (s *fakeSource) Snapshot(ctx context.Context) (*tally.Snapshot, error) {
	if d, ok := ctx.Deadline(); ok {
		s.deadline = time.Until(d)
	}
	if s.err != nil {
		return nil, s.err
	}
	return s.snap, nil
}

// amd64 syscalls: native x86_64 and compat i386 numbers.
var (
	nativeRead   = tally.Syscall{ABI: uint16(syscalls.Native), NR: 0}
	nativeWrite  = tally.Syscall{ABI: uint16(syscalls.Native), NR: 1}
	nativeOpenat = tally.Syscall{ABI: uint16(syscalls.Native), NR: 257}
	nativeFutex  = tally.Syscall{ABI: uint16(syscalls.Native), NR: 202}
	nativeOdd    = tally.Syscall{ABI: uint16(syscalls.Native), NR: 999}
	compatRead   = tally.Syscall{ABI: uint16(syscalls.Compat), NR: 3}
	compatWrite  = tally.Syscall{ABI: uint16(syscalls.Compat), NR: 4}
	compatFutex  = tally.Syscall{ABI: uint16(syscalls.Compat), NR: 240}
)

func seriesKey(comm string, sc tally.Syscall) tally.SeriesKey {
	return tally.SeriesKey{Labels: tally.Labels{Comm: comm}, Syscall: sc}
}

func errorKey(comm string, sc tally.Syscall, errno uint32) tally.ErrorKey {
	return tally.ErrorKey{SeriesKey: seriesKey(comm, sc), Errno: errno}
}

// drops counts i+1 for reason i, and 99 for one more that has no name (a
// newer BPF object than this daemon): not exported.
func drops() []uint64 {
	d := make([]uint64, len(loader.DropReasons)+1)
	for i := range d {
		d[i] = uint64(i + 1)
	}
	d[len(d)-1] = 99
	return d
}

// withSyscallNS fills SyscallNS from Calls, as the tally does.
func withSyscallNS(snap *tally.Snapshot) *tally.Snapshot {
	snap.SyscallNS = make(map[tally.Syscall]uint64)
	for k, v := range snap.Calls {
		snap.SyscallNS[k.Syscall] += v.NS
	}
	return snap
}

// goldenSnapshot covers every kind of series the collector emits.
func goldenSnapshot() *tally.Snapshot {
	return withSyscallNS(&tally.Snapshot{
		LabelSet: tally.LabelSet(tally.LabelComm),
		Calls: map[tally.SeriesKey]loader.Counts{
			seriesKey("nginx", nativeRead):          {Calls: 100, NS: 2_000_000_000, Bytes: 409_600},
			seriesKey("nginx", compatRead):          {Calls: 5, NS: 1_000_000, Bytes: 20}, // one series with the native read
			seriesKey("nginx", nativeOpenat):        {Calls: 10, NS: 500_000},
			seriesKey("postgres", nativeFutex):      {Calls: 50, NS: 3_000_000_000},
			seriesKey("postgres", compatFutex):      {Calls: 1, NS: 250_000_000},
			seriesKey("postgres", nativeOdd):        {Calls: 2, NS: 0},
			seriesKey(tally.OtherComm, nativeWrite): {Calls: 7, NS: 700, Bytes: 7},
		},
		Errors: map[tally.ErrorKey]uint64{
			errorKey("nginx", nativeOpenat, 2):     4,
			errorKey("nginx", nativeWrite, 28):     2,
			errorKey("nginx", compatWrite, 28):     1, // one series with the native write
			errorKey("postgres", nativeFutex, 512): 6,
		},
		Histograms: map[tally.Syscall]loader.Histogram{
			// bucket 5 lies below the first exported bucket, 36 above the last.
			nativeRead:   {5: 1, 10: 2, 12: 3, 36: 1},
			compatRead:   {12: 1},
			nativeFutex:  {20: 4, 34: 1},
			compatFutex:  {28: 1},
			nativeOpenat: {}, // latency not measured: no histogram
			nativeWrite:  {},
		},
		InFlight: map[tally.InFlightKey]tally.InFlight{
			{Labels: tally.Labels{Comm: "nginx"}, Syscall: nativeRead, State: loader.ThreadSleeping}:            {Threads: 3, OldestNS: 2_500_000_000},
			{Labels: tally.Labels{Comm: "nginx"}, Syscall: compatRead, State: loader.ThreadSleeping}:            {Threads: 1, OldestNS: 7_000_000_000}, // one series with the native read
			{Labels: tally.Labels{Comm: "postgres"}, Syscall: nativeFutex, State: loader.ThreadUninterruptible}: {Threads: 1, OldestNS: 125_000_000},
		},
		Drops:            drops(),
		StatsEntries:     42,
		CallSlotsEntries: 300,
		ErrorsEntries:    7,
		Processes:        3,
		FoldedProcesses:  9,
		FoldsByKeys:      30,
		FullReads:        4,
		EntryKeysLost:    2,
		MissedByKeys:     1,
		DecodeErrors:     1,
	})
}

func newTestCollector(t testing.TB, source Source) (*Collector, *observer.ObservedLogs) {
	t.Helper()
	names, err := syscalls.ForArch("amd64")
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	return NewCollector(source, names, loader.Capacities{CallSlots: 16384, Stats: 65536, Errors: 16384, GroupStats: 8192, GroupErrors: 4096}, zap.New(core)), logs
}

// gather collects c through a pedantic registry, which checks every metric
// against its descriptor and for duplicate series. (client_golang's testutil
// would need github.com/kylelemons/godebug in go.mod.)
func gather(t *testing.T, c prometheus.Collector) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("register: %v", err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return families
}

// seriesCount is how many series of the named family c exports.
func seriesCount(t *testing.T, c prometheus.Collector, name string) int {
	t.Helper()
	for _, mf := range gather(t, c) {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

// exposition is what c exports, in the text format.
func exposition(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	families := gather(t, c)
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			t.Fatalf("encode %s: %v", mf.GetName(), err)
		}
	}
	return buf.String()
}

func TestCollectorGolden(t *testing.T) {
	c, logs := newTestCollector(t, &fakeSource{snap: goldenSnapshot()})
	got := exposition(t, c)
	golden := filepath.Join("testdata", "collector.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("exposition differs from %s (go test -update rewrites it):\n%s", golden, lineDiff(string(want), got))
	}
	if logs.Len() != 0 {
		t.Errorf("logged %d entries for a good snapshot: %v", logs.Len(), logs.All())
	}
	// Every scrape exports the same: nothing in the collector accumulates.
	if again := exposition(t, c); again != got {
		t.Errorf("second scrape differs from the first:\n%s", lineDiff(got, again))
	}
}

func TestCollectorMetricsLint(t *testing.T) {
	c, _ := newTestCollector(t, &fakeSource{snap: goldenSnapshot()})
	problems, err := promlint.NewWithMetricFamilies(gather(t, c)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestCollectorSeriesCounts(t *testing.T) {
	c, _ := newTestCollector(t, &fakeSource{snap: goldenSnapshot()})
	for name, want := range map[string]int{
		"sysobsd_syscalls_total":           5, // nginx read, openat; postgres futex, unknown_999; ~other write
		"sysobsd_syscall_seconds_total":    5,
		"sysobsd_syscall_bytes_total":      2,                           // read and write only: openat, futex, unknown_999 move none
		"sysobsd_syscall_errors_total":     3,                           // the two writes merged
		"sysobsd_syscall_duration_seconds": 2,                           // read and futex; openat and write measured nothing
		"sysobsd_drops_total":              len(loader.DropReasons) - 2, // the notable_ ones are events_dropped
		"sysobsd_events_dropped_total":     2,
		"sysobsd_bpf_map_entries":          5,
		"sysobsd_scrape_error":             1,
	} {
		if got := seriesCount(t, c, name); got != want {
			t.Errorf("%s: %d series, want %d", name, got, want)
		}
	}
}

func TestCollectorScrapeError(t *testing.T) {
	source := &fakeSource{err: errors.New("read syscall_stats: operation not permitted")}
	c, logs := newTestCollector(t, source)
	want := `# HELP sysobsd_scrape_error 1 if reading the kernel maps failed during this scrape.
# TYPE sysobsd_scrape_error gauge
sysobsd_scrape_error 1
`
	if got := exposition(t, c); got != want {
		t.Errorf("exposition after a failed snapshot:\n%s\nwant\n%s", got, want)
	}
	entries := logs.FilterMessage("scrape: read kernel counters").All()
	if len(entries) == 0 {
		t.Fatalf("the error was not logged; logs: %v", logs.All())
	}
	if got := entries[0].ContextMap()["error"]; got != "read syscall_stats: operation not permitted" {
		t.Errorf("logged error %v", got)
	}
}

func TestCollectorBoundsTheSnapshot(t *testing.T) {
	source := &fakeSource{snap: goldenSnapshot()}
	c, _ := newTestCollector(t, source)
	gather(t, c)
	if source.deadline <= 0 || source.deadline > 10*time.Second {
		t.Errorf("Snapshot's context deadline is %v ahead, want within 10s", source.deadline)
	}
}

func TestCollectorSkipsInvalidLabelValues(t *testing.T) {
	snap := &tally.Snapshot{
		LabelSet: tally.LabelSet(tally.LabelComm),
		Calls: map[tally.SeriesKey]loader.Counts{
			seriesKey("bad\xffname", nativeRead): {Calls: 3, NS: 30},
			seriesKey("\xc3", nativeWrite):       {Calls: 1, NS: 1},
			seriesKey("good", nativeRead):        {Calls: 2, NS: 20},
		},
		Errors: map[tally.ErrorKey]uint64{
			errorKey("bad\xffname", nativeOpenat, 2): 1,
			errorKey("good", nativeOpenat, 2):        5,
		},
		Histograms: map[tally.Syscall]loader.Histogram{nativeRead: {12: 5}},
	}
	withSyscallNS(snap)
	c, logs := newTestCollector(t, &fakeSource{snap: snap})
	got := exposition(t, c) // a panic or an inconsistent metric fails here
	for _, want := range []string{
		`sysobsd_syscalls_total{comm="good",syscall="read"} 2`,
		`sysobsd_syscall_errors_total{comm="good",errno="ENOENT",syscall="openat"} 5`,
		`sysobsd_syscall_duration_seconds_count{syscall="read"} 5`,
		`sysobsd_scrape_error 0`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("exposition lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "bad") || strings.Contains(got, `syscall="write"`) {
		t.Errorf("exposition has the invalid series:\n%s", got)
	}
	// One line per label set skipped: the first bad comm's calls (with its
	// seconds) and errors, the other's calls.
	if n := logs.FilterMessage("scrape: build metric").Len(); n != 3 {
		t.Errorf("logged %d skipped label sets, want 3; logs: %v", n, logs.All())
	}
	// The histogram sum still counts the bad series' time: it is host-wide.
	if want := `sysobsd_syscall_duration_seconds_sum{syscall="read"} 5e-08`; !strings.Contains(got, want+"\n") {
		t.Errorf("exposition lacks %s:\n%s", want, got)
	}
}

func TestCollectorEmptySnapshot(t *testing.T) {
	c, _ := newTestCollector(t, &fakeSource{snap: &tally.Snapshot{}})
	got := exposition(t, c)
	for _, absent := range []string{"sysobsd_syscalls_total", "sysobsd_syscall_duration_seconds", "sysobsd_drops_total"} {
		if strings.Contains(got, absent) {
			t.Errorf("empty snapshot exports %s:\n%s", absent, got)
		}
	}
	for _, want := range []string{
		`sysobsd_bpf_map_max_entries{map="syscall_stats"} 65536`,
		`sysobsd_bpf_map_entries{map="syscall_errors"} 0`,
		`sysobsd_processes_tracked 0`,
		`sysobsd_scrape_error 0`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("exposition lacks %s:\n%s", want, got)
		}
	}
}

// Unchecked: a SIGHUP may change the per-process metrics' labels.
func TestDescribeSendsNothing(t *testing.T) {
	c, _ := newTestCollector(t, &fakeSource{snap: goldenSnapshot()})
	ch := make(chan *prometheus.Desc, 32)
	c.Describe(ch)
	close(ch)
	if n := len(ch); n != 0 {
		t.Errorf("Describe sent %d descriptors, want none (an unchecked collector)", n)
	}
}

// lineDiff lists the lines only in want (-) or only in got (+), in order.
func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	inWant, inGot := make(map[string]int), make(map[string]int)
	for _, l := range wl {
		inWant[l]++
	}
	for _, l := range gl {
		inGot[l]++
	}
	var b strings.Builder
	for _, l := range wl {
		if inGot[l] == 0 {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range gl {
		if inWant[l] == 0 {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	if b.Len() == 0 {
		return "(same lines, different order)"
	}
	return b.String()
}

// benchSnapshot has 10,000 call series: 100 comms × 100 syscalls, a
// thousand error series and a histogram per syscall.
func benchSnapshot() *tally.Snapshot {
	snap := &tally.Snapshot{
		LabelSet:   tally.LabelSet(tally.LabelComm),
		Calls:      make(map[tally.SeriesKey]loader.Counts, 10000),
		Errors:     make(map[tally.ErrorKey]uint64, 1000),
		Histograms: make(map[tally.Syscall]loader.Histogram, 100),
		Drops:      make([]uint64, len(loader.DropReasons)),
	}
	for nr := range uint16(100) {
		sc := tally.Syscall{ABI: uint16(syscalls.Native), NR: nr}
		var h loader.Histogram
		for b := range h {
			h[b] = uint64(b) * uint64(nr)
		}
		snap.Histograms[sc] = h
		for comm := range 100 {
			name := fmt.Sprintf("process-%03d", comm)
			snap.Calls[seriesKey(name, sc)] = loader.Counts{Calls: uint64(comm*1000) + uint64(nr), NS: uint64(comm) * 12345}
			if comm%10 == 0 {
				snap.Errors[errorKey(name, sc, uint32(nr%40+1))] = uint64(comm)
			}
		}
	}
	return snap
}

func BenchmarkCollect(b *testing.B) {
	c, _ := newTestCollector(b, &fakeSource{snap: benchSnapshot()})
	ch := make(chan prometheus.Metric, 1024)
	done := make(chan int)
	go func() {
		n := 0
		for range ch {
			n++
		}
		done <- n
	}()
	b.ReportAllocs()
	for b.Loop() {
		c.Collect(ch)
	}
	close(ch)
	if n := <-done; n == 0 {
		b.Fatal("no metrics collected")
	}
}

// BenchmarkScrape is one scrape's HTTP response over the same 21,000 series:
// Collect, the registry's gather (checks, sort) and the text encoding.
func BenchmarkScrape(b *testing.B) {
	c, _ := newTestCollector(b, &fakeSource{snap: benchSnapshot()})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// Numbers from 1023 up share one kernel histogram: exported once, as
// unknown_1023+, with the time of all their calls as its sum; their counters
// keep their own numbers.
func TestSharedHistogramSlotExportedOnce(t *testing.T) {
	big1 := tally.Syscall{ABI: uint16(syscalls.Native), NR: 2000}
	big2 := tally.Syscall{ABI: uint16(syscalls.Native), NR: 3000}
	shared := tally.Syscall{ABI: uint16(syscalls.Native), NR: loader.NRSlots - 1}
	snap := withSyscallNS(&tally.Snapshot{
		LabelSet: tally.LabelSet(tally.LabelComm),
		Calls: map[tally.SeriesKey]loader.Counts{
			seriesKey("a", big1): {Calls: 2, NS: 200}, seriesKey("a", big2): {Calls: 3, NS: 300},
		},
		Histograms: map[tally.Syscall]loader.Histogram{shared: {10: 5}},
	})
	c, _ := newTestCollector(t, &fakeSource{snap: snap})
	got := gatherValues(t, c)
	for key, want := range map[string]float64{
		`sysobsd_syscall_duration_seconds_count{syscall="unknown_1023+"}`: 5,
		`sysobsd_syscall_duration_seconds_sum{syscall="unknown_1023+"}`:   500e-9,
		`sysobsd_syscalls_total{comm="a",syscall="unknown_2000"}`:         2,
		`sysobsd_syscalls_total{comm="a",syscall="unknown_3000"}`:         3,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	for key := range got {
		if strings.HasPrefix(key, "sysobsd_syscall_duration_seconds_count") && !strings.Contains(key, "unknown_1023+") {
			t.Errorf("another histogram: %s", key)
		}
	}
}

// gatherValues is every sample of c by name{labels}: counters and gauges by
// value, histograms by _count and _sum.
func gatherValues(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			var pairs []string
			for _, l := range m.GetLabel() {
				pairs = append(pairs, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			labels := "{" + strings.Join(pairs, ",") + "}"
			switch {
			case m.Histogram != nil:
				out[mf.GetName()+"_count"+labels] = float64(m.GetHistogram().GetSampleCount())
				out[mf.GetName()+"_sum"+labels] = m.GetHistogram().GetSampleSum()
			case m.Counter != nil:
				out[mf.GetName()+labels] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[mf.GetName()+labels] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// Native buckets carry the kernel's counts exactly: bucket b is index b-30.
func TestNativeHistogramsMatchTheKernelBuckets(t *testing.T) {
	snap := withSyscallNS(&tally.Snapshot{
		LabelSet:   tally.LabelSet(tally.LabelComm),
		Calls:      map[tally.SeriesKey]loader.Counts{seriesKey("a", nativeRead): {Calls: 10, NS: 1000}},
		Histograms: map[tally.Syscall]loader.Histogram{nativeRead: {10: 2, 11: 3, 14: 5}},
	})
	c, _ := newTestCollector(t, &fakeSource{snap: snap})
	c.SetNativeHistograms(true)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != "sysobsd_syscall_duration_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSchema() != 0 || h.GetSampleCount() != 10 {
			t.Errorf("schema %d count %d, want 0 and 10", h.GetSchema(), h.GetSampleCount())
		}
		spans := h.GetPositiveSpan()
		if len(spans) != 2 || spans[0].GetOffset() != -20 || spans[0].GetLength() != 2 || spans[1].GetOffset() != 2 || spans[1].GetLength() != 1 {
			t.Errorf("spans %v, want [-20 len 2] [+2 len 1]", spans)
		}
		if d := h.GetPositiveDelta(); len(d) != 3 || d[0] != 2 || d[1] != 1 || d[2] != 2 {
			t.Errorf("deltas %v, want [2 1 2]", d)
		}
		if len(h.GetBucket()) == 0 {
			t.Errorf("classic buckets missing alongside the native ones")
		}
		return
	}
	t.Fatal("no sysobsd_syscall_duration_seconds")
}
