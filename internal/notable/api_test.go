package notable

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// recentEvents holds, oldest first: TIDs 1…5 name the events.
func recentEvents(now time.Time) (*Recent, []Event) {
	added := []Event{
		{Time: now.Add(-10 * time.Minute), PID: 100, TID: 1, Comm: "nginx", Syscall: "openat", Ret: -13, Errno: "EACCES",
			Args: [6]uint64{0xffffffffffffff9c, 0x7ffc0000}, Path: "/etc/x.conf", Duration: 12 * time.Microsecond, CgroupID: 7, NR: 257},
		{Time: now.Add(-8 * time.Minute), PID: 200, TID: 2, Comm: "postgres", Syscall: "fsync", Duration: 1500 * time.Millisecond, NR: 74},
		{Time: now.Add(-2 * time.Minute), PID: 100, TID: 3, Comm: "nginx", Syscall: "write", Ret: -28, Errno: "ENOSPC",
			Args: [6]uint64{7}, FDPath: "/var/log/nginx/access.log", NR: 1},
		{Time: now.Add(-1 * time.Minute), PID: 300, TID: 4, Comm: "app32", Syscall: "openat", Compat: true, Ret: -2, Errno: "ENOENT", Path: "abc...", NR: 295},
		{Time: now.Add(-30 * time.Second), PID: 100, TID: 5, Comm: "nginx", Syscall: "openat", Ret: -2, Errno: "ENOENT", Path: "/etc/y", NR: 257},
	}
	recent := NewRecent(10)
	for _, n := range added {
		recent.Add(n)
	}
	return recent, added
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestEventsHandlerFilters(t *testing.T) {
	recent, added := recentEvents(time.Now())
	srv := httptest.NewServer(Handler(recent))
	defer srv.Close()
	tests := []struct {
		query string
		want  []uint32 // TIDs, in order
	}{
		{"", []uint32{1, 2, 3, 4, 5}},
		{"?pid=100", []uint32{1, 3, 5}},
		{"?pid=999", nil},
		{"?comm=nginx", []uint32{1, 3, 5}},
		{"?comm=ngin", nil},
		{"?syscall=openat", []uint32{1, 4, 5}},
		{"?errno=ENOENT", []uint32{4, 5}},
		{"?since=5m", []uint32{3, 4, 5}},
		{"?since=45s", []uint32{5}},
		{"?limit=2", []uint32{4, 5}},
		{"?limit=0", []uint32{1, 2, 3, 4, 5}},
		{"?limit=50", []uint32{1, 2, 3, 4, 5}},
		{"?pid=100&limit=2", []uint32{3, 5}},
		{"?comm=nginx&syscall=openat&errno=EACCES", []uint32{1}},
		{"?pid=100&since=5m&errno=ENOSPC", []uint32{3}},
		{"?pid=200&comm=nginx", nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			resp, body := get(t, srv.URL+"/api/v1/events"+tt.query)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %s: %s", resp.Status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
				t.Errorf("Content-Type = %q", ct)
			}
			var got []uint32
			sc := bufio.NewScanner(strings.NewReader(string(body)))
			for sc.Scan() {
				var n Event
				if err := json.Unmarshal(sc.Bytes(), &n); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				want := added[n.TID-1]
				if !n.Time.Equal(want.Time) {
					t.Errorf("event %d: time %v, want %v", n.TID, n.Time, want.Time)
				}
				n.Time = want.Time
				if n != want {
					t.Errorf("event %d round trip:\n got %+v\nwant %+v", n.TID, n, want)
				}
				got = append(got, n.TID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("events %v, want %v", got, tt.want)
			}
		})
	}
}

// The JSON names are the API: scripts read them.
func TestEventsHandlerFieldNames(t *testing.T) {
	recent, _ := recentEvents(time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC))
	srv := httptest.NewServer(Handler(recent))
	defer srv.Close()
	_, body := get(t, srv.URL+"?limit=1&pid=100&errno=ENOSPC")
	want := `{"time":"2025-01-02T03:02:05.000006Z","pid":100,"tid":3,"comm":"nginx","syscall":"write","args":[7,0,0,0,0,0],` +
		`"ret":-28,"errno":"ENOSPC","duration_ns":0,"fd_path":"/var/log/nginx/access.log","cgroup_id":0,"nr":1}` + "\n"
	if string(body) != want {
		t.Errorf("body:\n%s\nwant:\n%s", body, want)
	}
}

func TestEventsHandlerRejectsBadParameters(t *testing.T) {
	recent, _ := recentEvents(time.Now())
	srv := httptest.NewServer(Handler(recent))
	defer srv.Close()
	tests := []struct {
		query, want string
	}{
		{"pid=abc", "pid: not a process id: abc"},
		{"pid=-1", "pid: not a process id: -1"},
		{"pid=4294967296", "pid: not a process id: 4294967296"},
		{"limit=ten", "limit: not a count: ten"},
		{"limit=-1", "limit: not a count: -1"},
		{"since=5", "since: not a duration such as 5m: 5"},
		{"since=yesterday", "since: not a duration such as 5m: yesterday"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			resp, body := get(t, srv.URL+"?"+tt.query)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %s, want 400", resp.Status)
			}
			if got := strings.TrimSpace(string(body)); got != tt.want {
				t.Errorf("body %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEventsHandlerEmpty(t *testing.T) {
	srv := httptest.NewServer(Handler(NewRecent(4)))
	defer srv.Close()
	resp, body := get(t, srv.URL)
	if resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Errorf("status %s, body %q; want 200 and nothing", resp.Status, body)
	}
}
