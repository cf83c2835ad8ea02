package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/sysobsd/sysobsd/bench/internal/measure"
)

// pairedRun is one traced loop run with the untraced runs just before and
// after it.
type pairedRun struct {
	Round    int     `json:"round"`
	Variant  string  `json:"variant"`
	Instance int     `json:"instance"`
	Before   float64 `json:"untraced_before_ns"`
	Traced   float64 `json:"traced_ns"`
	After    float64 `json:"untraced_after_ns"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// byRound holds each variant's costs by round (all its instances').
type byRound map[string][][]float64

func groupByRound(runs []pairedRun, rounds int, m metric) byRound {
	g := byRound{}
	for _, r := range runs {
		if g[r.Variant] == nil {
			g[r.Variant] = make([][]float64, rounds)
		}
		g[r.Variant][r.Round] = append(g[r.Variant][r.Round], m.of(r))
	}
	return g
}

// pooled is variant's costs in the given rounds.
func (g byRound) pooled(variant string, rounds []int) []float64 {
	var out []float64
	for _, r := range rounds {
		out = append(out, g[variant][r]...)
	}
	return out
}

// interval is a statistic with its bootstrap confidence interval.
type interval struct{ value, lo, hi float64 }

// bootstrapLevel is the interval's coverage: 90%, from the 5th to the 95th
// percentile of the resampled statistic.
const (
	bootstrapLevel   = 0.90
	bootstrapSamples = 2000
)

// bootstrap computes stat on all rounds, and its interval from resamples of
// the rounds with replacement. Resampling rounds, not runs, keeps what one
// round shares (the machine's speed at that moment, felt by every variant in
// it), so that an interval of a ratio is of paired measurements.
func bootstrap(rounds int, rng *rand.Rand, stat func(rounds []int) float64) interval {
	xs := make([]float64, bootstrapSamples)
	pick := make([]int, rounds)
	for b := range xs {
		for i := range pick {
			pick[i] = rng.IntN(rounds)
		}
		xs[b] = stat(pick)
	}
	slices.Sort(xs)
	tail := (1 - bootstrapLevel) / 2
	return interval{
		value: stat(allRounds(rounds)),
		lo:    xs[int(tail*float64(len(xs)))],
		hi:    xs[min(int((1-tail)*float64(len(xs))), len(xs)-1)],
	}
}

// verdict says whether the interval of a ratio keeps the target, misses it,
// or straddles it.
func verdict(t measure.Target, ci interval) string {
	if t.Limit == 0 {
		return "–"
	}
	lim := measure.Ratio(t.Limit)
	switch {
	case t.AtMost && ci.hi <= t.Limit, !t.AtMost && ci.lo >= t.Limit:
		return "**met**: the whole interval is on the target's side"
	case t.AtMost && ci.lo > t.Limit:
		return "**not met**: the whole interval is above " + lim
	case !t.AtMost && ci.hi < t.Limit:
		return "**not met**: the whole interval is below " + lim
	}
	return "undecided: the interval contains " + lim
}

func render(o options, vars []variant, runs []pairedRun, took time.Duration, loopCPU string, rng *rand.Rand) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	g := groupByRound(runs, o.rounds, o.metric)

	var untraced []float64
	for i, r := range runs {
		if i == 0 || runs[i-1].Round != r.Round {
			untraced = append(untraced, r.Before)
		}
		untraced = append(untraced, r.After)
	}
	where := "unpinned (one CPU)"
	if loopCPU != "" {
		where = "on CPU " + loopCPU + ", the harnesses on the others"
	}
	if o.workload == "" {
		p("`inplace -call %s -iters %d -rounds %d -instances %d -seed %d`: %d paired runs in %s; the loop %s, nice %d.\n",
			o.call, o.iters, o.rounds, o.instances, o.seed, len(runs), took.Round(time.Second), where, o.nice)
	} else {
		p("`inplace -workload '%s' -parse %s -rounds %d -instances %d -seed %d`: %d paired runs in %s, nice %d.\n",
			o.workload, o.metric.name, o.rounds, o.instances, o.seed, len(runs), took.Round(time.Second), o.nice)
	}
	p("Untraced: **%s %s** (median of %d runs, %s – %s).\n\n", measure.Num(median(untraced)), o.metric.unit,
		len(untraced), measure.Num(slices.Min(untraced)), measure.Num(slices.Max(untraced)))

	added := func(v string) func([]int) float64 {
		return func(rounds []int) float64 { return median(g.pooled(v, rounds)) }
	}
	has := func(v string) bool { return g[v] != nil }
	p("| attached | %s, median (90%% CI) | instances' medians | vs the floor | vs the clock reads only |\n", o.metric.cost)
	p("|---|---:|---|---:|---:|\n")
	for _, v := range vars {
		if !has(v.name) {
			continue
		}
		ci := bootstrap(o.rounds, rng, added(v.name))
		var inst []string
		for i := range o.instances {
			var mine []float64
			for _, r := range runs {
				if r.Variant == v.name && r.Instance == i {
					mine = append(mine, o.metric.of(r))
				}
			}
			inst = append(inst, measure.Num(median(mine)))
		}
		vs := func(base string) string {
			if base == v.name || !has(base) {
				return "–"
			}
			return measure.Ratio(ci.value / median(g.pooled(base, allRounds(o.rounds))))
		}
		p("| %s | **%s** (%s – %s) | %s | %s | %s |\n", v.title, measure.Num(ci.value), measure.Num(ci.lo), measure.Num(ci.hi),
			strings.Join(inst, ", "), vs("floor"), vs("floor-clock"))
	}
	p("\n")

	p("| target | ratio of medians (90%% CI) | verdict |\n|---|---:|---|\n")
	rows := 0
	targets := measure.CallTargets
	if !o.metric.perCall {
		targets = measure.ServerTargets
	}
	for _, t := range targets {
		if !has(t.A) || !has(t.B) {
			continue
		}
		ci := bootstrap(o.rounds, rng, func(rounds []int) float64 { return added(t.A)(rounds) / added(t.B)(rounds) })
		p("| %s | %s (%s – %s) | %s |\n", t.What, measure.Ratio(ci.value), measure.Ratio(ci.lo), measure.Ratio(ci.hi), verdict(t, ci))
		rows++
	}
	for _, v := range vars {
		if v.path == "" || !has(v.serveAs) {
			continue
		}
		ci := bootstrap(o.rounds, rng, func(rounds []int) float64 { return added(v.name)(rounds) / added(v.serveAs)(rounds) })
		p("| for reference: build %s vs this build, both %s | %s (%s – %s) | – |\n",
			strings.TrimPrefix(v.name, "sysobsd-"), v.serveAs, measure.Ratio(ci.value), measure.Ratio(ci.lo), measure.Ratio(ci.hi))
		rows++
	}
	if rows == 0 {
		p("| (no target's two variants were run) | | |\n")
	}
	p("\n")
	return b.String()
}

func allRounds(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
