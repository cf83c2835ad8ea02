package main

import (
	"math"
	"strings"
	"testing"

	"github.com/sysobsd/sysobsd/bench/internal/measure"
)

const runsTSV = "server\tround\tseq\tvariant\tthroughput\tp50_ms\tp99_ms\tavg_ms\terrors\tforeign\tload1\n" +
	"nginx\t1\t1\tuntraced\t1000\t1\t2\t1\t-\t0\t0.5\n" +
	"nginx\t1\t2\tfloor\t900\t1\t2\t1\t-\t0\t0.5\n" +
	"nginx\t1\t3\tuntraced\t1000\t1\t2\t1\t-\t0\t0.5\n" +
	"nginx\t1\t4\tsysobsd\t700\t1\t2\t1\t-\t0\t0.5\n" +
	"nginx\t1\t5\tuntraced\t800\t1\t2\t1\t-\t0\t0.5\n"

func TestTracedRunComparedWithTheUntracedRunsBesideIt(t *testing.T) {
	runs, err := parseRuns(strings.NewReader(runsTSV))
	if err != nil {
		t.Fatal(err)
	}
	ps := pair(runs)
	want := map[string]float64{"floor": 10, "sysobsd": (1 - 700.0/900) * 100}
	if len(ps) != len(want) {
		t.Fatalf("got %d paired runs, want %d", len(ps), len(want))
	}
	for _, p := range ps {
		if math.Abs(p.loss-want[p.variant]) > 1e-9 {
			t.Errorf("%s: loss %.3f%%, want %.3f%%", p.variant, p.loss, want[p.variant])
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{math.NaN(), 5}, 5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing should be NaN")
	}
}

func TestRoundByRoundSkipsRoundsWithoutALossToDivideBy(t *testing.T) {
	num := []pairedRun{{loadRun: loadRun{round: 1}, loss: 10}, {loadRun: loadRun{round: 2}, loss: 10}}
	den := []pairedRun{{loadRun: loadRun{round: 1}, loss: 5}, {loadRun: loadRun{round: 2}, loss: -1}}
	got := roundByRound(num, den, measure.Target{AtMost: true, Limit: 1.1})
	if want := "2.00x (2.00x – 2.00x), held in 0 of 1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A build given by ALT= gets its own row, after the known variants.
func TestAnAltBuildGetsItsOwnRowAfterTheKnownOnes(t *testing.T) {
	runs, err := parseRuns(strings.NewReader(runsTSV +
		"nginx\t1\t6\tsysobsd-nohist\t700\t1\t2\t1\t-\t0\t0.5\n" +
		"nginx\t1\t7\tuntraced\t600\t1\t2\t1\t-\t0\t0.5\n"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range rowsOf(pair(runs)) {
		names = append(names, v.name)
	}
	if got, want := strings.Join(names, " "), "floor sysobsd sysobsd-nohist"; got != want {
		t.Errorf("rows %q, want %q", got, want)
	}
	report := renderServer("nginx", runs)
	if !strings.Contains(report, "| sysobsd build nohist, default config | 700 | **0.0%**") {
		t.Errorf("no row for the alt build in:\n%s", report)
	}
}
