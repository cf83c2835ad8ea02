package metrics

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestProgramCollectorExportsRecursionMisses(t *testing.T) {
	c := NewProgramCollector(func() (map[string]uint64, error) {
		return map[string]uint64{"sys_exit": 3, "process_fork": 0}, nil
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, m := range families[0].GetMetric() {
		got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if got["sys_exit"] != 3 || got["process_fork"] != 0 || len(got) != 2 {
		t.Errorf("recursion misses = %v, want sys_exit 3, process_fork 0", got)
	}
}

func TestProgramCollectorFailsTheScrapeOnAReadError(t *testing.T) {
	c := NewProgramCollector(func() (map[string]uint64, error) { return nil, errors.New("bad fd") })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err == nil || !strings.Contains(err.Error(), "bad fd") {
		t.Errorf("Gather() error = %v, want the read error", err)
	}
}
