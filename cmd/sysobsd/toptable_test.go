package main

import (
	"cmp"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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

func topPrev() topSample {
	return topSample{
		"nginx":    totals(100, 10, map[string]float64{"read": 0.25, "openat": 2}),
		"sshd":     totals(10, 0, map[string]float64{}),
		"idle":     totals(40, 4, map[string]float64{"futex": 1}),
		"finished": totals(5, 5, map[string]float64{"exit_group": 0.5}),
	}
}

func topCur() topSample {
	return topSample{
		// openat has more time in total, read more in these two seconds.
		"nginx":    totals(300, 14, map[string]float64{"read": 1, "openat": 2.25}),
		"sshd":     totals(30, 20, map[string]float64{"write": 0.125}),
		"idle":     totals(40, 4, map[string]float64{"futex": 1}),
		"postgres": totals(500, 0, map[string]float64{"futex": 0.5}), // new since prev
	}
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
			got := topRows(topPrev(), topCur(), 2*time.Second, tt.sortBy)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("topRows:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestTopRowsScaleWithElapsed(t *testing.T) {
	prev := topSample{"a": totals(0, 0, map[string]float64{"read": 0})}
	cur := topSample{"a": totals(3, 1, map[string]float64{"read": 0.125})}
	got := topRows(prev, cur, 250*time.Millisecond, "time")
	want := []topRow{{comm: "a", calls: 12, errors: 4, seconds: 0.5, topSyscall: "read"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("topRows = %+v, want %+v", got, want)
	}
}

func TestTopRowsNoActivity(t *testing.T) {
	if got := topRows(topCur(), topCur(), time.Second, "time"); len(got) != 0 {
		t.Errorf("unchanged totals gave rows %+v", got)
	}
	if got := topRows(topSample{}, topSample{}, time.Second, "time"); len(got) != 0 {
		t.Errorf("empty samples gave rows %+v", got)
	}
	// A row with calls but no time spent names no syscall.
	got := topRows(topSample{}, topSample{"a": totals(2, 0, map[string]float64{"read": 0})}, time.Second, "time")
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

func TestRenderTop(t *testing.T) {
	rows := []topRow{
		{comm: "nginx", calls: 100, errors: 2, seconds: 0.5, topSyscall: "read"},
		{comm: "postgres", calls: 12345, errors: 0, seconds: 0.0703125, topSyscall: "futex"},
		{comm: "sshd", calls: 10, errors: 10, seconds: 1.25, topSyscall: "write"},
	}
	const header = "sysobsd top — sorted by calls (t: time, c: calls, e: errors, q: quit)\n\n" +
		"COMM              SYSCALL %      CALLS/s   ERRORS/s  TOP SYSCALL\n"
	tests := []struct {
		name  string
		limit int
		clear bool
		want  string
	}{
		{"all rows", 25, false, header +
			"nginx                 50.0%          100          2  read\n" +
			"postgres               7.0%        12345          0  futex\n" +
			"sshd                 125.0%           10         10  write\n"},
		{"limit", 2, false, header +
			"nginx                 50.0%          100          2  read\n" +
			"postgres               7.0%        12345          0  futex\n"},
		{"clear screen first", 1, true, "\x1b[H\x1b[2J" + header +
			"nginx                 50.0%          100          2  read\n"},
		{"no rows", 25, false, header},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			r := rows
			if tt.name == "no rows" {
				r = nil
			}
			renderTop(&b, r, "calls", tt.limit, tt.clear)
			if b.String() != tt.want {
				t.Errorf("renderTop:\n%q\nwant:\n%q", b.String(), tt.want)
			}
		})
	}
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
	want := topSample{
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
			if !reflect.DeepEqual(got, want) {
				t.Errorf("sample:\n got %s\nwant %s", describeSample(got), describeSample(want))
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
	got := topRows(prev, cur, time.Second, "time")
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
				t.Fatalf("no error; sample %s", describeSample(s))
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

func describeSample(s topSample) string {
	var b strings.Builder
	for comm, t := range s {
		fmt.Fprintf(&b, "%s:%+v ", comm, *t)
	}
	return b.String()
}
