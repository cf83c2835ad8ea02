// Package measure holds what the benchmark programs share: a process's
// memory and the formatting of numbers and ratios.
package measure

import (
	"strconv"
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

// Num writes a measured value with the digits that mean something: one
// decimal below 100, none above, thousands grouped from 10,000.
func Num(x float64) string {
	switch a := max(x, -x); {
	case a >= 10000:
		return GroupThousands(strconv.FormatFloat(x, 'f', 0, 64))
	case a >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	default:
		return strconv.FormatFloat(x, 'f', 1, 64)
	}
}

// Ratio writes a ratio as "1.23x", "12.3x" or "1,234x".
func Ratio(x float64) string {
	switch {
	case x >= 100:
		return GroupThousands(strconv.FormatFloat(x, 'f', 0, 64)) + "x"
	case x >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64) + "x"
	default:
		return strconv.FormatFloat(x, 'f', 2, 64) + "x"
	}
}
