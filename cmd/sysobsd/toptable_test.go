package main

import (
	"cmp"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sysobsd/sysobsd/internal/syscalls"
)

// totals builds one process name's totals; the values are exact in binary
// so that rates compare exactly.
func totals(calls, errors float64, bySyscall map[string]float64) *topTotals {
	t := &topTotals{calls: calls, errors: errors, bySyscall: bySyscall}
	for _, s := range bySyscall {
		t.seconds += s
	}
	return t
}

// sampleAt is a sample of completed calls taken at seconds on the
// monotonic clock.
func sampleAt(seconds float64, procs map[string]*topTotals) topSample {
	return topSample{at: time.Duration(seconds * float64(time.Second)), procs: procs, busy: busyCompleted}
}

func topPrev() topSample {
	return sampleAt(10, map[string]*topTotals{
		"nginx":    totals(100, 10, map[string]float64{"read": 0.25, "openat": 2}),
		"sshd":     totals(10, 0, map[string]float64{}),
		"idle":     totals(40, 4, map[string]float64{"futex": 1}),
		"finished": totals(5, 5, map[string]float64{"exit_group": 0.5}),
	})
}

func topCur() topSample {
	return sampleAt(12, map[string]*topTotals{
		// openat has more time in total, read more in these two seconds.
		"nginx":    totals(300, 14, map[string]float64{"read": 1, "openat": 2.25}),
		"sshd":     totals(30, 20, map[string]float64{"write": 0.125}),
		"idle":     totals(40, 4, map[string]float64{"futex": 1}),
		"postgres": totals(500, 0, map[string]float64{"futex": 0.5}), // new since prev
	})
}

func TestTopRowsRatesOverTheInterval(t *testing.T) {
	nginx := topRow{comm: "nginx", calls: 100, errors: 2, seconds: 0.5, topSyscall: "read"}
	postgres := topRow{comm: "postgres", calls: 250, errors: 0, seconds: 0.25, topSyscall: "futex"}
	sshd := topRow{comm: "sshd", calls: 10, errors: 10, seconds: 0.0625, topSyscall: "write"}
	tests := []struct {
		sortBy string
		want   []topRow
	}{
		{"time", []topRow{nginx, postgres, sshd}},
		{"calls", []topRow{postgres, nginx, sshd}},
		{"errors", []topRow{sshd, nginx, postgres}},
		{"", []topRow{nginx, postgres, sshd}}, // time is the default
	}
	for _, tt := range tests {
		t.Run(cmp.Or(tt.sortBy, "default"), func(t *testing.T) {
			got := topRows(topPrev(), topCur(), tt.sortBy)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("topRows:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestTopRowsScaleWithElapsed(t *testing.T) {
	prev := sampleAt(1, map[string]*topTotals{"a": totals(0, 0, map[string]float64{"read": 0})})
	cur := sampleAt(1.25, map[string]*topTotals{"a": totals(3, 1, map[string]float64{"read": 0.125})})
	got := topRows(prev, cur, "time")
	want := []topRow{{comm: "a", calls: 12, errors: 4, seconds: 0.5, topSyscall: "read"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("topRows = %+v, want %+v", got, want)
	}
}

func TestTopRowsNoActivity(t *testing.T) {
	later := topCur()
	later.at += time.Second
	if got := topRows(topCur(), later, "time"); len(got) != 0 {
		t.Errorf("unchanged totals gave rows %+v", got)
	}
	if got := topRows(sampleAt(1, nil), sampleAt(2, nil), "time"); len(got) != 0 {
		t.Errorf("empty samples gave rows %+v", got)
	}
	if got := topRows(topPrev(), topPrev(), "time"); len(got) != 0 {
		t.Errorf("no time between the samples gave rows %+v", got)
	}
	// A row with calls but no time spent names no syscall.
	got := topRows(sampleAt(1, nil), sampleAt(2, map[string]*topTotals{"a": totals(2, 0, map[string]float64{"read": 0})}), "time")
	if want := []topRow{{comm: "a", calls: 2}}; !reflect.DeepEqual(got, want) {
		t.Errorf("topRows = %+v, want %+v", got, want)
	}
}

func TestSortRows(t *testing.T) {
	rows := func() []topRow {
		return []topRow{
			{comm: "b", calls: 5, errors: 1, seconds: 0.5},
			{comm: "c", calls: 9, errors: 0, seconds: 0.5},
			{comm: "a", calls: 5, errors: 3, seconds: 0.25},
			{comm: "d", calls: 1, errors: 3, seconds: 0.75},
		}
	}
	tests := []struct {
		sortBy string
		want   []string
	}{
		{"time", []string{"d", "b", "c", "a"}}, // b and c tie: by name
		{"calls", []string{"c", "a", "b", "d"}},
		{"errors", []string{"a", "d", "b", "c"}},
		{"bogus", []string{"d", "b", "c", "a"}},
	}
	for _, tt := range tests {
		r := rows()
		sortRows(r, tt.sortBy)
		var got []string
		for _, row := range r {
			got = append(got, row.comm)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("sortRows(%s) = %v, want %v", tt.sortBy, got, tt.want)
		}
	}
}

func TestRenderPlain(t *testing.T) {
	rows := []topRow{
		{comm: "nginx", calls: 100, errors: 2, seconds: 0.5, topSyscall: "read"},
		{comm: "postgres", calls: 12345, errors: 0, seconds: 0.0703125, topSyscall: "futex"},
		{comm: "sshd", calls: 10, errors: 10, seconds: 1.25, topSyscall: "write"},
	}
	header := func(busy busyKind) string {
		return "sysobsd top — sorted by calls (t: time, c: calls, e: errors, q: quit)\n" +
			percentMeaning[busy] + "\n" +
			"COMM              SYSCALL %      CALLS/s   ERRORS/s  TOP SYSCALL\n"
	}
	tests := []struct {
		name  string
		rows  []topRow
		busy  busyKind
		limit int
		want  string
	}{
		{"all rows", rows, busyInFlight, 25, header(busyInFlight) +
			"nginx                 50.0%          100          2  read\n" +
			"postgres               7.0%        12345          0  futex\n" +
			"sshd                 125.0%           10         10  write\n"},
		{"limit", rows, busyInFlight, 2, header(busyInFlight) +
			"nginx                 50.0%          100          2  read\n" +
			"postgres               7.0%        12345          0  futex\n"},
		{"no rows", nil, busyCompleted, 25, header(busyCompleted)},
		{"latency not measured: no % at all", rows[:1], busyUnmeasured, 25, header(busyUnmeasured) +
			"nginx                     -          100          2  read\n"},
		{"a name a terminal would act on", []topRow{{comm: "x\x1b[2J\ty", calls: 1}}, busyInFlight, 25, header(busyInFlight) +
			"x?[2J?y                0.0%            1          0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			renderPlain(&b, topFrame{rows: tt.rows, sortBy: "calls", busy: tt.busy}, tt.limit)
			if b.String() != tt.want {
				t.Errorf("renderPlain:\n%q\nwant:\n%q", b.String(), tt.want)
			}
			if strings.Contains(b.String(), "\x1b") || strings.Contains(b.String(), "\r") {
				t.Errorf("plain output has escape codes or carriage returns: %q", b.String())
			}
		})
	}
}

// screenLines splits what renderScreen drew into the terminal's lines,
// checking its escape codes: home first, each line cleared, lines ended by
// "\r\n", what is below cleared when the frame does not fill the screen.
func screenLines(t *testing.T, drawn string, height int) []string {
	t.Helper()
	rest, ok := strings.CutPrefix(drawn, "\x1b[H")
	if !ok {
		t.Fatalf("frame does not start at home: %q", drawn)
	}
	rest, below := strings.CutSuffix(rest, "\r\n\x1b[J")
	lines := strings.Split(rest, "\r\n")
	if below != (len(lines) < height) {
		t.Errorf("%d lines of %d: cleared below %v", len(lines), height, below)
	}
	for i, l := range lines {
		text, ok := strings.CutPrefix(l, "\x1b[2K")
		if !ok {
			t.Errorf("line %d not cleared first: %q", i, l)
		}
		if strings.ContainsAny(text, "\x1b\r\n") {
			t.Errorf("line %d: %q", i, text)
		}
		lines[i] = text
	}
	return lines
}

func TestRenderScreenFitsTheTerminal(t *testing.T) {
	var rows []topRow
	for i := range 40 {
		rows = append(rows, topRow{comm: fmt.Sprintf("proc%02d", i), calls: float64(i), seconds: 1, topSyscall: "epoll_wait"})
	}
	rows[0].comm = "数据库进程" // ten columns in five characters
	frame := topFrame{rows: rows, sortBy: "time", busy: busyInFlight}
	tests := []struct {
		width, height int
		rows          int
	}{
		{120, 30, 27},
		{80, 20, 17},
		{40, 10, 7},
		{120, 50, 40}, // every row, with room below
		{20, 2, 0},    // not even the header fits
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%dx%d", tt.width, tt.height), func(t *testing.T) {
			var b strings.Builder
			renderScreen(&b, frame, tt.width, tt.height)
			lines := screenLines(t, b.String(), tt.height)
			if len(lines) > tt.height {
				t.Errorf("%d lines on a terminal of %d", len(lines), tt.height)
			}
			if got := len(lines) - topHeaderLines; max(got, 0) != tt.rows {
				t.Errorf("%d rows, want %d", got, tt.rows)
			}
			for i, l := range lines {
				if w := columns(l); w > tt.width {
					t.Errorf("line %d is %d columns wide on a terminal of %d: %q", i, w, tt.width, l)
				}
			}
			if tt.height > 0 && !strings.HasPrefix(lines[0], "sysobsd top") {
				t.Errorf("first line %q", lines[0])
			}
		})
	}
}

func TestTruncateColumns(t *testing.T) {
	tests := []struct {
		s     string
		width int
		want  string
	}{
		{"abcdef", 4, "abcd"},
		{"abc", 4, "abc"},
		{"top — x", 5, "top —"}, // the dash is one column, three bytes
		{"数据库", 5, "数据"},        // two columns each: the third would make six
		{"数据库", 6, "数据库"},
		{"abc", 0, ""},
	}
	for _, tt := range tests {
		if got := truncateColumns(tt.s, tt.width); got != tt.want {
			t.Errorf("truncateColumns(%q, %d) = %q, want %q", tt.s, tt.width, got, tt.want)
		}
	}
}

// columns is how wide s is on a terminal.
func columns(s string) int {
	n := 0
	for _, r := range s {
		n++
		if r >= 0x2E80 && r <= 0x9FFF { // the CJK the tests use
			n++
		}
	}
	return n
}

// exposition is what a daemon labelled by comm and unit serves: series of
// one comm in several units sum into that comm.
const exposition = `# HELP sysobsd_syscalls_total System calls made.
# TYPE sysobsd_syscalls_total counter
sysobsd_syscalls_total{comm="nginx",syscall="read",unit="nginx.service"} 100
sysobsd_syscalls_total{comm="nginx",syscall="openat",unit="nginx.service"} 20
sysobsd_syscalls_total{comm="nginx",syscall="read",unit="other.service"} 5
sysobsd_syscalls_total{comm="sshd",syscall="write",unit="ssh.service"} 7
# HELP sysobsd_syscall_errors_total System calls that failed.
# TYPE sysobsd_syscall_errors_total counter
sysobsd_syscall_errors_total{comm="nginx",errno="EACCES",syscall="openat",unit="nginx.service"} 3
sysobsd_syscall_errors_total{comm="nginx",errno="ENOENT",syscall="openat",unit="nginx.service"} 4
# HELP sysobsd_syscall_seconds_total Time in system calls.
# TYPE sysobsd_syscall_seconds_total counter
sysobsd_syscall_seconds_total{comm="nginx",syscall="read",unit="nginx.service"} 0.25
sysobsd_syscall_seconds_total{comm="nginx",syscall="read",unit="other.service"} 0.5
sysobsd_syscall_seconds_total{comm="nginx",syscall="openat",unit="nginx.service"} 0.125
sysobsd_syscall_seconds_total{comm="sshd",syscall="write",unit="ssh.service"} 1
# HELP sysobsd_syscall_duration_seconds Latency of system calls, host-wide.
# TYPE sysobsd_syscall_duration_seconds histogram
sysobsd_syscall_duration_seconds_bucket{syscall="read",le="+Inf"} 105
sysobsd_syscall_duration_seconds_sum{syscall="read"} 0.75
sysobsd_syscall_duration_seconds_count{syscall="read"} 105
# HELP sysobsd_drops_total Losses in the kernel by reason.
# TYPE sysobsd_drops_total counter
sysobsd_drops_total{reason="ringbuf_full"} 99
# HELP sysobsd_processes_tracked Running processes with counts in the kernel maps.
# TYPE sysobsd_processes_tracked gauge
sysobsd_processes_tracked 3
`

func metricsServer(t *testing.T, status int, body func() string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.WriteHeader(status)
		w.Write([]byte(body()))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSampleFromDaemonSumsByComm(t *testing.T) {
	srv := metricsServer(t, http.StatusOK, func() string { return exposition })
	want := map[string]*topTotals{
		"nginx": {calls: 125, errors: 7, seconds: 0.875, bySyscall: map[string]float64{"read": 0.75, "openat": 0.125}},
		"sshd":  {calls: 7, errors: 0, seconds: 1, bySyscall: map[string]float64{"write": 1}},
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, addr := range []string{srv.URL, srv.URL + "/", host, host + "/"} {
		t.Run(addr, func(t *testing.T) {
			got, err := sampleFromDaemon(addr)()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.procs, want) {
				t.Errorf("sample:\n got %s\nwant %s", describeSample(got.procs), describeSample(want))
			}
			if got.busy != busyCompleted {
				t.Errorf("busy = %v, want busyCompleted: /metrics has no calls in flight", got.busy)
			}
		})
	}
}

// Two scrapes a second apart make the rows top shows.
func TestSampleFromDaemonFeedsTopRows(t *testing.T) {
	var scrapes atomic.Int32
	srv := metricsServer(t, http.StatusOK, func() string {
		if scrapes.Add(1) == 1 {
			return exposition
		}
		return strings.NewReplacer(
			`syscall="read",unit="nginx.service"} 100`, `syscall="read",unit="nginx.service"} 150`,
			`syscall="read",unit="nginx.service"} 0.25`, `syscall="read",unit="nginx.service"} 0.5`,
			`errno="EACCES",syscall="openat",unit="nginx.service"} 3`, `errno="EACCES",syscall="openat",unit="nginx.service"} 5`,
		).Replace(exposition)
	})
	sample := sampleFromDaemon(srv.URL)
	prev, err := sample()
	if err != nil {
		t.Fatal(err)
	}
	cur, err := sample()
	if err != nil {
		t.Fatal(err)
	}
	cur.at = prev.at + time.Second
	got := topRows(prev, cur, "time")
	want := []topRow{{comm: "nginx", calls: 50, errors: 2, seconds: 0.25, topSyscall: "read"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("topRows = %+v, want %+v", got, want)
	}
}

func TestSampleFromDaemonErrorsNameTheURL(t *testing.T) {
	failing := metricsServer(t, http.StatusServiceUnavailable, func() string { return "busy\n" })
	garbled := metricsServer(t, http.StatusOK, func() string { return "sysobsd_syscalls_total{comm=\"x\" 1\n" })
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // nothing listens there now
	tests := []struct {
		name, addr string
		want       []string
	}{
		{"non-200", failing.URL, []string{failing.URL + "/metrics", "503 Service Unavailable"}},
		{"not the exposition format", garbled.URL, []string{"parse " + garbled.URL + "/metrics"}},
		{"unreachable", closed.URL, []string{"get " + closed.URL + "/metrics", "is sysobsd serving there?", "connection refused"}},
		{"password never shown", strings.Replace(failing.URL, "http://", "http://prom:s3cret@", 1), []string{"prom:xxxxx@", "503"}},
		{"password never shown, unreachable", strings.Replace(closed.URL, "http://", "http://prom:s3cret@", 1), []string{"prom:xxxxx@", "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sampleFromDaemon(tt.addr)()
			if err == nil {
				t.Fatalf("no error; sample %s", describeSample(s.procs))
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func describeSample(s map[string]*topTotals) string {
	var b strings.Builder
	for comm, t := range s {
		fmt.Fprintf(&b, "%s:%+v ", comm, *t)
	}
	return b.String()
}

// busyAt is a sample taken at seconds: completed calls' time by name, and
// the calls in flight then (entry times in seconds).
func busyAt(seconds float64, completed map[string]float64, inFlight map[string][]float64) topSample {
	s := newTopSample(busyInFlight)
	s.at = time.Duration(seconds * float64(time.Second))
	for comm, secs := range completed {
		t := s.add(comm)
		t.calls, t.seconds, t.bySyscall["wait4"] = 1, secs, secs
	}
	var calls []callInFlight
	for comm, starts := range inFlight {
		for _, start := range starts {
			calls = append(calls, callInFlight{comm: comm, syscall: "wait4", startedNS: uint64(start * 1e9)})
		}
	}
	s.addInFlight(calls)
	return s
}

// percents is each interval's % for comm; -1 where it has no row.
func percents(samples []topSample, comm string) []float64 {
	var out []float64
	for i := 1; i < len(samples); i++ {
		pct := -1.0
		for _, r := range topRows(samples[i-1], samples[i], "time") {
			if r.comm == comm {
				pct = 100 * r.seconds
			}
		}
		out = append(out, pct)
	}
	return out
}

// % is the time inside calls in each interval per second of it, summed
// over a process's threads: a call in flight is counted interval by
// interval, not all at once when it returns.
func TestPercentCountsCallsInFlightPerInterval(t *testing.T) {
	none := map[string]float64{}
	tests := []struct {
		name    string
		comm    string
		samples []topSample
		want    []float64
	}{
		{"a call in flight across three intervals reads 100% each", "sh", []topSample{
			busyAt(1, none, map[string][]float64{"sh": {0.5}}),
			busyAt(2, none, map[string][]float64{"sh": {0.5}}),
			busyAt(3, none, map[string][]float64{"sh": {0.5}}),
			busyAt(4, none, map[string][]float64{"sh": {0.5}}),
		}, []float64{100, 100, 100}},
		{"a call that returns mid-interval counts its part of the interval", "sh", []topSample{
			busyAt(1, none, map[string][]float64{"sh": {0.5}}),
			busyAt(2, none, map[string][]float64{"sh": {0.5}}),
			busyAt(3, map[string]float64{"sh": 2}, nil), // returned at 2.5
			busyAt(4, map[string]float64{"sh": 2}, nil), // idle since
		}, []float64{100, 50, -1}},
		{"a call returning and the next one blocking fill the interval", "sh", []topSample{
			busyAt(1, none, map[string][]float64{"sh": {0.5}}),
			busyAt(2, map[string]float64{"sh": 1.25}, map[string][]float64{"sh": {1.75}}), // 0.5–1.75, then from 1.75
		}, []float64{100}},
		{"two blocked threads read 200%", "java", []topSample{
			busyAt(1, none, map[string][]float64{"java": {0.25, 0.5}}),
			busyAt(2, none, map[string][]float64{"java": {0.25, 0.5}}),
			busyAt(3, none, map[string][]float64{"java": {0.25, 0.5}}),
		}, []float64{200, 200}},
		{"a call entered after the sample adds nothing yet", "sh", []topSample{
			busyAt(1, none, map[string][]float64{"sh": {1.5}}),
			busyAt(2, none, map[string][]float64{"sh": {1.5}}),
		}, []float64{50}},
		{"a blocked thread in an interval of 250 ms", "sh", []topSample{
			busyAt(1, none, map[string][]float64{"sh": {0.5}}),
			busyAt(1.25, none, map[string][]float64{"sh": {0.5}}),
		}, []float64{100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percents(tt.samples, tt.comm); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%% per interval = %v, want %v", got, tt.want)
			}
		})
	}
}

// What a daemon's /metrics allows: completed calls only, a long call all at
// once when it returns (the header says so), and with latency off no % at
// all rather than a wrong 0%.
func TestPercentFromADaemon(t *testing.T) {
	completedOnly := []topSample{
		sampleAt(1, map[string]*topTotals{"sh": totals(1, 0, map[string]float64{"wait4": 0})}),
		sampleAt(2, map[string]*topTotals{"sh": totals(2, 0, map[string]float64{"wait4": 3})}), // a 3 s wait4 returned
	}
	if got := percents(completedOnly, "sh"); !reflect.DeepEqual(got, []float64{300}) {
		t.Errorf("completed calls only: %% = %v, want [300]", got)
	}

	withoutLatency := strings.NewReplacer(
		"sysobsd_syscall_duration_seconds", "other_histogram",
		`unit="nginx.service"} 0.25`, `unit="nginx.service"} 0`,
	).Replace(exposition)
	srv := metricsServer(t, http.StatusOK, func() string { return withoutLatency })
	s, err := sampleFromDaemon(srv.URL)()
	if err != nil {
		t.Fatal(err)
	}
	if s.busy != busyUnmeasured {
		t.Errorf("no latency histogram: busy = %v, want busyUnmeasured", s.busy)
	}
	var b strings.Builder
	renderPlain(&b, topFrame{rows: []topRow{{comm: "nginx", calls: 1}}, sortBy: "time", busy: s.busy}, 25)
	if !strings.Contains(b.String(), "not measured") || strings.Contains(b.String(), "0.0%") {
		t.Errorf("latency off shows:\n%s", b.String())
	}

	empty := metricsServer(t, http.StatusOK, func() string { return "# nothing counted yet\n" })
	if s, err := sampleFromDaemon(empty.URL)(); err != nil || s.busy != busyCompleted {
		t.Errorf("no calls yet: busy %v, err %v; want busyCompleted (nothing says latency is off)", s.busy, err)
	}
}

// fakeClock is the start_slots a test sets: tid → entry time.
type fakeClock map[uint32]uint64

func (c fakeClock) CallStartedAt(tid uint32) (uint64, bool, error) {
	ns, ok := c[tid]
	return ns, ok, nil
}

func TestLongCallReturnedDuringASample(t *testing.T) {
	a, b := procThread{1, 1}, procThread{1, 2}
	ms := func(n float64) uint64 { return uint64(n * 1e6) }
	at := time.Duration(ms(1000))
	tests := []struct {
		name          string
		first, second map[procThread]uint64
		want          bool
	}{
		{"still in the same call", map[procThread]uint64{a: ms(100)}, map[procThread]uint64{a: ms(100)}, false},
		{"a long call returned", map[procThread]uint64{a: ms(100)}, map[procThread]uint64{}, true},
		{"a long call returned and another began", map[procThread]uint64{a: ms(100)}, map[procThread]uint64{a: ms(1001)}, true},
		{"a short call returned: its error is under longCall", map[procThread]uint64{a: ms(995)}, map[procThread]uint64{}, false},
		{"a call began", map[procThread]uint64{}, map[procThread]uint64{b: ms(1001)}, false},
	}
	for _, tt := range tests {
		if got := longCallReturned(tt.first, tt.second, at); got != tt.want {
			t.Errorf("%s: longCallReturned = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// The threads of every process but top's own, and for those in a call the
// process's name and the syscall /proc says they are in.
func TestCallsInFlightNamedFromProc(t *testing.T) {
	root := t.TempDir()
	write := func(path, content string) {
		t.Helper()
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10/comm", "bash\n")
	write("10/task/10/syscall", "61 0xffffffff 0x7ffc 0xa 0x0 0x0 0x0 0x7ffc 0x7f00\n") // wait4
	write("20/comm", "java\n")
	write("20/task/20/syscall", "202 0x1 0x2\n") // futex
	write("20/task/21/syscall", "running\n")
	write("20/task/22/syscall", "0 0x3\n")
	write("30/comm", "sysobsd\n") // top itself
	write("30/task/30/syscall", "7 0x0\n")
	write("self/comm", "not a process\n")
	write("40/comm", "gone\n") // exited: no task directory
	threads, err := hostThreads(root, 30)
	if err != nil {
		t.Fatal(err)
	}
	want := []procThread{{10, 10}, {20, 20}, {20, 21}, {20, 22}}
	if !reflect.DeepEqual(threads, want) {
		t.Fatalf("hostThreads = %v, want %v", threads, want)
	}
	clock := fakeClock{10: 5e8, 20: 7e8, 21: 9e8} // 22 between calls
	started, err := callsInFlight(clock, threads)
	if err != nil {
		t.Fatal(err)
	}
	amd64, err := syscalls.ForArch("amd64")
	if err != nil {
		t.Fatal(err)
	}
	calls := describeCalls(root, amd64, threads, started)
	slices.SortFunc(calls, func(a, b callInFlight) int { return cmp.Compare(a.startedNS, b.startedNS) })
	wantCalls := []callInFlight{
		{comm: "bash", syscall: "wait4", startedNS: 5e8},
		{comm: "java", syscall: "futex", startedNS: 7e8},
		{comm: "java", syscall: "", startedNS: 9e8}, // /proc said running: a name not known
	}
	if !reflect.DeepEqual(calls, wantCalls) {
		t.Errorf("describeCalls = %+v, want %+v", calls, wantCalls)
	}

	s := newTopSample(busyInFlight)
	s.at = time.Second
	s.addInFlight(calls)
	if got := s.procs["java"].seconds; got != 0.4 {
		t.Errorf("java's two threads: %v s in calls, want 0.3 + 0.1", got)
	}
	if got := s.procs["bash"].bySyscall["wait4"]; got != 0.5 {
		t.Errorf("bash in wait4 for %v s, want 0.5", got)
	}
}

func TestPercentMeaningFitsEightyColumns(t *testing.T) {
	for busy, line := range percentMeaning {
		if n := len([]rune(line)); n > 80 {
			t.Errorf("%d: %q is %d columns", busy, line, n)
		}
	}
}

// top shows the calls in flight longest under its rows, oldest first, when
// the screen has room for them and a few rows; otherwise rows come first.
func TestTopShowsTheCallsInFlightLongest(t *testing.T) {
	s := newTopSample(busyInFlight)
	s.at = 100 * time.Second
	calls := []callInFlight{
		{comm: "nginx", syscall: "epoll_wait", startedNS: uint64(99 * time.Second)},
		{comm: "backup", syscall: "fsync", startedNS: uint64(10 * time.Second)},
		{comm: "fresh", syscall: "read", startedNS: uint64(99_900 * time.Millisecond)}, // 0.1 s: not long
		{comm: "tar", syscall: "", startedNS: uint64(50 * time.Second)},
		{comm: "cp", syscall: "write", startedNS: uint64(90 * time.Second)},
	}
	s.longest = longestInFlight(calls, s.at)
	f := topFrame{sortBy: "time", busy: busyInFlight, stuck: stuckLines(s)}
	for i := range 5 {
		f.rows = append(f.rows, topRow{comm: fmt.Sprintf("p%d", i), topSyscall: "read"})
	}
	want := []string{
		"INSIDE A CALL LONGEST (sysobsd ps shows every thread):",
		"  backup in fsync for 90.0 s",
		"  tar in ? for 50.0 s",
		"  cp in write for 10.0 s",
	}
	lines := f.lines(20)
	if got := lines[len(lines)-4:]; !slices.Equal(got, want) {
		t.Errorf("last lines = %q, want %q", got, want)
	}
	if n := len(f.lines(20)) - topHeaderLines; n != 5+4 {
		t.Errorf("%d lines under the header with room for 20, want the 5 rows and 4 about the calls", n)
	}
	if got := f.lines(7); len(got) != topHeaderLines+7 || got[len(got)-1] != want[3] {
		t.Errorf("room for 7: %q; want 3 rows and the 4 lines about the calls", got)
	}
	if got := f.lines(5); len(got) != topHeaderLines+5 || slices.Contains(got, want[0]) {
		t.Errorf("room for 5: %q; want the 5 rows only", got)
	}
}
