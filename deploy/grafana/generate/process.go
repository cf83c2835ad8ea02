package main

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// process is one process (comm) on the selected hosts, read like strace -c:
// % time, seconds, usecs/call, calls and errors per syscall, then the same
// over time.
func process() *dashboard.DashboardBuilder {
	comm := `comm="$comm"`
	seconds := rate("sysobsd_syscall_seconds_total", comm)
	calls := rate("sysobsd_syscalls_total", comm)
	errs := rate("sysobsd_syscall_errors_total", comm)
	moved := rate("sysobsd_syscall_bytes_total", comm)
	bySyscall := func(expr string) string { return "sum by (syscall) (" + expr + ")" }
	top := func(expr string) string { return "topk(10, " + expr + ")" }
	// Seconds per call, only where calls were made.
	perCall := bySyscall(seconds) + " / (" + bySyscall(calls) + " > 0)"
	// Bytes per call of the syscalls that move bytes (the others have no
	// bytes series, so no result).
	bytesPerCall := bySyscall(moved) + " / (" + bySyscall(calls) + " > 0)"

	return newDashboard("sysobsd-process", "sysobsd / Process",
		"One process (comm) on the selected hosts, read like strace -c: share of time, seconds, time per call, calls and errors for each syscall, then the same over time.").
		WithVariable(labelVariable("comm", "Process", `sysobsd_syscalls_total{job=~"$job", instance=~"$instance"}`, false)).
		WithRow(row("strace -c")).
		WithPanel(tablePanel("strace -c: $comm",
			"Each syscall of $comm on the selected hosts, averaged over the time range, in strace -c's order: share of the process's syscall time, seconds in the syscall per second, time per call, calls and errors per second.",
			[]string{"syscall"}, "% time",
			column{"% time", "percentunit", bySyscall(seconds) + " / on () group_left () (sum(" + seconds + ") > 0)"},
			column{"seconds/s", "s", bySyscall(seconds)},
			column{"time/call", "s", perCall},
			column{"calls/s", "ops", bySyscall(calls)},
			column{"errors/s", "cps", bySyscall(errs)},
		)).
		WithPanel(tablePanel("Errors of $comm",
			"Failed syscalls of $comm per second by syscall and errno, averaged over the time range.",
			[]string{"syscall", "errno"}, "errors/s",
			column{"errors/s", "cps", "sum by (syscall, errno) (" + errs + ")"},
		).Height(8)).
		WithRow(row("Over time")).
		WithPanel(timeseriesPanel("Time in syscalls by syscall",
			"Seconds $comm spent inside each syscall per second (the 10 largest), stacked: the height is the process's time in syscalls, 1 being one thread in a syscall all the time.",
			"s", query(top(bySyscall(seconds)), "{{syscall}}")).
			Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))).
		WithPanel(timeseriesPanel("Syscalls by syscall",
			"Calls per second of $comm's 10 most frequent syscalls.",
			"ops", query(top(bySyscall(calls)), "{{syscall}}"))).
		WithPanel(timeseriesPanel("Errors by syscall and errno",
			"Failed syscalls of $comm per second by syscall and errno.",
			"cps", query("sum by (syscall, errno) ("+errs+")", "{{syscall}} {{errno}}"))).
		WithPanel(timeseriesPanel("Time per call by syscall",
			"Average time inside one call of each of $comm's syscalls (strace -c's usecs/call), for the 10 slowest.",
			"s", query(top(perCall), "{{syscall}}"))).
		WithPanel(timeseriesPanel("Bytes per call by syscall",
			"Bytes each read, write, send, recv (and the like) of $comm moved per call: a few bytes a call, many times a second, is output that is not buffered (see SysobsdUnbufferedWrites).",
			"bytes", query(bySyscall(bytesPerCall), "{{syscall}}"))).
		WithPanel(timeseriesPanel("Threads inside a syscall now, by syscall and state",
			"Threads of $comm inside each syscall at each scrape, by state: sleeping (an interruptible wait: epoll_wait, futex, a socket read), uninterruptible (D: disk or network filesystem I/O, a vfork parent), running, stopped. What strace -p would show a frozen process doing, without stopping it.",
			"short", query("sum by (syscall, state) (sysobsd_syscalls_in_flight"+sel(comm)+")", "{{syscall}} {{state}}"))).
		WithPanel(timeseriesPanel("Longest inside a syscall, by syscall and state",
			"How long the thread of $comm inside each syscall the longest has been inside it, at each scrape. Hours in epoll_wait or futex are an idle server; minutes uninterruptible are not (see SysobsdStuckUninterruptible).",
			"s", query("max by (syscall, state) (sysobsd_syscall_in_flight_oldest_seconds"+sel(comm)+")", "{{syscall}} {{state}}"))).
		WithPanel(timeseriesPanel("Futex share of $comm's syscall time",
			"Share of $comm's time in syscalls spent in futex (waiting for locks or condition variables). 0 when it makes no futex calls.",
			"percentunit", query("(sum by (instance) ("+rate("sysobsd_syscall_seconds_total", comm, `syscall="futex"`)+") or sum by (instance) ("+seconds+") * 0)"+
				" / (sum by (instance) ("+seconds+") > 0)", "{{instance}}")).
			Max(1)).
		WithPanel(timeseriesPanel("$comm's share of the host's syscall time",
			"Seconds $comm spent in syscalls over the seconds every process on the host spent in them.",
			"percentunit", query("sum by (instance) ("+seconds+") / (sum by (instance) ("+rate("sysobsd_syscall_seconds_total")+") > 0)", "{{instance}}")).
			Max(1))
}
