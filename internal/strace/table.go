// Package strace renders sysobsd's data the way strace does: the -c summary
// table, and one line per call.
package strace

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Row is one syscall's totals.
type Row struct {
	Syscall string
	Calls   uint64
	Errors  uint64
	Time    time.Duration
	// Bytes moved, for the syscalls that move bytes (MovesBytes).
	Bytes      uint64
	MovesBytes bool
}

// WriteTable writes rows as strace -c does: sorted by time, most first,
// with % time, seconds, usecs/call, calls, errors and a total line.
func WriteTable(w io.Writer, rows []Row) error { return writeTable(w, rows, false) }

// WriteTableWithBytes is WriteTable with two more columns before the
// syscall's name: the bytes moved and bytes per call, for the syscalls that
// move bytes (blank for the others), which show how the program buffers.
func WriteTableWithBytes(w io.Writer, rows []Row) error { return writeTable(w, rows, true) }

func writeTable(w io.Writer, rows []Row, withBytes bool) error {
	rows = slices.Clone(rows)
	slices.SortFunc(rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(b.Time, a.Time), cmp.Compare(b.Calls, a.Calls), cmp.Compare(a.Syscall, b.Syscall))
	})
	var total Row
	for _, r := range rows {
		total.Calls += r.Calls
		total.Errors += r.Errors
		total.Time += r.Time
		total.Bytes += r.Bytes
	}
	total.Syscall = "total"
	total.MovesBytes = true
	var b strings.Builder
	line := "------ ----------- ----------- --------- --------- "
	header := "% time     seconds  usecs/call     calls    errors "
	if withBytes {
		line += "------------ ---------- "
		header += "       bytes bytes/call "
	}
	line += "----------------\n"
	header += "syscall\n"
	b.WriteString(header)
	b.WriteString(line)
	for _, r := range rows {
		writeRow(&b, r, total.Time, withBytes)
	}
	b.WriteString(line)
	writeRow(&b, total, total.Time, withBytes)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeRow(b *strings.Builder, r Row, total time.Duration, withBytes bool) {
	percent := 0.0
	if total > 0 {
		percent = 100 * float64(r.Time) / float64(total)
	}
	usecs := uint64(0)
	if r.Calls > 0 {
		usecs = uint64(r.Time.Microseconds()) / r.Calls
	}
	errors := ""
	if r.Errors > 0 {
		errors = fmt.Sprint(r.Errors)
	}
	fmt.Fprintf(b, "%6.2f %11.6f %11d %9d %9s ", percent, r.Time.Seconds(), usecs, r.Calls, errors)
	if withBytes {
		bytes, perCall := "", ""
		if r.MovesBytes {
			bytes = fmt.Sprint(r.Bytes)
			if r.Calls > 0 {
				perCall = fmt.Sprint(r.Bytes / r.Calls)
			}
		}
		fmt.Fprintf(b, "%12s %10s ", bytes, perCall)
	}
	b.WriteString(r.Syscall + "\n")
}

// ParseTable reads a table in strace -c's format (strace's own output, or
// WriteTable's) into rows, without the total line.
func ParseTable(text string) (map[string]Row, error) {
	rows := make(map[string]Row)
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || strings.HasPrefix(line, "%") || strings.HasPrefix(line, "-") {
			continue
		}
		var r Row
		var seconds float64
		if _, err := fmt.Sscanf(f[1], "%f", &seconds); err != nil {
			continue
		}
		r.Time = time.Duration(seconds * float64(time.Second))
		if _, err := fmt.Sscanf(f[3], "%d", &r.Calls); err != nil {
			continue
		}
		if len(f) == 6 {
			if _, err := fmt.Sscanf(f[4], "%d", &r.Errors); err != nil {
				return nil, fmt.Errorf("errors column in %q", line)
			}
		}
		r.Syscall = f[len(f)-1]
		if r.Syscall == "total" {
			continue
		}
		rows[r.Syscall] = r
	}
	return rows, nil
}
