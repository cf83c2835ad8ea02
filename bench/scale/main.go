// Command scale runs sysobsd's scale benchmarks against the built daemon
// (default config) and prints a markdown report:
//
//   - live: many long-lived processes that have each made syscalls (getppid,
//     openat, write, a failing openat, read, ...): scrape time, the daemon's
//     RSS, the kernel maps' memory and fill, exact totals;
//   - churn: many short-lived processes, each making a known number of
//     getppid calls under its own name: totals exact through /metrics, and
//     the kernel map entries back to their baseline once they are folded;
//   - sustained: one getppid loop per CPU for a while, the daemon scraped
//     every few seconds: its CPU time per million syscalls.
//
// Every child is cleaned up: the long-lived ones exit when the pipe that is
// their stdin closes, which also happens if this program dies.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sysobsd/sysobsd/bench/internal/measure"
	"github.com/sysobsd/sysobsd/internal/loader"
)

type options struct {
	sysobsd, loop            string
	live, perLive            int
	short, perShort, workers int
	sustain, scrapeEvery     time.Duration
	scrapes                  int
	trickle                  time.Duration
	trickleRate              int
	bigStats, bigErrors      int
	out                      string
}

func main() {
	var o options
	flag.StringVar(&o.sysobsd, "sysobsd", "build/sysobsd", "sysobsd binary")
	flag.StringVar(&o.loop, "loop", "bench/.build/loop", "bench/loop binary")
	flag.IntVar(&o.live, "live", 10000, "long-lived processes")
	flag.IntVar(&o.perLive, "live-calls", 100, "getppid calls each long-lived process makes")
	flag.IntVar(&o.short, "short", 100000, "short-lived processes")
	flag.IntVar(&o.perShort, "short-calls", 10, "getppid calls each short-lived process makes")
	flag.IntVar(&o.workers, "workers", 2*runtime.NumCPU(), "short-lived processes started at once")
	flag.DurationVar(&o.sustain, "sustain", 30*time.Second, "length of the sustained-rate run")
	flag.DurationVar(&o.scrapeEvery, "scrape-every", 5*time.Second, "scrape interval during the sustained run")
	flag.IntVar(&o.scrapes, "scrapes", 5, "scrapes timed with the long-lived processes running")
	flag.DurationVar(&o.trickle, "trickle", 20*time.Second, "then, with them running, short-lived processes exit at a trickle for this long (0: skip)")
	flag.IntVar(&o.trickleRate, "trickle-rate", 10, "short-lived processes started per second during the trickle")
	flag.IntVar(&o.bigStats, "big-stats-entries", 262144, "then the long-lived run again with maps.stats_entries this large (0: skip)")
	flag.IntVar(&o.bigErrors, "big-errors-entries", 65536, "maps.errors_entries of that run")
	flag.StringVar(&o.out, "out", "", "write the markdown report here (default stdout)")
	flag.Parse()
	report, err := run(o)
	if report != "" {
		if o.out == "" {
			os.Stdout.WriteString(report)
		} else if werr := os.WriteFile(o.out, []byte(report), 0o644); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+"scale: "+format+"\n", args...)
}

func run(o options) (string, error) {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	// The process start rate with nothing attached, for comparison.
	ob := o
	ob.short = min(o.short, 10000)
	logf("%d short-lived processes before the daemon starts", ob.short)
	tookBase, _, err := churn(ob)
	if err != nil {
		return "", err
	}
	rateBase := float64(ob.short) / tookBase.Seconds()

	d, err := startDaemon(o.sysobsd)
	if err != nil {
		return "", err
	}
	defer d.stop()
	time.Sleep(2 * time.Second) // a fold or two: the baseline settles
	base, err := d.scrape()
	if err != nil {
		return "", err
	}
	baseStats := callEntries(base)
	baseProcs := base.sum("sysobsd_processes_tracked")
	rss0, _ := measure.MemKiB(d.pid())
	mem0, maps0 := mapMemory(d.pid())
	logf("baseline: %d stats entries, %d processes tracked, RSS %d KiB", int(baseStats), int(baseProcs), rss0)

	var lr liveResult
	if err := liveRun(o, d, base, rss0, mem0, maps0, "default config", &b, &lr); err != nil {
		return b.String(), err
	}

	// ---- churn ----
	p("### %s short-lived processes\n\n", thousands(o.short))
	before, err := d.scrape()
	if err != nil {
		return b.String(), err
	}
	logf("running %d short-lived processes, %d at a time", o.short, o.workers)
	forks0 := hostForks()
	took, pids, err := churn(o)
	churnOthers := hostForks() - forks0 - int64(o.short)
	if err != nil {
		return b.String(), err
	}
	logf("churn done in %v", took.Round(time.Millisecond))
	// Wait for the folds: exited processes leave the kernel maps.
	stale, oursStale, backAfter, err := staleEntries(d.pid(), pids, 30*time.Second)
	if err != nil {
		return b.String(), err
	}
	after, err := d.scrape()
	if err != nil {
		return b.String(), err
	}
	got := after.sum("sysobsd_syscalls_total", "comm", "sobsburst", "syscall", "getppid") -
		before.sum("sysobsd_syscalls_total", "comm", "sobsburst", "syscall", "getppid")
	want := float64(o.short * o.perShort)
	churnExact := got == want
	execs := after.sum("sysobsd_syscalls_total", "comm", "sobsburst", "syscall", "execve") -
		before.sum("sysobsd_syscalls_total", "comm", "sobsburst", "syscall", "execve")
	rssC, hwmC := measure.MemKiB(d.pid())
	p("%s processes, each `%s burst %d` (%d getppid calls, then exit) executed as `sobsburst`, %d at a time: **%s s** (%s processes/s; before the daemon started, %s of them ran at %s processes/s).\n\n",
		thousands(o.short), filepath.Base(o.loop), o.perShort, o.perShort, o.workers, f1(took.Seconds()), thousands(int(float64(o.short)/took.Seconds())),
		thousands(ob.short), thousands(int(rateBase)))
	p("| measure | value |\n|---|---:|\n")
	p("| getppid calls of `sobsburst` in /metrics | %s (want %s: %s) |\n", thousands(int(got)), thousands(int(want)), verdict(got == want))
	p("| execve calls of `sobsburst` | %s (one per process: %s) |\n", thousands(int(execs)), verdict(execs == float64(o.short)))
	p("| keys of exited processes staying in `call_slots` or `syscall_stats` across dumps 2 s apart, %s s after the last `sobsburst` exited | **%s**, %s with a `sobsburst` pid (%s) |\n", f1(backAfter.Seconds()), thousands(stale), thousands(oursStale), verdict2(stale == 0, "back to baseline", "NOT folded"))
	p("| `call_slots` slots and `syscall_stats` entries in use: before the churn → after (other processes on the host included) | %s → %s (daemon start: %s) |\n",
		thousands(int(callEntries(before))), thousands(int(callEntries(after))), thousands(int(baseStats)))
	p("| `syscall_errors` entries: before → after | %s → %s |\n",
		thousands(int(before.sum("sysobsd_bpf_map_entries", "map", "syscall_errors"))),
		thousands(int(after.sum("sysobsd_bpf_map_entries", "map", "syscall_errors"))))
	p("| processes folded during the churn | %s |\n", thousands(int(after.sum("sysobsd_processes_folded_total")-before.sum("sysobsd_processes_folded_total"))))
	p("| drops | %s |\n", dropsLine(after, before))
	p("| daemon RSS / peak after | %s MiB / %s MiB |\n", mib(rssC), mib(hwmC))
	p("| other tasks (processes, threads) started on the host meanwhile (/proc/stat) | %s; load average %s |\n", thousands(max(churnOthers, 0)), loadavg())
	p("\n")

	// ---- sustained ----
	p("### Sustained syscall rate\n\n")
	logf("sustained run: %d getppid loops for %v", runtime.NumCPU(), o.sustain)
	forks1 := hostForks()
	sr, err := sustained(o, d)
	sustainOthers := hostForks() - forks1 - int64(runtime.NumCPU())
	if err != nil {
		return b.String(), err
	}
	perM := sr.cpu.Seconds() / (float64(sr.calls) / 1e6)
	p("%d getppid loops (one per CPU) for %s s, the daemon scraped every %s s: %s million syscalls, %s million/s.\n\n",
		runtime.NumCPU(), f1(sr.wall.Seconds()), f1(o.scrapeEvery.Seconds()), f1(float64(sr.calls)/1e6), f2(float64(sr.calls)/1e6/sr.wall.Seconds()))
	p("| measure | value |\n|---|---:|\n")
	p("| other tasks (processes, threads) started on the host during both windows (/proc/stat) | %s; load average %s |\n", thousands(max(sustainOthers, 0)), loadavg())
	p("| daemon CPU during the run | %s ms (%s%% of a core) |\n", f1(float64(sr.cpu.Microseconds())/1000), f2(100*sr.cpu.Seconds()/sr.wall.Seconds()))
	p("| daemon CPU per million syscalls | **%s ms** |\n", f2(perM*1000))
	p("| so at 1 million syscalls/s | **%s%% of a core** |\n", f2(100*perM))
	p("| same window, daemon idle (no loops): CPU | %s%% of a core |\n", f2(100*sr.idleCPU.Seconds()/sr.idleWall.Seconds()))
	p("\nThe BPF programs run in the context of the calling thread: their cost is in the ns per syscall above, not in the daemon's CPU. The daemon's own work is per scrape, per fold and per process start and exit, not per syscall.\n\n")
	d.stop()

	if o.bigStats == 0 {
		targets(&b, o, lr, perM, nil, churnExact, stale)
		return b.String(), nil
	}
	// The same long-lived processes with maps large enough for all of them.
	cfg, err := os.CreateTemp("", "sysobsd-scale-*.yml")
	if err != nil {
		return b.String(), err
	}
	defer os.Remove(cfg.Name())
	fmt.Fprintf(cfg, "maps:\n  stats_entries: %d\n  errors_entries: %d\n", o.bigStats, o.bigErrors)
	cfg.Close()
	logf("long-lived processes again, maps of %d and %d entries", o.bigStats, o.bigErrors)
	d2, err := startDaemon(o.sysobsd, "--config.file="+cfg.Name())
	if err != nil {
		return b.String(), err
	}
	defer d2.stop()
	time.Sleep(2 * time.Second)
	base2, err := d2.scrape()
	if err != nil {
		return b.String(), err
	}
	rss2, _ := measure.MemKiB(d2.pid())
	mem2, maps2 := mapMemory(d2.pid())
	title := fmt.Sprintf("`maps: {stats_entries: %d, errors_entries: %d}`", o.bigStats, o.bigErrors)
	var lr2 liveResult
	if err := liveRun(o, d2, base2, rss2, mem2, maps2, title, &b, &lr2); err != nil {
		return b.String(), err
	}
	targets(&b, o, lr, perM, &lr2, churnExact, stale)
	return b.String(), nil
}

// liveRun starts the long-lived processes, times scrapes of d with them
// running, reports, and stops them.
type liveResult struct {
	scrape   time.Duration // median
	rss, hwm int64         // KiB
	exact    bool
	// staleAfterExit: their entries still in the map after they exited.
	staleAfterExit int
}

func liveRun(o options, d *daemon, base *exposition, rss0, mem0 int64, maps0 int, title string, b *strings.Builder, res *liveResult) error {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	baseSlots := base.sum("sysobsd_bpf_map_entries", "map", "call_slots")
	baseStats := base.sum("sysobsd_bpf_map_entries", "map", "syscall_stats")
	baseErrs := base.sum("sysobsd_bpf_map_entries", "map", "syscall_errors")
	p("### %s long-lived processes, %s\n\n", thousands(o.live), title)
	logf("starting %d long-lived processes", o.live)
	forks0 := hostForks()
	live, err := startLive(o)
	if err != nil {
		return err
	}
	defer live.stop()
	logf("%d processes started in %v; they have made their calls", o.live, live.startTook.Round(time.Millisecond))
	time.Sleep(3 * time.Second) // their fork/exec records are in, a fold has run
	var times []time.Duration
	var last *exposition
	var size int
	for i := 0; i < o.scrapes; i++ {
		t0 := time.Now()
		e, n, err := d.scrapeSized()
		if err != nil {
			return err
		}
		times = append(times, time.Since(t0))
		last, size = e, n
		time.Sleep(500 * time.Millisecond)
	}
	rss, hwm := measure.MemKiB(d.pid())
	mem, maps := mapMemory(d.pid())
	gotLive := last.sumPrefix("sysobsd_syscalls_total", "comm", "sobslive", "syscall", "getppid")
	wantLive := float64(o.live * o.perLive)
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	*res = liveResult{scrape: times[len(times)/2], rss: rss, hwm: hwm, exact: gotLive == wantLive}
	p("%s processes, each %d getppid calls and a few other calls, then blocked in read(2), named `sobslive00`–`sobslive99` (100 comm values); started in %s.\n\n",
		thousands(o.live), o.perLive, live.startTook.Round(time.Millisecond))
	p("| measure | value |\n|---|---:|\n")
	p("| scrape time (%d scrapes of /metrics, %s bytes): median (min–max) | **%s ms** (%s – %s) |\n", o.scrapes, thousands(size),
		ms(times[len(times)/2]), ms(times[0]), ms(times[len(times)-1]))
	p("| daemon RSS / peak (VmRSS / VmHWM) | **%s MiB** / %s MiB (idle before: %s MiB) |\n", mib(rss), mib(hwm), mib(rss0))
	p("| kernel map memory (memlock of the daemon's %d maps) | %s MiB (before: %s MiB, %d maps) |\n", maps, mib(mem/1024), mib(mem0/1024), maps0)
	p("| `call_slots` slots in use | %s of %s (before: %s) |\n", thousands(int(last.sum("sysobsd_bpf_map_entries", "map", "call_slots"))),
		thousands(int(last.sum("sysobsd_bpf_map_max_entries", "map", "call_slots"))), thousands(int(baseSlots)))
	p("| `syscall_stats` entries | %s of %s (before: %s) |\n", thousands(int(last.sum("sysobsd_bpf_map_entries", "map", "syscall_stats"))),
		thousands(int(last.sum("sysobsd_bpf_map_max_entries", "map", "syscall_stats"))), thousands(int(baseStats)))
	p("| `syscall_errors` entries | %s of %s (before: %s) |\n", thousands(int(last.sum("sysobsd_bpf_map_entries", "map", "syscall_errors"))),
		thousands(int(last.sum("sysobsd_bpf_map_max_entries", "map", "syscall_errors"))), thousands(int(baseErrs)))
	p("| processes tracked | %s |\n", thousands(int(last.sum("sysobsd_processes_tracked"))))
	p("| getppid calls of `sobslive*` in /metrics | %s (want %s: %s) |\n", thousands(int(gotLive)), thousands(int(wantLive)), verdict(gotLive == wantLive))
	p("| drops (sysobsd_drops_total, all reasons) | %s |\n", dropsLine(last, base))
	if o.trickle > 0 {
		tr, err := trickle(o, d)
		if err != nil {
			return err
		}
		p("| daemon CPU while %d short-lived processes a second start and exit (%s s, no scrapes) | **%s%% of a core** (%d processes; map reads: %s by keys, %s full) |\n",
			o.trickleRate, f1(tr.wall.Seconds()), f2(100*tr.cpu.Seconds()/tr.wall.Seconds()), tr.processes, thousands(int(tr.byKeys)), thousands(int(tr.full)))
	}
	p("\n")
	logf("stopping the long-lived processes")
	beforeExit, err := d.scrape()
	if err != nil {
		return err
	}
	liveOthers := hostForks() - forks0 - int64(o.live)
	if err := live.stop(); err != nil {
		return err
	}
	// They exit at once: their exit records come in a burst, and their
	// entries must leave the kernel maps.
	pids := map[int]bool{}
	for _, pid := range live.pids {
		pids[pid] = true
	}
	stale, oursStale, waited, err := staleEntries(d.pid(), pids, 30*time.Second)
	if err != nil {
		return err
	}
	after, err := d.scrape()
	if err != nil {
		return err
	}
	res.staleAfterExit = stale
	exitOthers := hostForks() - forks0 - int64(o.live) - liveOthers
	p("All %s exit at once (stdin closed):\n\n| measure | value |\n|---|---:|\n", thousands(o.live))
	p("| other tasks (processes, threads) started on the host while they ran and exited (/proc/stat) | %s; load average %s |\n", thousands(max(liveOthers+exitOthers, 0)), loadavg())
	p("| keys of exited processes staying in `call_slots` or `syscall_stats` across dumps 2 s apart, %s s after the last exited | **%s**, %s with a pid of theirs (%s) |\n", f1(waited.Seconds()), thousands(stale), thousands(oursStale), verdict2(stale == 0, "all folded", "NOT folded"))
	p("| `call_slots` slots and `syscall_stats` entries in use now | %s |\n", thousands(int(callEntries(after))))
	p("| processes folded | %s |\n", thousands(int(after.sum("sysobsd_processes_folded_total")-beforeExit.sum("sysobsd_processes_folded_total"))))
	p("| drops while they exited | %s |\n", dropsLine(after, beforeExit))
	p("\n")
	return nil
}

type trickleResult struct {
	wall, cpu    time.Duration
	processes    int
	byKeys, full float64 // sysobsd_bpf_map_reads_total meanwhile
}

// trickle starts o.trickleRate short-lived processes a second for
// o.trickle, as a host whose programs come and go (cron jobs, health
// checks): every second a process exits, and the daemon folds.
func trickle(o options, d *daemon) (trickleResult, error) {
	var r trickleResult
	b, err := newBurster(o)
	if err != nil {
		return r, err
	}
	defer b.close()
	before, err := d.scrape()
	if err != nil {
		return r, err
	}
	logf("trickle: %d short-lived processes a second for %v", o.trickleRate, o.trickle)
	tick := time.NewTicker(time.Second / time.Duration(o.trickleRate))
	defer tick.Stop()
	cpu0, t0 := cpuNs(d.pid()), time.Now()
	for time.Since(t0) < o.trickle {
		<-tick.C
		if _, err := b.run(); err != nil {
			return r, err
		}
		r.processes++
	}
	r.cpu, r.wall = time.Duration(cpuNs(d.pid())-cpu0), time.Since(t0)
	after, err := d.scrape()
	if err != nil {
		return r, err
	}
	r.byKeys = after.sum("sysobsd_bpf_map_reads_total", "how", "by_keys") - before.sum("sysobsd_bpf_map_reads_total", "how", "by_keys")
	// Less the scrape that ended the window.
	r.full = after.sum("sysobsd_bpf_map_reads_total", "how", "full") - before.sum("sysobsd_bpf_map_reads_total", "how", "full") - 1
	return r, nil
}

// targets judges the scale targets; with fewer processes than the targets
// name (a smoke run) those are not judged.
func targets(b *strings.Builder, o options, lr liveResult, perM float64, big *liveResult, churnExact bool, churnStale int) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	judge := func(ok, judged bool) string {
		switch {
		case !judged:
			return "not judged (a smoke run's smaller counts)"
		case ok:
			return "met"
		}
		return "not met"
	}
	full := o.live >= 10000
	p("Scale targets, from this run:\n\n| target | measured | |\n|---|---:|---|\n")
	p("| daemon RSS ≤ 64 MiB with %s live processes (default config) | %s MiB, peak %s MiB | %s |\n", thousands(o.live), mib(lr.rss), mib(lr.hwm), judge(lr.hwm <= 64*1024, full))
	if big != nil {
		p("| same, maps sized for them | %s MiB, peak %s MiB | %s |\n", mib(big.rss), mib(big.hwm), judge(big.hwm <= 64*1024, full))
	}
	p("| a scrape with %s processes ≤ 200 ms (default config) | %s ms | %s |\n", thousands(o.live), ms(lr.scrape), judge(lr.scrape <= 200*time.Millisecond, full))
	if big != nil {
		p("| same, maps sized for them | %s ms | %s |\n", ms(big.scrape), judge(big.scrape <= 200*time.Millisecond, full))
	}
	p("| exact per-comm totals with %s live processes (default config) | %s | %s |\n", thousands(o.live), verdict(lr.exact), judge(lr.exact, full))
	p("| entries of %s exited processes all folded (default config) | %s left | %s |\n", thousands(o.live), thousands(lr.staleAfterExit), judge(lr.staleAfterExit == 0, true))
	p("| %s short-lived processes: totals exact, entries all folded | %s; %s left | %s |\n", thousands(o.short), verdict(churnExact), thousands(churnStale), judge(churnExact && churnStale == 0, o.short >= 100000))
	p("| daemon CPU ≤ 1%% of a core at 1M syscalls/s | %s%% | %s |\n", f2(100*perM), judge(perM <= 0.01, true))
	p("\n")
}

func verdict2(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return "**" + no + "**"
}

func verdict(ok bool) string {
	if ok {
		return "exact"
	}
	return "**NOT exact**"
}

func dropsLine(now, before *exposition) string {
	var parts []string
	for _, s := range now.series {
		if s.name != "sysobsd_drops_total" {
			continue
		}
		d := s.value - before.sum("sysobsd_drops_total", "reason", s.labels["reason"])
		if d != 0 {
			parts = append(parts, fmt.Sprintf("%s +%s", s.labels["reason"], thousands(int(d))))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// ---- the daemon ----

type daemon struct {
	cmd  *exec.Cmd
	url  string
	done chan error
	log  string
}

func startDaemon(bin string, args ...string) (*daemon, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	logFile, err := os.CreateTemp("", "sysobsd-scale-*.log")
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, append([]string{"--web.listen-address=" + addr, "--log.level=warn"}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{cmd: cmd, url: "http://" + addr + "/metrics", done: make(chan error, 1), log: logFile.Name()}
	go func() { d.done <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			b, _ := os.ReadFile(d.log)
			return nil, fmt.Errorf("sysobsd exited at start (%v): %s", err, b)
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := d.scrape(); err == nil {
			return d, nil
		}
	}
	d.stop()
	return nil, errors.New("sysobsd did not answer on /metrics within 60 s")
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
	os.Remove(d.log)
}

var client = &http.Client{Timeout: 30 * time.Second}

func (d *daemon) scrape() (*exposition, error) {
	e, _, err := d.scrapeSized()
	return e, err
}

func (d *daemon) scrapeSized() (*exposition, int, error) {
	resp, err := client.Get(d.url)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != 200 {
		return nil, 0, fmt.Errorf("GET %s: %s", d.url, resp.Status)
	}
	return parseExposition(string(body)), len(body), nil
}

// ---- long-lived processes ----

type liveSet struct {
	pids      []int
	stdin     *os.File // write end: closing it ends them all
	startTook time.Duration
	stopped   bool
}

func startLive(o options) (*liveSet, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	ls := &liveSet{stdin: inW}
	// Count the ready bytes while they are started: the pipe must not fill.
	var ready atomic.Int64
	readDone := make(chan error, 1)
	go func() {
		r := bufio.NewReader(outR)
		for {
			if _, err := r.ReadByte(); err != nil {
				readDone <- err
				return
			}
			if ready.Add(1) == int64(o.live) {
				readDone <- nil
				return
			}
		}
	}()
	t0 := time.Now()
	attr := &syscall.ProcAttr{Files: []uintptr{inR.Fd(), outW.Fd(), devnull.Fd()}}
	for i := 0; i < o.live; i++ {
		name := fmt.Sprintf("sobslive%02d", i%100)
		pid, err := syscall.ForkExec(o.loop, []string{o.loop, "hold", name, strconv.Itoa(o.perLive)}, attr)
		if err != nil {
			inR.Close()
			outW.Close()
			ls.stop()
			return nil, fmt.Errorf("start long-lived process %d: %w", i, err)
		}
		ls.pids = append(ls.pids, pid)
	}
	inR.Close()
	outW.Close()
	select {
	case err := <-readDone:
		if err != nil {
			ls.stop()
			return nil, fmt.Errorf("long-lived processes: %d of %d ready: %v", ready.Load(), o.live, err)
		}
	case <-time.After(120 * time.Second):
		ls.stop()
		return nil, fmt.Errorf("long-lived processes: only %d of %d ready after 120 s", ready.Load(), o.live)
	}
	ls.startTook = time.Since(t0)
	return ls, nil
}

func (ls *liveSet) stop() error {
	if ls.stopped {
		return nil
	}
	ls.stopped = true
	ls.stdin.Close()
	deadline := time.Now().Add(60 * time.Second)
	var failed int
	for _, pid := range ls.pids {
		for {
			var ws syscall.WaitStatus
			n, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if n == pid || err != nil {
				if err == nil && !(ws.Exited() && ws.ExitStatus() == 0) {
					failed++
				}
				break
			}
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				syscall.Wait4(pid, &ws, 0, nil)
				failed++
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d long-lived processes did not exit cleanly", failed)
	}
	return nil
}

// ---- short-lived processes ----

// burster runs short-lived processes: `loop burst N` executed as
// `sobsburst` (the comm of an exec'd process is the name it was executed
// under).
type burster struct {
	dir     string
	devnull *os.File
	argv    []string
	attr    *syscall.ProcAttr
}

func newBurster(o options) (*burster, error) {
	abs, err := filepath.Abs(o.loop)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sysobsd-scale-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "sobsburst")
	if err := os.Symlink(abs, path); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &burster{
		dir:     dir,
		devnull: devnull,
		argv:    []string{path, "burst", strconv.Itoa(o.perShort)},
		attr:    &syscall.ProcAttr{Files: []uintptr{devnull.Fd(), devnull.Fd(), devnull.Fd()}},
	}, nil
}

func (b *burster) close() {
	b.devnull.Close()
	os.RemoveAll(b.dir)
}

// run starts one process and waits for it; it returns its pid.
func (b *burster) run() (int, error) {
	pid, err := syscall.ForkExec(b.argv[0], b.argv, b.attr)
	if err != nil {
		return 0, err
	}
	var ws syscall.WaitStatus
	for {
		_, err = syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	if err == nil && !(ws.Exited() && ws.ExitStatus() == 0) {
		err = fmt.Errorf("exit status %v", ws)
	}
	return pid, err
}

func churn(o options) (time.Duration, map[int]bool, error) {
	pids := map[int]bool{}
	b, err := newBurster(o)
	if err != nil {
		return 0, nil, err
	}
	defer b.close()
	var next atomic.Int64
	var failures atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < o.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(o.short) {
				pid, err := b.run()
				if pid != 0 {
					mu.Lock()
					pids[pid] = true
					mu.Unlock()
				}
				if err != nil {
					failures.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(t0)
	if n := failures.Load(); n > 0 {
		return took, pids, fmt.Errorf("%d of %d short-lived processes failed, the first: %v", n, o.short, firstErr)
	}
	return took, pids, nil
}

type entryKey struct{ tgid, execID, nr, abi int }

// deadEntries lists the keys in a daemon's call_slots (live slots) and
// syscall_stats maps whose process no longer runs.
func deadEntries(daemonPID int) (map[entryKey]bool, error) {
	ids := map[int]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", daemonPID))
	for _, fd := range fds {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", daemonPID, fd.Name()))
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "map_id:"); ok {
				id, _ := strconv.Atoi(strings.TrimSpace(v))
				ids[id] = true
			}
		}
	}
	out, err := exec.Command("bpftool", "map", "show", "-j").Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool map show: %w", err)
	}
	var maps []struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(out, &maps); err != nil {
		return nil, err
	}
	// struct syscall_key: syscall_stats' keys; in call_slots' values, the
	// same fields of a struct errno_key (an error slot's errno left out:
	// its process is what tells it stale).
	type key struct {
		TGID   int `json:"tgid"`
		ExecID int `json:"exec_id"`
		Nr     int `json:"nr"`
		Abi    int `json:"abi"`
	}
	var keys []key
	for _, name := range []string{"syscall_stats", "call_slots"} {
		id := 0
		for _, m := range maps {
			if m.Name == name && ids[m.ID] {
				id = m.ID
			}
		}
		if id == 0 {
			return nil, fmt.Errorf("the daemon's %s map not found", name)
		}
		out, err = exec.Command("bpftool", "map", "dump", "id", strconv.Itoa(id), "-j").Output()
		if err != nil {
			return nil, fmt.Errorf("bpftool map dump %s: %w", name, err)
		}
		// syscall_stats' keys are the keys; call_slots' are indexes, its
		// values hold the keys.
		var entries []struct {
			Formatted struct {
				Key   json.RawMessage `json:"key"`
				Value json.RawMessage `json:"value"`
			} `json:"formatted"`
		}
		if err := json.Unmarshal(out, &entries); err != nil {
			return nil, fmt.Errorf("bpftool map dump %s: %w", name, err)
		}
		for _, e := range entries {
			var slot struct {
				State int `json:"state"`
				Key   key `json:"key"`
			}
			var err error
			if name == "call_slots" {
				err = json.Unmarshal(e.Formatted.Value, &slot)
			} else {
				slot.State = loader.CallSlotLive
				err = json.Unmarshal(e.Formatted.Key, &slot.Key)
			}
			if err != nil {
				return nil, fmt.Errorf("bpftool map dump %s: %w", name, err)
			}
			if slot.State == loader.CallSlotLive {
				keys = append(keys, slot.Key)
			}
		}
	}
	dead := map[entryKey]bool{}
	alive := map[int]bool{}
	for _, k := range keys {
		isAlive, known := alive[k.TGID]
		if !known {
			_, err := os.Stat(fmt.Sprintf("/proc/%d", k.TGID))
			isAlive = err == nil
			alive[k.TGID] = isAlive
		}
		if !isAlive {
			dead[entryKey{k.TGID, k.ExecID, k.Nr, k.Abi}] = true
		}
	}
	return dead, nil
}

// staleEntries waits, up to limit, until no entry of an exited process
// stays in the daemon's syscall_stats map across two dumps 2 s apart (two
// fold intervals: an entry of a process that has just exited may be there
// once). It returns such persisting entries (0 when all were folded), how
// many of them had a pid in ours (pids are reused: a match may be another
// process's), and how long it waited.
func staleEntries(daemonPID int, ours map[int]bool, limit time.Duration) (stale, oursStale int, waited time.Duration, err error) {
	t0 := time.Now()
	var history []map[entryKey]bool
	for {
		time.Sleep(time.Second)
		dead, err := deadEntries(daemonPID)
		if err != nil {
			return 0, 0, time.Since(t0), err
		}
		history = append(history, dead)
		if len(history) < 3 {
			continue
		}
		stale, oursStale = 0, 0
		for k := range history[len(history)-3] {
			if dead[k] {
				stale++
				if ours[k.tgid] {
					oursStale++
				}
			}
		}
		if stale == 0 || time.Since(t0) > limit {
			return stale, oursStale, time.Since(t0), nil
		}
	}
}

// ---- sustained rate ----

type sustainedResult struct {
	wall, cpu         time.Duration
	calls             int64
	idleWall, idleCPU time.Duration
}

func sustained(o options, d *daemon) (sustainedResult, error) {
	var r sustainedResult
	stopScrapes := make(chan struct{})
	scrapesDone := make(chan struct{})
	scraper := func() {
		defer close(scrapesDone)
		for {
			select {
			case <-stopScrapes:
				return
			case <-time.After(o.scrapeEvery):
				d.scrape()
			}
		}
	}

	// The same window with no loops: what the daemon costs anyway.
	go scraper()
	c0, t0 := cpuNs(d.pid()), time.Now()
	time.Sleep(o.sustain)
	close(stopScrapes)
	<-scrapesDone
	r.idleWall, r.idleCPU = time.Since(t0), time.Duration(cpuNs(d.pid())-c0)

	stopScrapes, scrapesDone = make(chan struct{}), make(chan struct{})
	go scraper()
	c0, t0 = cpuNs(d.pid()), time.Now()
	n := runtime.NumCPU()
	outs := make([]strings.Builder, n)
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		cmds[i] = exec.Command(o.loop, "spin", strconv.FormatFloat(o.sustain.Seconds(), 'f', 3, 64))
		cmds[i].Stdout = &outs[i]
		if err := cmds[i].Start(); err != nil {
			return r, err
		}
	}
	var err error
	for i, c := range cmds {
		if werr := c.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("spin loop %d: %w", i, werr)
		}
	}
	r.wall = time.Since(t0)
	r.cpu = time.Duration(cpuNs(d.pid()) - c0)
	close(stopScrapes)
	<-scrapesDone
	if err != nil {
		return r, err
	}
	for _, out := range outs {
		for _, f := range strings.Fields(out.String()) {
			if v, ok := strings.CutPrefix(f, "ops="); ok {
				k, _ := strconv.ParseInt(v, 10, 64)
				r.calls += k
			}
		}
	}
	if r.calls == 0 {
		return r, errors.New("the spin loops reported no calls")
	}
	return r, nil
}

// ---- /proc ----

// hostForks is the number of processes and threads created on the host
// since boot (/proc/stat "processes").
func hostForks() int64 {
	b, _ := os.ReadFile("/proc/stat")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "processes "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// cpuNs sums the CPU time of a process's threads (ns, from schedstat).
func cpuNs(pid int) int64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			sum += v
		}
	}
	return sum
}

// mapMemory sums the memlock the kernel charges for the BPF maps a process
// holds open (from /proc/PID/fdinfo), each map once.
func mapMemory(pid int) (bytes int64, maps int) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
	if err != nil {
		return 0, 0
	}
	seen := map[string]bool{}
	for _, fd := range fds {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		var id string
		var memlock int64
		isMap := false
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimSpace(v)
			switch k {
			case "map_type":
				isMap = true
			case "map_id":
				id = v
			case "memlock":
				memlock, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if isMap && id != "" && !seen[id] {
			seen[id] = true
			bytes += memlock
			maps++
		}
	}
	return bytes, maps
}

// ---- the exposition format, enough of it ----

type series struct {
	name   string
	labels map[string]string
	value  float64
}

type exposition struct{ series []series }

func parseExposition(text string) *exposition {
	e := &exposition{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		head := line[:i]
		s := series{name: head, labels: map[string]string{}, value: v}
		if j := strings.IndexByte(head, '{'); j >= 0 {
			s.name = head[:j]
			rest := strings.TrimSuffix(head[j+1:], "}")
			for rest != "" {
				k, after, ok := strings.Cut(rest, `="`)
				if !ok {
					break
				}
				// Values here hold no escaped quotes.
				val, after2, _ := strings.Cut(after, `"`)
				s.labels[strings.TrimLeft(k, ",")] = val
				rest = strings.TrimPrefix(after2, ",")
			}
		}
		e.series = append(e.series, s)
	}
	return e
}

// callEntries is the per-process counters in use: call_slots' slots (of
// calls and of errors) and syscall_stats' entries.
func callEntries(e *exposition) float64 {
	return e.sum("sysobsd_bpf_map_entries", "map", "call_slots") + e.sum("sysobsd_bpf_map_entries", "map", "syscall_stats")
}

// sum adds the series of a metric whose labels equal the given pairs.
func (e *exposition) sum(name string, kv ...string) float64 {
	return e.match(name, false, kv...)
}

// sumPrefix is sum with the first label value matched as a prefix.
func (e *exposition) sumPrefix(name string, kv ...string) float64 {
	return e.match(name, true, kv...)
}

func (e *exposition) match(name string, prefix bool, kv ...string) float64 {
	var total float64
next:
	for _, s := range e.series {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v := s.labels[kv[i]]
			if i == 0 && prefix {
				if !strings.HasPrefix(v, kv[i+1]) {
					continue next
				}
			} else if v != kv[i+1] {
				continue next
			}
		}
		total += s.value
	}
	return total
}

// ---- formatting ----

func thousands[T int | int64](n T) string {
	return measure.GroupThousands(strconv.FormatInt(int64(n), 10))
}

func ms(d time.Duration) string { return f1(float64(d.Microseconds()) / 1000) }
func mib(kib int64) string      { return f1(float64(kib) / 1024) }
func f1(x float64) string       { return strconv.FormatFloat(x, 'f', 1, 64) }
func f2(x float64) string       { return strconv.FormatFloat(x, 'f', 2, 64) }
