// Package inflight serves, and reads back, the threads inside a syscall
// now: the daemon's /api/v1/in_flight (what the in_flight iterator reports,
// named) for `sysobsd ps`. No argument or path crosses HTTP: ps reads those
// on the host, from /proc, as the user who runs it.
package inflight

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/syscalls"
)

// Thread is one thread inside a syscall.
type Thread struct {
	PID     uint32  `json:"pid"`
	TID     uint32  `json:"tid"`
	Comm    string  `json:"comm"` // the thread's name
	Syscall string  `json:"syscall"`
	NR      uint16  `json:"nr"`
	Compat  bool    `json:"compat,omitempty"` // a 32-bit task
	State   string  `json:"state"`            // running, sleeping, uninterruptible, stopped
	Seconds float64 `json:"seconds"`          // inside the call so far
}

// Source reports the threads inside a call (loader.Maps.ReadInFlight).
type Source func(fn func(loader.InFlightRecord)) error

// Threads reads src once and names each thread's call; now is
// CLOCK_MONOTONIC in ns. Oldest first.
func Threads(src Source, names *syscalls.Table, now uint64) ([]Thread, error) {
	var out []Thread
	err := src(func(r loader.InFlightRecord) {
		age := 0.0
		if now > r.StartNs {
			age = float64(now-r.StartNs) / 1e9
		}
		out = append(out, Thread{
			PID: r.Tgid, TID: r.Tid, Comm: loader.CString(r.Comm[:]),
			Syscall: names.Name(syscalls.ABI(r.Abi), uint32(r.Nr)), NR: r.Nr, Compat: r.Abi == uint16(syscalls.Compat),
			State: loader.ThreadStateName(r.State), Seconds: age,
		})
	})
	slices.SortFunc(out, func(a, b Thread) int {
		switch {
		case a.Seconds > b.Seconds:
			return -1
		case a.Seconds < b.Seconds:
			return 1
		}
		return int(a.TID) - int(b.TID)
	})
	return out, err
}

// Handler serves the threads inside a call now as JSON lines, oldest
// first; 404 where the programs cannot report them.
func Handler(src Source, names *syscalls.Table, now func() uint64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		threads, err := Threads(src, names, now())
		if errors.Is(err, loader.ErrNoInFlight) {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, t := range threads {
			if err := enc.Encode(t); err != nil {
				return
			}
		}
	})
}

// Decode reads what Handler wrote.
func Decode(r io.Reader) ([]Thread, error) {
	var out []Thread
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var t Thread
		if err := json.Unmarshal(sc.Bytes(), &t); err != nil {
			return out, fmt.Errorf("decode in-flight thread %q: %w", sc.Text(), err)
		}
		out = append(out, t)
	}
	return out, sc.Err()
}

// MonotonicNS is CLOCK_MONOTONIC, the clock of the kernel's entry times.
func MonotonicNS() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for this clock
	return uint64(ts.Nano())
}
