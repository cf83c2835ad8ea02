package notable

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Handler serves the last notable events as JSON lines, oldest first.
// Query parameters narrow them: pid, comm, syscall, errno, since (a
// duration: events newer than that), limit (the newest n).
func Handler(recent *Recent) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var pid uint64
		if v := q.Get("pid"); v != "" {
			var err error
			if pid, err = strconv.ParseUint(v, 10, 32); err != nil {
				http.Error(w, "pid: not a process id: "+v, http.StatusBadRequest)
				return
			}
		}
		limit := 0
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				http.Error(w, "limit: not a count: "+v, http.StatusBadRequest)
				return
			}
			limit = n
		}
		var since time.Time
		if v := q.Get("since"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				http.Error(w, "since: not a duration such as 5m: "+v, http.StatusBadRequest)
				return
			}
			since = time.Now().Add(-d)
		}
		comm, syscall, errno := q.Get("comm"), q.Get("syscall"), q.Get("errno")
		match := func(n Event) bool {
			return (pid == 0 || uint64(n.PID) == pid) && (comm == "" || n.Comm == comm) &&
				(syscall == "" || n.Syscall == syscall) && (errno == "" || n.Errno == errno) &&
				(since.IsZero() || n.Time.After(since))
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, n := range recent.Query(match, limit) {
			if err := enc.Encode(n); err != nil {
				return
			}
		}
	})
}
