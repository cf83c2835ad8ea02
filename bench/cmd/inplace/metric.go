package main

import (
	"fmt"
	"strconv"
	"strings"
)

// metric is what a run yields and how a traced run's cost is read from it.
type metric struct {
	name string
	// unit of the untraced figure; cost the column's heading.
	unit, cost string
	// perCall: the figure is time per call, the cost the time added; else
	// the figure is a throughput, the cost the percentage lost.
	perCall bool
	// field precedes the figure in the run's output.
	field string
}

var loopMetric = metric{name: "loop", unit: "ns per call", cost: "ns added per call", perCall: true, field: "ns_per_op="}

// The load generators bench/servers.sh runs.
var workloadMetrics = map[string]metric{
	"wrk":     {name: "wrk", unit: "requests/s", cost: "throughput lost, %", field: "Requests/sec:"},
	"pgbench": {name: "pgbench", unit: "transactions/s", cost: "throughput lost, %", field: "tps ="},
}

// parse finds the figure after m.field in a run's output.
func (m metric) parse(out string) (float64, error) {
	for _, line := range strings.Split(out, "\n") {
		_, rest, ok := strings.Cut(line, m.field)
		if !ok {
			continue
		}
		if f := strings.Fields(rest); len(f) > 0 {
			return strconv.ParseFloat(f[0], 64)
		}
	}
	return 0, fmt.Errorf("%s printed no %q: %q", m.name, m.field, out)
}

// of is a traced run's cost against the mean of its untraced neighbours.
func (m metric) of(r pairedRun) float64 {
	base := (r.Before + r.After) / 2
	if m.perCall {
		return r.Traced - base
	}
	return 100 * (1 - r.Traced/base)
}
