package main

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/table"
)

// overview is the host overview: which processes spend their time in
// syscalls, make them and fail them; errors by errno; futex share; latency
// per syscall; and sysobsd's own health.
func overview() *dashboard.DashboardBuilder {
	top := func(by, expr string) string { return "topk(10, sum by (" + by + ") (" + expr + "))" }
	seconds := rate("sysobsd_syscall_seconds_total")
	calls := rate("sysobsd_syscalls_total")
	errs := rate("sysobsd_syscall_errors_total")

	return newDashboard("sysobsd-overview", "sysobsd / Host overview",
		"Syscalls on the selected hosts: which processes spend their time in them, make them and fail them, with errors by errno, futex share and latency per syscall (sysobsd: strace -c for the whole machine).").
		WithVariable(syscallVariable()).
		WithRow(row("Host")).
		WithPanel(statPanel("Syscalls", "Syscalls completed per second, every process together.", "ops",
			query("sum("+calls+")", "calls"))).
		WithPanel(statPanel("Syscall errors", "Syscalls per second that returned an error (-errno), every process together.", "cps",
			query("sum("+errs+")", "errors"))).
		WithPanel(statPanel("Time in syscalls", "Seconds spent inside syscalls per second of wall time, every thread together: 2 means two threads were in a syscall all the time, on average. With latency: sampled (the default) an estimate from one call in 16 and every long call (sysobsd_latency_timed_ratio).", "s",
			query("sum("+seconds+")", "seconds"))).
		WithPanel(statPanel("Processes tracked", "Running processes with counts in sysobsd's kernel maps.", "short",
			query("sum(sysobsd_processes_tracked"+sel()+")", "processes"))).
		WithPanel(statPanel("Lost by sysobsd", "Counts, durations or process records sysobsd lost per second (sysobsd_drops_total, every reason): anything above 0 for long is worth a look, see the runbook of SysobsdDroppingEvents.", "cps",
			query("sum("+rate("sysobsd_drops_total")+")", "lost")).
			Thresholds(dashboard.NewThresholdsConfigBuilder().
				Mode(dashboard.ThresholdsModeAbsolute).
				Steps([]dashboard.Threshold{{Color: "green"}, {Value: cog.ToPtr(0.001), Color: "red"}}))).
		WithPanel(statPanel("Series over the cap", "Label sets per second summed into comm=\"~other\" because a metric reached cardinality.max_series.", "cps",
			query("sum("+rate("sysobsd_series_overflow_total")+")", "series"))).
		WithRow(row("Processes")).
		WithPanel(timeseriesPanel("Top processes by time in syscalls",
			"The 10 processes (comm) with the most seconds inside syscalls per second: 1 is one thread in a syscall all the time. Idle threads waiting in futex, epoll_wait or read count too.",
			"s", query(top("instance, comm", seconds), "{{comm}} {{instance}}"))).
		WithPanel(timeseriesPanel("Top processes by syscalls",
			"The 10 processes (comm) making the most syscalls per second.",
			"ops", query(top("instance, comm", calls), "{{comm}} {{instance}}"))).
		WithPanel(timeseriesPanel("Top processes by errors",
			"The 10 processes (comm) with the most failed syscalls per second, every errno together (EAGAIN and ETIMEDOUT included).",
			"cps", query(top("instance, comm", errs), "{{comm}} {{instance}}"))).
		WithPanel(timeseriesPanel("Errors by errno",
			"Failed syscalls per second by errno, every process together. EAGAIN, EINPROGRESS, ETIMEDOUT, EINTR and ERESTART* are mostly control flow; ENOSPC, EACCES, EIO are not.",
			"cps", query(top("errno", errs), "{{errno}}"))).
		WithPanel(timeseriesPanel("Futex share of syscall time",
			"The 10 processes with the largest share of their syscall time in futex (lock and condition-variable waits). Idle thread pools keep it high; a jump above a process's usual share means its threads wait for each other (SysobsdFutexContention).",
			"percentunit", query("topk(10, sum by (instance, comm) ("+rate("sysobsd_syscall_seconds_total", `syscall="futex"`)+")"+
				" / (sum by (instance, comm) ("+seconds+") > 0))", "{{comm}} {{instance}}")).
			Max(1)).
		WithPanel(timeseriesPanel("Top syscalls by time",
			"The 10 syscalls with the most seconds inside them per second, every process together: the host's strace -c % time.",
			"s", query(top("syscall", seconds), "{{syscall}}"))).
		WithPanel(processTable(seconds, calls, errs)).
		WithRow(row("Latency")).
		WithPanel(latencyHeatmap()).
		WithPanel(timeseriesPanel("Latency percentiles by syscall",
			"Median and 99th percentile of each selected syscall's duration, from sysobsd_syscall_duration_seconds (power-of-two buckets, so a percentile is only known to within a factor of two).",
			"s",
			query(`histogram_quantile(0.5, sum by (syscall, le) (`+rate("sysobsd_syscall_duration_seconds_bucket", `syscall=~"$syscall"`)+`))`, "{{syscall}} p50"),
			query(`histogram_quantile(0.99, sum by (syscall, le) (`+rate("sysobsd_syscall_duration_seconds_bucket", `syscall=~"$syscall"`)+`))`, "{{syscall}} p99")).
			Span(24)).
		WithRow(row("sysobsd")).
		WithPanel(timeseriesPanel("Lost by reason",
			"sysobsd_drops_total per second by reason: ringbuf_full (a process record not sent), stats_map_full and errors_map_full (counted by process name and cgroup, without pid), group_stats_map_full and group_errors_map_full (those full too: counted under comm=\"~other\"), error_uncounted, no_start_time (a call without its duration; normal right after start), start_storage_unavailable, listed_map_full. Then notable events not sent (sysobsd_events_dropped_total, when events are on): rate_limited by design, ringbuf_full when the daemon falls behind. Then runs of a BPF program the kernel skipped (sysobsd_bpf_program_recursion_misses_total): for sys_exit, calls not counted.",
			"cps",
			query("sum by (instance, reason) ("+rate("sysobsd_drops_total")+")", "{{reason}} {{instance}}"),
			query("sum by (instance, reason) ("+rate("sysobsd_events_dropped_total")+")", "events {{reason}} {{instance}}"),
			query("sum by (instance, program) ("+rate("sysobsd_bpf_program_recursion_misses_total")+")", "skipped {{program}} {{instance}}"))).
		WithPanel(timeseriesPanel("Kernel map fill",
			"Entries in the kernel's maps of counters over their capacity (maps.call_slots_per_cpu, maps.stats_entries, maps.errors_entries, maps.group_stats_entries, maps.group_errors_entries). call_slots near 1 costs time, not labels: a call whose slots are taken is counted in syscall_stats (an error in syscall_errors), more slowly. With syscall_stats or syscall_errors at 1, new processes are counted by name and cgroup (no pid label); with group_stats or group_errors at 1 too, under comm=\"~other\".",
			"percentunit", query("sysobsd_bpf_map_entries"+sel()+" / sysobsd_bpf_map_max_entries"+sel(), "{{map}} {{instance}}")).
			Max(1)).
		WithPanel(timeseriesPanel("Tracked and folded processes",
			"Processes with counts in the kernel maps, and exited processes folded into lasting totals per second. Then reads of the kernel maps per second: by_keys (a fold looking up the exited processes' entries, cheap), full (every entry: each scrape, and folds after a burst of exits or a lost entry announcement, sysobsd_bpf_entry_announcements_lost_total). Full reads far above the scrape rate cost CPU on a large host.",
			"short",
			query("sum by (instance) (sysobsd_processes_tracked"+sel()+")", "tracked {{instance}}"),
			query("sum by (instance) ("+rate("sysobsd_processes_folded_total")+")", "folded/s {{instance}}"),
			query("sum by (instance, how) ("+rate("sysobsd_bpf_map_reads_total")+")", "map reads/s {{how}} {{instance}}"))).
		WithPanel(timeseriesPanel("What the BPF programs cost, per run",
			"Time per run of sysobsd's syscall programs (sysobsd_bpf_program_run_seconds_total over sysobsd_bpf_program_runs_total): sys_enter plus sys_exit is what sysobsd adds to every syscall on the host, beyond the kernel's own cost of calling a program. Empty unless kernel.bpf_stats_enabled=1 on the host: the kernel's accounting reads the clock twice per run, so it is off by default; turn it on for a while to measure.",
			"s",
			query("sum by (instance, program) ("+rate("sysobsd_bpf_program_run_seconds_total", `program=~"sys_enter|sys_exit"`)+") / sum by (instance, program) ("+rate("sysobsd_bpf_program_runs_total", `program=~"sys_enter|sys_exit"`)+")", "{{program}} {{instance}}"))).
		WithPanel(timeseriesPanel("What the BPF programs cost, CPU",
			"CPU time all runs of sysobsd's BPF programs take, in the tasks that run them (their syscalls and process events), as a share of one core: the part of sysobsd's cost that the daemon's own CPU does not show. Empty unless kernel.bpf_stats_enabled=1 on the host.",
			"percentunit",
			query("sum by (instance) ("+rate("sysobsd_bpf_program_run_seconds_total")+")", "{{instance}}"))).
		WithPanel(timeseriesPanel("Read and decode errors",
			"1 when reading the kernel maps failed at the last scrape (sysobsd_scrape_error); lifecycle records that could not be decoded per second.",
			"short",
			query("max by (instance) (sysobsd_scrape_error"+sel()+")", "map read failed {{instance}}"),
			query("sum by (instance) ("+rate("sysobsd_lifecycle_decode_errors_total")+")", "undecodable records/s {{instance}}")))
}

// syscallVariable picks the syscalls of the latency panels.
func syscallVariable() *dashboard.QueryVariableBuilder {
	defaults := []string{"futex", "read", "write", "openat"}
	return labelVariable("syscall", "Syscall", `sysobsd_syscall_duration_seconds_bucket{job=~"$job", instance=~"$instance"}`, false).
		Multi(true).
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{ArrayOfString: defaults},
			Value: dashboard.StringOrArrayOfString{ArrayOfString: defaults},
		})
}

// latencyHeatmap is one heatmap per selected syscall (a repeated panel).
func latencyHeatmap() *heatmap.PanelBuilder {
	return heatmap.NewPanelBuilder().
		Title("Latency of $syscall").
		Description("How long $syscall calls take, every process together: calls per second in each power-of-two duration bucket (sysobsd_syscall_duration_seconds). With latency: sampled (the default) the short calls are one in 16 scaled by 16; every call from sysobsd_latency_long_call_seconds (about 20 ms) up is counted.").
		Datasource(datasourceRef()).
		Targets(refIDs([]*prometheus.DataqueryBuilder{
			query(`sum by (le) (`+rate("sysobsd_syscall_duration_seconds_bucket", `syscall=~"$syscall"`)+`)`, "{{le}}").
				Format(prometheus.PromQueryFormatHeatmap),
		})).
		Repeat("syscall").
		RepeatDirection(dashboard.PanelRepeatDirectionH).
		MaxPerRow(4).
		Height(8).
		Span(24).
		Calculate(false).
		RowsFrame(heatmap.NewRowsHeatmapOptionsBuilder().Layout(common.HeatmapCellLayoutLe)).
		YAxis(heatmap.NewYAxisConfigBuilder().Unit("s")).
		CellValues(heatmap.NewCellValuesBuilder().Unit("cps")).
		Color(heatmap.NewHeatmapColorOptionsBuilder().
			Mode(heatmap.HeatmapColorModeScheme).
			Scheme("Oranges").
			Scale(heatmap.HeatmapColorScaleExponential).
			Exponent(0.5).
			Steps(64)).
		ShowValue(common.VisibilityModeNever).
		Tooltip(heatmap.NewHeatmapTooltipBuilder().Mode(common.TooltipDisplayModeSingle).YHistogram(true))
}

// processTable is strace -c's columns per process, every syscall together,
// over the time range; a process's name opens the per-process dashboard.
func processTable(seconds, calls, errs string) *table.PanelBuilder {
	by := func(expr string) string { return "sum by (instance, comm) (" + expr + ")" }
	return tablePanel("Processes",
		"Every process (comm) on the selected hosts, averaged over the time range: seconds in syscalls per second, calls and errors per second, and the share of its syscall time in futex. Click a name for its strace -c view.",
		[]string{"comm", "instance"}, "time in syscalls",
		column{"time in syscalls", "s", by(seconds)},
		column{"calls", "ops", by(calls)},
		column{"errors", "cps", by(errs)},
		column{"futex share", "percentunit", by(rate("sysobsd_syscall_seconds_total", `syscall="futex"`)) + " / (" + by(seconds) + " > 0)"},
	).
		OverrideByName("comm", []dashboard.DynamicConfigValue{{Id: "links", Value: []map[string]any{{
			"title": "strace -c of ${__value.raw}",
			"url":   "/d/sysobsd-process/sysobsd-process?${datasource:queryparam}&${job:queryparam}&${instance:queryparam}&var-comm=${__value.raw}&${__url_time_range}",
		}}}})
}
