// Command servers renders the report of bench/servers.sh from its runs (a
// TSV: one line per load run, untraced or under a tracer, in the order they
// ran): per server, each variant's throughput, the throughput it lost against
// the untraced runs just before and after it, its latency percentiles, and
// the targets as ratios of those losses.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/sysobsd/sysobsd/bench/internal/measure"
)

// A loadRun is one line of runs.tsv.
type loadRun struct {
	server, variant string
	round, seq      int
	throughput      float64
	p50, p99, avg   float64 // ms
	errors          string
	foreign         int
	load1           float64
}

type variantInfo struct{ name, title string }

var variants = []variantInfo{
	{"floor", measure.Titles["floor"]},
	{"floor-clock", measure.Titles["floor-clock"]},
	{"sysobsd", measure.Titles["sysobsd"]},
	{"sysobsd-exact", measure.Titles["sysobsd-exact"]},
	{"sysobsd-nolat", measure.Titles["sysobsd-nolat"]},
	{"syscount", "libbpf-tools `syscount -L`"},
	{"bpftrace", "bpftrace script doing what sysobsd does"},
	{"perf", "`perf trace -a -s` (system-wide)"},
	{"strace", "`strace -f -c -p` (the server's processes)"},
}

type servers map[string]string

func (s servers) String() string { return fmt.Sprint(map[string]string(s)) }
func (s servers) Set(v string) error {
	name, title, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want NAME=TITLE, got %q", v)
	}
	s[name] = title
	return nil
}

func main() {
	runsPath := flag.String("runs", "bench/.build/servers/runs.tsv", "bench/servers.sh's runs")
	machine := flag.String("machine", "", "bench/machine.sh's block")
	runInfo := flag.String("run", "", "the run's table (command, date, versions)")
	titles := servers{}
	flag.Var(titles, "server", "NAME=TITLE: a server's heading (repeatable)")
	flag.Parse()
	runs, err := readRuns(*runsPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "servers:", err)
		os.Exit(1)
	}
	fmt.Print(render(runs, titles, readOptional(*runInfo), readOptional(*machine)))
}

func readOptional(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

func readRuns(path string) ([]loadRun, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseRuns(f)
}

func parseRuns(r io.Reader) ([]loadRun, error) {
	var runs []loadRun
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		f := strings.Split(sc.Text(), "\t")
		if line == 1 || len(f) == 0 || f[0] == "" {
			continue // the header
		}
		if len(f) != 11 {
			return nil, fmt.Errorf("runs line %d: %d fields, want 11", line, len(f))
		}
		num := func(s string) float64 {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return math.NaN()
			}
			return v
		}
		runs = append(runs, loadRun{
			server: f[0], round: int(num(f[1])), seq: int(num(f[2])), variant: f[3],
			throughput: num(f[4]), p50: num(f[5]), p99: num(f[6]), avg: num(f[7]),
			errors: f[8], foreign: int(num(f[9])), load1: num(f[10]),
		})
	}
	return runs, sc.Err()
}

// A pairedRun is a traced run with the untraced runs beside it.
type pairedRun struct {
	loadRun
	base float64 // mean throughput of the untraced runs just before and after
	loss float64 // throughput lost, % of base
}

// pair finds each traced run's untraced neighbours (runs of one server, in
// the order they ran).
func pair(runs []loadRun) []pairedRun {
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].seq < runs[j].seq })
	var out []pairedRun
	for i, r := range runs {
		if r.variant == "untraced" || i == 0 || i == len(runs)-1 {
			continue
		}
		before, after := runs[i-1], runs[i+1]
		if before.variant != "untraced" || after.variant != "untraced" {
			continue
		}
		base := (before.throughput + after.throughput) / 2
		out = append(out, pairedRun{r, base, (1 - r.throughput/base) * 100})
	}
	return out
}

func median(v []float64) float64 {
	var s []float64
	for _, x := range v {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	if len(s) == 0 {
		return math.NaN()
	}
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(v []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

func pick[T any](rs []T, f func(T) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func num(v float64, digits int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', digits, 64)
}

func render(runs []loadRun, titles servers, runInfo, machine string) string {
	var b strings.Builder
	b.WriteString("## Real servers\n\n")
	b.WriteString(method)
	if runInfo != "" {
		b.WriteString("### This run\n\n" + runInfo + "\n")
	}
	if machine != "" {
		b.WriteString("The machine (`bench/machine.sh`, recorded at the start of the run):\n\n" + machine + "\n")
	}
	byServer := map[string][]loadRun{}
	var order []string
	for _, r := range runs {
		if _, ok := byServer[r.server]; !ok {
			order = append(order, r.server)
		}
		byServer[r.server] = append(byServer[r.server], r)
	}
	for _, s := range order {
		title := titles[s]
		if title == "" {
			title = s
		}
		b.WriteString(renderServer(title, byServer[s]))
	}
	b.WriteString(notes)
	return b.String()
}

const notes = `Notes on the set-up:

- nginx runs 1 worker process with sendfile and Debian's default access log (one write(2) per
  request; the log is emptied between runs); wrk's connections are kept alive, and nginx closes
  each after 1,000 requests (its default), so wrk reconnects now and then as real clients do.
- pgbench runs the select-only script (` + "`-S`" + `): a transaction is a query and its answer over TCP
  (a few sendto/recvfrom and epoll calls on each side) and the backend's CPU work on data in
  shared buffers, so its throughput follows the syscall path. The default TPC-B-like script
  waits for a WAL fsync at every commit; on a shared VM disk its throughput follows the disk,
  not the syscall path (` + "`PG_MODE=tpcb`" + ` runs it). Latency percentiles come from pgbench's
  per-transaction log (` + "`-l`" + `), throughput from its "tps (without initial connection time)".
- The system-wide tracers (the floor, clock-only, sysobsd, syscount, bpftrace, perf trace) see
  every process, the load generator's too; ` + "`perf trace -a -s`" + ` prints only its summary but still
  carries every event to user space. strace is attached with ` + "`-f -c -p`" + ` to the server's processes
  (nginx's master and worker; the postmaster and its children, ` + "`-f`" + ` following the backends it
  forks for pgbench's clients), as one would attach it to a running server.
- Servers, load generators and tracers run at nice -10 (` + "`NICE`" + `), as ` + "`bench/run.sh`" + `'s loops do,
  so that other work on a shared machine disturbs the runs less.

`

const method = `Servers as their users run them, on loopback on this machine, each under a load generator
that measures what a client sees (` + "`bench/servers.sh`" + `). Each round runs U V1 U V2 … Vk U (U:
untraced), the variant order rotated every round; a tracer is started, and ready, before its
run's load starts and stopped after it. "Lost" is the throughput a traced run lost against the
mean of the untraced runs just before and after it, median over the rounds (min–max); "vs
clock-only" and "vs floor" divide a variant's median loss by theirs. The load generator runs
on the same host, so the system-wide tracers slow its syscalls too (as they would any client on
a traced host); strace is attached to the server's processes only. The untraced runs' own
spread (each traced run's two neighbours against each other) is given per server: it is the
noise a loss must stand out of.

`

func renderServer(title string, runs []loadRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", title)
	var untraced []loadRun
	for _, r := range runs {
		if r.variant == "untraced" {
			untraced = append(untraced, r)
		}
	}
	paired := pair(runs)
	thr := pick(untraced, func(r loadRun) float64 { return r.throughput })
	lo, hi := minMax(thr)
	fmt.Fprintf(&b, "Untraced: **%s per second** (median of %d runs, %s–%s), latency p50 %s ms, p99 %s ms. ",
		num(median(thr), 0), len(untraced), num(lo, 0), num(hi, 0),
		num(median(pick(untraced, func(r loadRun) float64 { return r.p50 })), 3),
		num(median(pick(untraced, func(r loadRun) float64 { return r.p99 })), 3))
	noise := neighbourSpread(runs, paired)
	if !math.IsNaN(noise) {
		fmt.Fprintf(&b, "The two untraced runs around a traced run differed by %s%% (median): the noise a loss must stand out of.", num(noise, 1))
	}
	b.WriteString("\n\n| attached | per second, median | throughput lost, median (min–max) | vs clock-only | vs floor | latency p50, ms | p99, ms | rounds |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| untraced | %s | – | – | – | %s | %s | %d runs |\n", num(median(thr), 0),
		num(median(pick(untraced, func(r loadRun) float64 { return r.p50 })), 3),
		num(median(pick(untraced, func(r loadRun) float64 { return r.p99 })), 3), len(untraced))
	loss := lossesByVariant(paired)
	for _, v := range rowsOf(paired) {
		ps := byVariant(paired, v.name)
		l := loss[v.name]
		lo, hi := minMax(l)
		fmt.Fprintf(&b, "| %s | %s | **%s%%** (%s – %s) | %s | %s | %s | %s | %d |\n", v.title,
			num(median(pick(ps, func(r pairedRun) float64 { return r.throughput })), 0),
			num(median(l), 1), num(lo, 1), num(hi, 1),
			ratio(median(l), median(loss["floor-clock"])), ratio(median(l), median(loss["floor"])),
			num(median(pick(ps, func(r pairedRun) float64 { return r.p50 })), 3),
			num(median(pick(ps, func(r pairedRun) float64 { return r.p99 })), 3), len(ps))
	}
	b.WriteString("\n")
	b.WriteString(targets(paired, noise))
	b.WriteString(caveats(runs))
	return b.String()
}

// rowsOf lists the variants that ran: the known ones in their order, then
// the builds given by ALT= (sysobsd-NAME), by name.
func rowsOf(ps []pairedRun) []variantInfo {
	ran := map[string]bool{}
	for _, p := range ps {
		ran[p.variant] = true
	}
	var rows []variantInfo
	for _, v := range variants {
		if ran[v.name] {
			rows = append(rows, v)
			delete(ran, v.name)
		}
	}
	others := slices.Sorted(maps.Keys(ran))
	for _, name := range others {
		rows = append(rows, variantInfo{name, measure.BuildTitle(strings.TrimPrefix(name, "sysobsd-"), "sysobsd")})
	}
	return rows
}

func lossesByVariant(ps []pairedRun) map[string][]float64 {
	out := map[string][]float64{}
	for _, p := range ps {
		out[p.variant] = append(out[p.variant], p.loss)
	}
	return out
}

func byVariant(ps []pairedRun, name string) []pairedRun {
	var out []pairedRun
	for _, p := range ps {
		if p.variant == name {
			out = append(out, p)
		}
	}
	return out
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b <= 0 {
		return "–"
	}
	return num(a/b, 2) + "x"
}

// neighbourSpread: how far apart the untraced runs around each traced run
// are, in % (median).
func neighbourSpread(runs []loadRun, ps []pairedRun) float64 {
	bySeq := map[int]loadRun{}
	for _, r := range runs {
		bySeq[r.seq] = r
	}
	var d []float64
	for _, p := range ps {
		before, after := bySeq[p.seq-1], bySeq[p.seq+1]
		d = append(d, math.Abs(after.throughput/before.throughput-1)*100)
	}
	return median(d)
}

// targets: the targets from the median losses, and round by round
// (the two variants' losses in one round divided). A ratio whose divisor is
// within the untraced runs' own spread decides nothing.
func targets(ps []pairedRun, noise float64) string {
	loss := lossesByVariant(ps)
	var b strings.Builder
	for _, t := range measure.ServerTargets {
		n, d := median(loss[t.A]), median(loss[t.B])
		if math.IsNaN(n) || math.IsNaN(d) {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("| target | from the median losses | | round by round: median (min–max) |\n|---|---:|---|---:|\n")
		}
		verdict := "(no target)"
		switch {
		case t.Limit == 0:
		case !(d > noise):
			verdict = fmt.Sprintf("undecided: %s%% is within the noise (%s%%)", num(d, 1), num(noise, 1))
		case n/d <= t.Limit:
			verdict = "met"
		default:
			verdict = "not met"
		}
		fmt.Fprintf(&b, "| %s | %s%% / %s%% = %s | %s | %s |\n", t.What, num(n, 1), num(d, 1), ratio(n, d), verdict,
			roundByRound(byVariant(ps, t.A), byVariant(ps, t.B), t))
	}
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

func roundByRound(num, den []pairedRun, t measure.Target) string {
	denByRound := map[int]float64{}
	for _, p := range den {
		denByRound[p.round] = p.loss
	}
	var rs []float64
	held := 0
	for _, p := range num {
		d, ok := denByRound[p.round]
		if !ok || d <= 0 {
			continue // a loss ≤ 0 leaves no ratio: noise larger than the cost
		}
		rs = append(rs, p.loss/d)
		if p.loss/d <= t.Limit {
			held++
		}
	}
	if len(rs) == 0 {
		return "–"
	}
	lo, hi := minMax(rs)
	s := fmt.Sprintf("%sx (%sx – %sx)", fmtNum(median(rs)), fmtNum(lo), fmtNum(hi))
	if t.Limit != 0 {
		s += fmt.Sprintf(", held in %d of %d", held, len(rs))
	}
	return s
}

func fmtNum(v float64) string { return num(v, 2) }

// caveats: runs with other tracers on the host, or errors, or a high load.
func caveats(runs []loadRun) string {
	foreign, errs := 0, 0
	loads := pick(runs, func(r loadRun) float64 { return r.load1 })
	for _, r := range runs {
		if r.foreign > 0 {
			foreign++
		}
		if r.errors != "-" && r.errors != "" {
			errs++
		}
	}
	lo, hi := minMax(loads)
	s := fmt.Sprintf("1-minute load average at the end of each run: median %s (%s – %s).", num(median(loads), 2), num(lo, 2), num(hi, 2))
	if foreign > 0 {
		s += fmt.Sprintf(" %d of %d runs had other BPF programs on sys_enter/sys_exit attached (not this run's).", foreign, len(runs))
	}
	if errs > 0 {
		s += fmt.Sprintf(" %d runs reported errors (non-2xx, socket errors or failed transactions).", errs)
	}
	return s + "\n\n"
}
