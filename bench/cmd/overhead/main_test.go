package main

import (
	"errors"
	"strings"
	"testing"
)

// rounds builds runs of getppid in the harness's order U floor U sysobsd U,
// from the ns per call of each run.
func rounds(perRound [][5]float64) []run {
	var runs []run
	names := []string{"untraced", "floor", "untraced", "sysobsd", "untraced"}
	for r, ns := range perRound {
		for i, v := range names {
			runs = append(runs, run{Round: r, Variant: v, Workload: "getppid",
				sample: sample{NsPerOp: ns[i], Ops: 1000, CPUNs: int64(ns[i] * 1000)}})
		}
	}
	return runs
}

func TestPairedRatiosDivideEachRoundsOwnRuns(t *testing.T) {
	runs := rounds([][5]float64{
		{100, 300, 100, 500, 100}, // floor +200, sysobsd +400: 2x
		{100, 200, 100, 250, 100}, // +100, +150: 1.5x
		{200, 300, 200, 500, 200}, // +100, +300: 3x
	})
	vars := []variant{{name: "floor"}, {name: "sysobsd"}}
	wls := []workload{{name: "getppid"}}
	cells := aggregate(runs, vars, wls)

	got := pairedRatios(cells["sysobsd"]["getppid"], cells["floor"]["getppid"])
	want := []float64{1.5, 2, 3}
	if len(got) != len(want) {
		t.Fatalf("paired ratios %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("paired ratios %v, want %v", got, want)
		}
	}
	if s := roundByRound(got, true, 2); s != "2.00x (1.50x – 3.00x), 2 of 3" {
		t.Errorf("round by round: %q", s)
	}
	if s := roundByRound(got, false, 2); s != "2.00x (1.50x – 3.00x), 2 of 3" {
		t.Errorf("round by round, at least: %q", s)
	}
	if s := roundByRound(got, true, 0); s != "2.00x (1.50x – 3.00x)" {
		t.Errorf("round by round, no target: %q", s)
	}
	if s := roundByRound(nil, true, 2); s != "–" {
		t.Errorf("no rounds: %q", s)
	}
}

func TestPairedRatiosSkipRoundsWithoutADivisor(t *testing.T) {
	runs := rounds([][5]float64{
		{100, 300, 100, 500, 100},
		{100, 90, 100, 250, 100}, // the floor measured below the untraced runs: no ratio
	})
	runs = append(runs, run{Round: 2, Variant: "sysobsd", Workload: "getppid"}) // no untraced runs around it
	cells := aggregate(runs, []variant{{name: "floor"}, {name: "sysobsd"}}, []workload{{name: "getppid"}})
	got := pairedRatios(cells["sysobsd"]["getppid"], cells["floor"]["getppid"])
	if len(got) != 1 || got[0] != 2 {
		t.Fatalf("paired ratios %v, want [2]", got)
	}
	if pairedRatios(nil, cells["floor"]["getppid"]) != nil {
		t.Error("a variant not run has no ratios")
	}
}

func TestTargetsTableShowsRoundByRound(t *testing.T) {
	runs := rounds([][5]float64{
		{100, 300, 100, 500, 100},
		{100, 200, 100, 250, 100},
	})
	for i := range runs { // the default's target is against the clock-only programs
		if runs[i].Variant == "floor" {
			runs[i].Variant = "floor-clock"
		}
	}
	vars := []variant{{name: "floor-clock", title: "clock"}, {name: "sysobsd", title: "sysobsd"}}
	report := renderReport(options{}, vars, nil, []workload{{name: "getppid", title: "getppid"}}, runs)
	var row string
	for _, l := range strings.Split(report, "\n") {
		if strings.HasPrefix(l, "| sysobsd default: added cost") {
			row = l
		}
	}
	// Medians: sysobsd 275, clock reads 150 → 1.83x, over 1.2x; rounds 2x and 1.5x.
	if !strings.Contains(row, "275 / 150 ns = 1.83x | not met") || !strings.HasSuffix(row, "| 1.75x (1.50x – 2.00x), 0 of 2 |") {
		t.Errorf("targets row:\n%s", row)
	}
}

func TestProgStatsReportGivesTheMedianOfTheRoundsHooksFirst(t *testing.T) {
	vars := []variant{{name: "sysobsd", title: "sysobsd, default config", system: []string{"x"}}}
	var s progSamples
	for _, r := range [][2]float64{{230, 210}, {180, 160}, {280, 200}} {
		s.add(vars[0].title, "getppid", []progSample{
			{name: "process_exit", runs: 3, nsPerRun: 900},
			{name: "sys_exit", runs: 1000, nsPerRun: r[1]},
			{name: "sys_enter", runs: 1000, nsPerRun: r[0]},
		}, nil)
	}
	got := s.report(vars, []string{"getppid"}, 3)
	for _, want := range []string{
		"| sysobsd, default config | getppid | `sys_enter` | 1,000 | **230.0** (180.0 – 280.0) |",
		"| sysobsd, default config | getppid | `sys_exit` | 1,000 | **200.0** (160.0 – 210.0) |",
		"| sysobsd, default config | getppid | `process_exit` | 3 | **900.0** (900.0 – 900.0) |",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "`sys_exit`") > strings.Index(got, "`process_exit`") {
		t.Fatalf("the syscall hooks should come first:\n%s", got)
	}
}

func TestProgStatsReportSaysWhenATracerFailed(t *testing.T) {
	vars := []variant{{name: "syscount", title: "syscount -L", system: []string{"x"}}}
	var s progSamples
	s.add(vars[0].title, "getppid", nil, errors.New("did not start: no tracefs"))
	s.add(vars[0].title, "getppid", []progSample{{name: "sys_exit", runs: 10, nsPerRun: 150}}, nil)
	got := s.report(vars, []string{"getppid"}, 2)
	if !strings.Contains(got, "(1 of 2 rounds: did not start: no tracefs)") || !strings.Contains(got, "**150.0**") {
		t.Fatalf("report:\n%s", got)
	}
}
