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

// Target is one of issue 21's bounds on the ratio of two variants' costs
// (A's over B's): at most Limit (AtMost) or at least Limit; a Limit of 0
// marks a ratio given for reference. Variants are named as in the tools.
type Target struct {
	What   string
	A, B   string
	AtMost bool
	Limit  float64
}

// CallTargets are the per-call targets (ns added per getppid), against the
// clock-only programs since every latency-measuring tool reads the clock
// twice per call.
var CallTargets = []Target{
	{"sysobsd default: added cost ≤ 1.2x the two clock reads'", "sysobsd", "floor-clock", true, 1.2},
	{"≥ 1.5x less added cost than `syscount -L`", "syscount", "sysobsd", false, 1.5},
	{"≥ 2.5x less added cost than the bpftrace script", "bpftrace", "sysobsd", false, 2.5},
	{"`latency: false`: ≤ 1.5x the exit-only floor's", "sysobsd-nolat", "floor-exit", true, 1.5},
	{"for reference: the two clock reads alone, vs the floor", "floor-clock", "floor", true, 0},
	{"for reference: sysobsd default vs the floor", "sysobsd", "floor", true, 0},
	{"for reference: `latency: true` (every call timed) vs the floor", "sysobsd-exact", "floor", true, 0},
	{"for reference: `latency: true` (every call timed) vs the two clock reads", "sysobsd-exact", "floor-clock", true, 0},
	{"for reference: `latency: false` vs the floor", "sysobsd-nolat", "floor", true, 0},
}

// ServerTargets are the real servers' targets, on the throughput lost.
var ServerTargets = []Target{
	{"sysobsd default: loss ≤ 1.1x the clock-only programs' loss", "sysobsd", "floor-clock", true, 1.1},
	{"`latency: false`: loss ≤ 1.3x the floor's loss", "sysobsd-nolat", "floor", true, 1.3},
	{"for reference: `latency: true` (every call timed) vs the clock-only programs", "sysobsd-exact", "floor-clock", true, 0},
	{"for reference: sysobsd default vs the floor", "sysobsd", "floor", true, 0},
	{"for reference: clock-only vs the floor", "floor-clock", "floor", true, 0},
}

// Titles name the variants every benchmark tool runs the same way: the
// floors and sysobsd's modes (the tools title their own others: strace,
// perf trace, bpftrace and syscount run differently in each).
var Titles = map[string]string{
	"floor":         "empty tp_btf sys_enter + sys_exit (the floor)",
	"floor-exit":    "empty tp_btf sys_exit only",
	"floor-clock":   "a clock read at entry and at exit, nothing else",
	"sysobsd":       "sysobsd, default config",
	"sysobsd-nolat": "sysobsd, `latency: false`",
	"sysobsd-exact": "sysobsd, `latency: true` (every call timed)",
}

// BuildTitle names another build (-alt, ALT=) run as variant, a sysobsd mode:
// "sysobsd build NAME, default config".
func BuildTitle(name, variant string) string {
	return strings.Replace(Titles[variant], "sysobsd", "sysobsd build "+name, 1)
}
