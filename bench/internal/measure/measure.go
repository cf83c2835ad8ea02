// Package measure holds what the benchmark programs share: a process's
// memory and the formatting of large numbers.
package measure

import (
	"strings"

	"github.com/prometheus/procfs"
)

// MemKiB reads a process's resident and peak resident memory.
func MemKiB(pid int) (rss, hwm int64) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, 0
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0, 0
	}
	return int64(st.VmRSS / 1024), int64(st.VmHWM / 1024)
}

// GroupThousands writes a decimal number with thousands separators:
// "-1234567.5" → "-1,234,567.5".
func GroupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if hasFrac {
		b.WriteString("." + frac)
	}
	return b.String()
}
