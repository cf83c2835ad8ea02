package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

var recursionMissesDesc = prometheus.NewDesc("sysobsd_bpf_program_recursion_misses_total",
	"Runs of a BPF program the kernel skipped because it was already running on that CPU: for sys_exit a call not counted, for sys_enter a call counted without its duration, for a lifecycle program (process_*, task_rename, cgroup_attach) a record not sent. Linux 5.12 and later; 0 before.",
	[]string{"program"}, nil)

// ProgramCollector exports the kernel's run statistics of the attached
// programs: losses no map of sysobsd's own can count.
type ProgramCollector struct {
	misses func() (map[string]uint64, error)
}

// NewProgramCollector reads misses (loader.Probes.RecursionMisses) at each
// scrape.
func NewProgramCollector(misses func() (map[string]uint64, error)) *ProgramCollector {
	return &ProgramCollector{misses: misses}
}

func (c *ProgramCollector) Describe(ch chan<- *prometheus.Desc) { ch <- recursionMissesDesc }

func (c *ProgramCollector) Collect(ch chan<- prometheus.Metric) {
	misses, err := c.misses()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(recursionMissesDesc, err)
		return
	}
	for program, n := range misses {
		ch <- prometheus.MustNewConstMetric(recursionMissesDesc, prometheus.CounterValue, float64(n), program)
	}
}
