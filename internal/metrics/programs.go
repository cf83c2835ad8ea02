package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sysobsd/sysobsd/internal/loader"
)

var (
	recursionMissesDesc = prometheus.NewDesc("sysobsd_bpf_program_recursion_misses_total",
		"Runs of a BPF program the kernel skipped because it was already running on that CPU: for sys_exit a call not counted, for sys_enter a call counted without its duration, for a lifecycle program (process_*, task_rename, cgroup_attach, cgroup_rmdir) a record not sent. Linux 5.12 and later; 0 before.",
		[]string{"program"}, nil)
	programRunsDesc = prometheus.NewDesc("sysobsd_bpf_program_runs_total",
		"Runs of each attached BPF program, counted by the kernel only while kernel.bpf_stats_enabled=1 (0 otherwise). sys_enter and sys_exit run once per syscall on the host.",
		[]string{"program"}, nil)
	programSecondsDesc = prometheus.NewDesc("sysobsd_bpf_program_run_seconds_total",
		"Time spent in each attached BPF program, in the tasks whose syscalls and process events run it: sysobsd's own cost, which no daemon CPU metric shows. Counted only while kernel.bpf_stats_enabled=1 (0 otherwise); divided by sysobsd_bpf_program_runs_total, the cost per run.",
		[]string{"program"}, nil)
)

// ProgramCollector exports the kernel's run statistics of the attached
// programs: losses no map of sysobsd's own can count, and what the programs
// cost the host.
type ProgramCollector struct {
	stats func() (map[string]loader.ProgramStats, error)
}

// NewProgramCollector reads stats (loader.Probes.ProgramStats) at each scrape.
func NewProgramCollector(stats func() (map[string]loader.ProgramStats, error)) *ProgramCollector {
	return &ProgramCollector{stats: stats}
}

func (c *ProgramCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- recursionMissesDesc
	ch <- programRunsDesc
	ch <- programSecondsDesc
}

func (c *ProgramCollector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c.stats()
	if err != nil {
		for _, d := range []*prometheus.Desc{recursionMissesDesc, programRunsDesc, programSecondsDesc} {
			ch <- prometheus.NewInvalidMetric(d, err)
		}
		return
	}
	for program, s := range stats {
		ch <- prometheus.MustNewConstMetric(recursionMissesDesc, prometheus.CounterValue, float64(s.RecursionMisses), program)
		ch <- prometheus.MustNewConstMetric(programRunsDesc, prometheus.CounterValue, float64(s.Runs), program)
		ch <- prometheus.MustNewConstMetric(programSecondsDesc, prometheus.CounterValue, s.Runtime.Seconds(), program)
	}
}
