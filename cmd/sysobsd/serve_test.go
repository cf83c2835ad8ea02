package main

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sysobsd/sysobsd/internal/config"
)

// The latency mode gauges tell a dashboard whether the time is measured,
// sampled (and from what length every call counts) or not at all.
func TestLatencyModeGauges(t *testing.T) {
	for _, c := range []struct {
		name            string
		mode            config.LatencyMode
		loaderLongCall  time.Duration // Probes.LongCall: 0 unless sampled
		timed, longCall float64
	}{
		{"sampled", config.LatencySampled, 20 * time.Millisecond, 1.0 / 16, 0.02},
		{"every call", config.LatencyEvery, 0, 1, 0},
		{"off", config.LatencyOff, 0, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			registry := prometheus.NewRegistry()
			registry.MustRegister(latencyMode(c.mode, 16, c.loaderLongCall))
			families, err := registry.Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]float64{}
			for _, f := range families {
				got[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
			}
			want := map[string]float64{"sysobsd_latency_timed_ratio": c.timed, "sysobsd_latency_long_call_seconds": c.longCall}
			if len(got) != len(want) || got["sysobsd_latency_timed_ratio"] != c.timed || got["sysobsd_latency_long_call_seconds"] != c.longCall {
				t.Errorf("gauges %v, want %v", got, want)
			}
		})
	}
}
