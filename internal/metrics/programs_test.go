package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sysobsd/sysobsd/internal/loader"
)

func TestProgramCollectorExportsRunStatistics(t *testing.T) {
	c := NewProgramCollector(func() (map[string]loader.ProgramStats, error) {
		return map[string]loader.ProgramStats{
			"sys_exit":     {Runs: 1000, Runtime: 150 * time.Microsecond, RecursionMisses: 3},
			"process_fork": {},
		}, nil
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			got[f.GetName()+"/"+m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"sysobsd_bpf_program_recursion_misses_total/sys_exit":     3,
		"sysobsd_bpf_program_recursion_misses_total/process_fork": 0,
		"sysobsd_bpf_program_runs_total/sys_exit":                 1000,
		"sysobsd_bpf_program_runs_total/process_fork":             0,
		"sysobsd_bpf_program_run_seconds_total/sys_exit":          150e-6,
		"sysobsd_bpf_program_run_seconds_total/process_fork":      0,
	}
	if len(got) != len(want) {
		t.Errorf("%d series, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

func TestProgramCollectorFailsTheScrapeOnAReadError(t *testing.T) {
	c := NewProgramCollector(func() (map[string]loader.ProgramStats, error) { return nil, errors.New("bad fd") })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "bad fd") {
		t.Errorf("Gather() error = %v, want the read error", err)
	}
}
