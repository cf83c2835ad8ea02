package main

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sysobsd/sysobsd/bench/internal/measure"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

func TestMetricsParseTheirTools(t *testing.T) {
	for _, c := range []struct {
		m    metric
		out  string
		want float64
	}{
		{loopMetric, "ns_per_op=1034.25 ops=50000 syscalls=50000 wall_ns=51712500 cpu_ns=51700000\n", 1034.25},
		{workloadMetrics["wrk"], "Running 2s test @ http://127.0.0.1:8080/index.html\n  1 threads and 32 connections\n" +
			"  101234 requests in 2.00s, 120.5MB read\nRequests/sec:  50612.47\nTransfer/sec:     60.22MB\n", 50612.47},
		{workloadMetrics["pgbench"], "number of failed transactions: 0 (0.000%)\nlatency average = 0.412 ms\n" +
			"initial connection time = 9.125 ms\ntps = 9701.219934 (without initial connection time)\n", 9701.219934},
	} {
		got, err := c.m.parse(c.out)
		if err != nil || got != c.want {
			t.Errorf("%s: got %v, %v; want %v", c.m.name, got, err, c.want)
		}
		if _, err := c.m.parse("usage: something else\n"); err == nil {
			t.Errorf("%s: output without its figure accepted", c.m.name)
		}
	}
}

func TestMetricCost(t *testing.T) {
	r := pairedRun{Before: 1000, Traced: 1200, After: 1100}
	if got := loopMetric.of(r); got != 150 {
		t.Errorf("loop: %v ns added, want 150", got)
	}
	r = pairedRun{Before: 10000, Traced: 8400, After: 11000} // requests/s
	if got := workloadMetrics["wrk"].of(r); math.Abs(got-20) > 1e-9 {
		t.Errorf("wrk: %v%% lost, want 20", got)
	}
}

func TestChosenVariants(t *testing.T) {
	vs, err := chosenVariants("floor-clock, sysobsd", "fast=/tmp/inplace-fast,fast-nolat=/tmp/inplace-fast:sysobsd-nolat")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range vs {
		names = append(names, v.name+":"+v.serveAs+":"+v.path)
	}
	if got, want := strings.Join(names, " "), "floor-clock:floor-clock: sysobsd:sysobsd: sysobsd-fast:sysobsd:/tmp/inplace-fast sysobsd-fast-nolat:sysobsd-nolat:/tmp/inplace-fast"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	for _, bad := range []struct{ list, alt string }{
		{"floor strace", ""},                  // not switchable in place
		{"sysobsd", "nolat=/tmp/x"},           // would shadow sysobsd-nolat
		{"sysobsd", "fast"},                   // no path
		{"", ""},                              // nothing
		{"sysobsd", "=/tmp/inplace-x"},        // no name
		{"sysobsd", "x=/tmp/inplace-x:floor"}, // a floor is not a build's
		{"sysobsd", "x=/tmp/inplace-x:sysobsd-fast"},
	} {
		if _, err := chosenVariants(bad.list, bad.alt); err == nil {
			t.Errorf("-variants %q -alt %q accepted", bad.list, bad.alt)
		}
	}
}

func TestVerdict(t *testing.T) {
	le := measure.Target{AtMost: true, Limit: 1.2}
	ge := measure.Target{AtMost: false, Limit: 1.5}
	for _, c := range []struct {
		t      measure.Target
		ci     interval
		prefix string
	}{
		{le, interval{1.1, 1.05, 1.19}, "**met**"},
		{le, interval{1.3, 1.21, 1.4}, "**not met**: the whole interval is above 1.20x"},
		{le, interval{1.2, 1.1, 1.3}, "undecided: the interval contains 1.20x"},
		{ge, interval{1.6, 1.5, 1.7}, "**met**"},
		{ge, interval{1.2, 1.1, 1.4}, "**not met**: the whole interval is below 1.50x"},
		{ge, interval{1.5, 1.4, 1.6}, "undecided"},
		{measure.Target{}, interval{9, 8, 10}, "–"},
	} {
		if got := verdict(c.t, c.ci); !strings.HasPrefix(got, c.prefix) {
			t.Errorf("verdict(%+v, %+v) = %q, want %q...", c.t, c.ci, got, c.prefix)
		}
	}
}

// synthetic makes rounds of paired runs in which each variant adds its cost
// plus noise, on an untraced baseline that drifts from round to round.
func synthetic(rounds, instances int, cost map[string]float64, noise float64, rng *rand.Rand) []pairedRun {
	var runs []pairedRun
	for r := range rounds {
		base := 1000 + 200*rng.Float64() // the machine's speed this round
		// In a fixed order: map order would give each variant other draws
		// on every run, and a median could move by the noise.
		for _, v := range slices.Sorted(maps.Keys(cost)) {
			c := cost[v]
			for i := range instances {
				runs = append(runs, pairedRun{Round: r, Variant: v, Instance: i,
					Before: base, Traced: base + c + noise*(rng.Float64()-0.5), After: base})
			}
		}
	}
	return runs
}

func TestBootstrapIntervalHoldsTheMedianAndNarrowsWithRounds(t *testing.T) {
	width := func(rounds int) float64 {
		rng := rand.New(rand.NewPCG(7, 0))
		g := groupByRound(synthetic(rounds, 2, map[string]float64{"sysobsd": 400}, 100, rng), rounds, loopMetric)
		ci := bootstrap(rounds, rng, func(rs []int) float64 { return median(g.pooled("sysobsd", rs)) })
		if ci.lo > ci.value || ci.hi < ci.value {
			t.Errorf("%d rounds: interval %v – %v leaves out its median %v", rounds, ci.lo, ci.hi, ci.value)
		}
		if ci.lo < 350 || ci.hi > 450 {
			t.Errorf("%d rounds: interval %v – %v outside the noise's range 350–450", rounds, ci.lo, ci.hi)
		}
		return ci.hi - ci.lo
	}
	if few, many := width(5), width(80); many >= few {
		t.Errorf("the interval did not narrow with rounds: %v wide with 5, %v with 80", few, many)
	}
}

func TestRenderGivesEachVariantItsRowAndTheTargetsTheirVerdicts(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 0))
	o := options{call: "getppid", iters: 50000, rounds: 30, instances: 2, seed: 1, nice: -10, metric: loopMetric}
	vars, err := chosenVariants("floor floor-exit floor-clock sysobsd sysobsd-nolat", "")
	if err != nil {
		t.Fatal(err)
	}
	runs := synthetic(o.rounds, o.instances, map[string]float64{
		"floor": 150, "floor-exit": 100, "floor-clock": 300, "sysobsd": 450, "sysobsd-nolat": 140,
	}, 4, rng)
	report := render(o, vars, runs, 0, "1", rng)
	wantIn(t, report,
		"| a clock read at entry and at exit, nothing else | **300** (",
		"| sysobsd, default config | **450** (",
		"the loop on CPU 1",
		"300 paired runs",
	)
	// 450/300 = 1.5x, far above 1.2x; 140/100 = 1.4x, clearly under 1.5x.
	for target, verdict := range map[string]string{
		"| sysobsd default: added cost ≤ 1.2x the two clock reads' | ": "**not met**: the whole interval is above 1.20x",
		"| `latency: false`: ≤ 1.5x the exit-only floor's | ":          "**met**",
	} {
		line, ok := lineWith(report, target)
		if !ok || !strings.Contains(line, verdict) {
			t.Errorf("want %q with %q; report:\n%s", target, verdict, report)
		}
	}
	if strings.Contains(report, "latency: true") {
		t.Errorf("a row or target of a variant not run:\n%s", report)
	}
}

// A harness answers the driver's protocol with real programs: ready once
// loaded, ok to each switch, an error to anything else.
func TestServeSwitchesTheHooks(t *testing.T) {
	testenv.RequireRoot(t)
	for _, name := range []string{"floor-exit", "sysobsd"} {
		var out strings.Builder
		if err := serve(name, strings.NewReader("on\noff\non\noff\n"), &out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, want := out.String(), "ready\nok\nok\nok\nok\n"; got != want {
			t.Errorf("%s said %q, want %q", name, got, want)
		}
	}
	var out strings.Builder
	if err := serve("floor", strings.NewReader("pause\n"), &out); err == nil || !strings.Contains(out.String(), `error: unknown command "pause"`) {
		t.Errorf("an unknown command: err %v, said %q", err, out.String())
	}
}

func lineWith(text, prefix string) (string, bool) {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l, true
		}
	}
	return "", false
}

// Another build's row is compared with this build's same variant.
func TestRenderComparesAnAltBuildWithThisBuildsSameVariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 0))
	o := options{call: "getppid", iters: 50000, rounds: 20, instances: 1, seed: 1, nice: -10, metric: loopMetric}
	vars, err := chosenVariants("sysobsd sysobsd-nolat", "fast=/tmp/inplace-fast:sysobsd-nolat")
	if err != nil {
		t.Fatal(err)
	}
	runs := synthetic(o.rounds, o.instances, map[string]float64{"sysobsd": 450, "sysobsd-nolat": 200, "sysobsd-fast": 100}, 2, rng)
	report := render(o, vars, runs, 0, "1", rng)
	wantIn(t, report,
		"| sysobsd build fast, `latency: false` | **",
		"| for reference: build fast vs this build, both sysobsd-nolat | 0.50x (",
	)
}

// With a workload, the cost is the throughput lost and the targets are the
// servers'.
func TestRenderOfAWorkloadGivesThroughputLostAndTheServerTargets(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 0))
	o := options{workload: "wrk -d 2s http://127.0.0.1:8080/", rounds: 20, instances: 1, seed: 1, nice: -10,
		metric: workloadMetrics["wrk"]}
	vars, err := chosenVariants("floor floor-clock sysobsd", "")
	if err != nil {
		t.Fatal(err)
	}
	var runs []pairedRun
	for r := range o.rounds {
		for v, lost := range map[string]float64{"floor": 0.05, "floor-clock": 0.10, "sysobsd": 0.15} {
			runs = append(runs, pairedRun{Round: r, Variant: v, Before: 10000, Traced: 10000 * (1 - lost), After: 10000})
		}
	}
	report := render(o, vars, runs, 0, "", rng)
	wantIn(t, report,
		"Untraced: **10,000 requests/s**",
		"| attached | throughput lost, %, median (90% CI) |",
		"| sysobsd, default config | **15.0** (15.0 – 15.0) | 15.0 | 3.00x | 1.50x |",
		"| sysobsd default: loss ≤ 1.1x the clock-only programs' loss | 1.50x (1.50x – 1.50x) | **not met**",
	)
}

// wantIn fails t for each of wants that report lacks.
func wantIn(t *testing.T, report string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
}
