package metrics

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/tally"
)

// collected runs one Collect and returns the per-process samples in the
// order the collector sent them, by metric name.
func collected(t *testing.T, c *Collector) map[string][]*dto.Metric {
	t.Helper()
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	out := map[string][]*dto.Metric{}
	for m := range ch {
		name := m.Desc().String()
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"sysobsd_syscalls_total", "sysobsd_syscall_seconds_total", "sysobsd_syscall_errors_total"} {
			if strings.Contains(name, `"`+want+`"`) {
				out[want] = append(out[want], &d)
			}
		}
	}
	return out
}

// snapshotOf has a series per comm and syscall, and an ENOENT per comm.
func snapshotOf(comms ...string) *tally.Snapshot {
	snap := &tally.Snapshot{
		LabelSet: tally.LabelSet(tally.LabelComm),
		Calls:    map[tally.SeriesKey]loader.Counts{},
		Errors:   map[tally.ErrorKey]uint64{},
	}
	for i, comm := range comms {
		for _, sc := range []tally.Syscall{nativeRead, nativeWrite, nativeFutex} {
			snap.Calls[seriesKey(comm, sc)] = loader.Counts{Calls: uint64(i + 1), NS: 1000}
		}
		snap.Errors[errorKey(comm, nativeOpenat, 2)] = uint64(i + 1)
	}
	return withSyscallNS(snap)
}

func assertSorted(t *testing.T, scrape string, got map[string][]*dto.Metric, wantPerFamily int) {
	t.Helper()
	for name, ms := range got {
		for i := 1; i < len(ms); i++ {
			if compareLabelValues(ms[i-1].GetLabel(), ms[i].GetLabel()) >= 0 {
				t.Errorf("%s: %s sample %d (%v) not after %v", scrape, name, i, ms[i].GetLabel(), ms[i-1].GetLabel())
			}
		}
	}
	if n := len(got["sysobsd_syscalls_total"]); n != wantPerFamily*3 {
		t.Errorf("%s: %d calls series, want %d", scrape, n, wantPerFamily*3)
	}
	if n := len(got["sysobsd_syscall_errors_total"]); n != wantPerFamily {
		t.Errorf("%s: %d errors series, want %d", scrape, n, wantPerFamily)
	}
}

// The registry sorts each family by label values; the collector sends them
// in that order already, also when series come and go between scrapes.
func TestSeriesSentInTheRegistrysOrder(t *testing.T) {
	source := &fakeSource{snap: snapshotOf("nginx", "bash", "zsh", "cron", "apt")}
	c, _ := newTestCollector(t, source)
	assertSorted(t, "first scrape", collected(t, c), 5)

	// bash and zsh gone; new ones before, between and after the others.
	source.snap = snapshotOf("nginx", "cron", "apt", "aaa", "mmm", "zzz", "~other-looking")
	got := collected(t, c)
	assertSorted(t, "second scrape", got, 7)
	if first := got["sysobsd_syscalls_total"][0].GetLabel()[0].GetValue(); first != "aaa" {
		t.Errorf("first series %q, want aaa", first)
	}
	if a, b := len(c.series.calls.byKey), len(c.series.calls.order); a != 21 || b != 21 {
		t.Errorf("cache holds %d series (%d in order), want the last scrape's 21", a, b)
	}
	if n := len(c.series.errors.byKey); n != 7 {
		t.Errorf("error cache holds %d series, want 7", n)
	}
}

// A series' label pairs are built once in its life: later scrapes send the
// same pairs with the new value.
func TestSeriesLabelPairsAreBuiltOnce(t *testing.T) {
	source := &fakeSource{snap: snapshotOf("nginx")}
	c, _ := newTestCollector(t, source)
	first := collected(t, c)["sysobsd_syscalls_total"]
	source.snap = snapshotOf("other", "nginx") // nginx's value is now 2
	second := collected(t, c)["sysobsd_syscalls_total"]
	var nginx []*dto.Metric
	for _, m := range second {
		if m.GetLabel()[0].GetValue() == "nginx" {
			nginx = append(nginx, m)
		}
	}
	if len(first) != 3 || len(nginx) != 3 {
		t.Fatalf("nginx series: %d, then %d; want 3", len(first), len(nginx))
	}
	for i := range first {
		if first[i].GetLabel()[0] != nginx[i].GetLabel()[0] {
			t.Errorf("series %d: label pairs built again", i)
		}
		if first[i].GetCounter().GetValue() != 1 || nginx[i].GetCounter().GetValue() != 2 {
			t.Errorf("series %d: values %v then %v, want 1 then 2", i, first[i].GetCounter().GetValue(), nginx[i].GetCounter().GetValue())
		}
	}
}

// Calls of one syscall on two ABIs are one series; its value is their sum at
// every scrape, not added to the last scrape's.
func TestSeriesSumABIsAfreshEachScrape(t *testing.T) {
	snap := &tally.Snapshot{
		LabelSet: tally.LabelSet(tally.LabelComm),
		Calls: map[tally.SeriesKey]loader.Counts{
			seriesKey("app", nativeRead): {Calls: 3, NS: 30},
			seriesKey("app", compatRead): {Calls: 4, NS: 40},
		},
		Errors: map[tally.ErrorKey]uint64{
			errorKey("app", nativeRead, 11): 1,
			errorKey("app", compatRead, 11): 2,
		},
	}
	c, _ := newTestCollector(t, &fakeSource{snap: withSyscallNS(snap)})
	for scrape := range 2 {
		got := collected(t, c)
		if n := len(got["sysobsd_syscalls_total"]); n != 1 {
			t.Fatalf("scrape %d: %d read series, want 1", scrape, n)
		}
		if v := got["sysobsd_syscalls_total"][0].GetCounter().GetValue(); v != 7 {
			t.Errorf("scrape %d: calls %v, want 7", scrape, v)
		}
		if v := got["sysobsd_syscall_seconds_total"][0].GetCounter().GetValue(); v != 70e-9 {
			t.Errorf("scrape %d: seconds %v, want 7e-08", scrape, v)
		}
		if v := got["sysobsd_syscall_errors_total"][0].GetCounter().GetValue(); v != 3 {
			t.Errorf("scrape %d: errors %v, want 3", scrape, v)
		}
	}
}

// A series with an invalid label value is never sent, and logged once while
// it lasts, not at every scrape.
func TestInvalidSeriesLoggedOncePerLife(t *testing.T) {
	bad := snapshotOf("good", "bad\xff")
	source := &fakeSource{snap: bad}
	c, logs := newTestCollector(t, source)
	count := func() int { return logs.FilterMessage("scrape: build metric").Len() }
	for scrape := range 3 {
		got := collected(t, c)
		assertSorted(t, fmt.Sprint("scrape ", scrape), got, 1)
	}
	// Three calls series (read, write, futex) and one errors series.
	if n := count(); n != 4 {
		t.Errorf("logged %d times over three scrapes, want 4 (once per invalid series)", n)
	}
	source.snap = snapshotOf("good")
	collected(t, c)
	if n := len(c.series.calls.invalid) + len(c.series.errors.invalid); n != 0 {
		t.Errorf("%d invalid series kept after they were gone", n)
	}
	source.snap = bad
	collected(t, c)
	if n := count(); n != 8 {
		t.Errorf("logged %d times in all, want 8: the invalid series are new again", n)
	}
}

// A SIGHUP that changes the labels makes every series new.
func TestSeriesRelabelled(t *testing.T) {
	snap := snapshotOf("app")
	source := &fakeSource{snap: snap}
	c, _ := newTestCollector(t, source)
	collected(t, c)
	relabelled := snapshotOf()
	relabelled.LabelSet = tally.LabelSet(tally.LabelComm | tally.LabelPID)
	relabelled.Calls[tally.SeriesKey{Labels: tally.Labels{Comm: "app", PID: "42"}, Syscall: nativeRead}] = loader.Counts{Calls: 5}
	source.snap = relabelled
	got := collected(t, c)["sysobsd_syscalls_total"]
	if len(got) != 1 || len(got[0].GetLabel()) != 3 || got[0].GetLabel()[1].GetName() != "pid" || got[0].GetLabel()[1].GetValue() != "42" {
		t.Fatalf("relabelled series: %v", got)
	}
}

type lockedSource struct {
	mu   sync.Mutex
	snap *tally.Snapshot
}

func (s *lockedSource) Snapshot(context.Context) (*tally.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap, nil
}

// Scrapes at the same time (two Prometheus servers) see the same series;
// run with -race, it also checks that the shared label pairs are only read.
func TestConcurrentScrapesAgree(t *testing.T) {
	c, _ := newTestCollector(t, &lockedSource{snap: snapshotOf("a", "b", "c", "d")})
	want := exposition(t, c)
	var wg sync.WaitGroup
	results := make(chan string, 40)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reg := prometheus.NewRegistry()
			reg.MustRegister(c)
			for range 10 {
				families, err := reg.Gather()
				if err != nil {
					results <- err.Error()
					continue
				}
				results <- fmt.Sprint(len(families), families[0].GetMetric()[0].GetLabel())
			}
		}()
	}
	wg.Wait()
	close(results)
	first := ""
	for r := range results {
		if first == "" {
			first = r
		}
		if r != first {
			t.Errorf("scrapes disagree: %q and %q", first, r)
		}
	}
	if got := exposition(t, c); got != want {
		t.Errorf("exposition changed after concurrent scrapes:\n%s", lineDiff(want, got))
	}
}
