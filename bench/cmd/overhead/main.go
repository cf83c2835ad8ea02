// Command overhead measures what each tracer adds per syscall: paired,
// interleaved runs of bench/loop's loops, untraced and under each tracer,
// in the order U V1 U V2 U ... Vk U (the variant order rotates each round).
// Each traced run is compared with the mean of the untraced runs just before
// and after it, so slow drift of the machine cancels. Prints a markdown
// report; bench/run.sh builds the binaries and calls it.
package main

import (
	"bufio"
	"context"
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
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sysobsd/sysobsd/bench/internal/measure"

	"golang.org/x/sys/unix"
)

// A workload is one mode of bench/loop.
type workload struct {
	name  string // loop's mode
	title string
	iters int64
}

// A variant is what is attached while the loops run.
type variant struct {
	name  string
	title string
	// system: started before the loops, stopped after them; it sees every
	// process on the host.
	system []string
	env    []string
	ready  string // a line the tracer prints once attached; "" with http
	http   bool   // ready when GET /metrics answers 200
	stop   syscall.Signal
	// wrap: the loop runs as this command's child (strace, perf trace).
	wrap []string
	// div divides the iterations (for tracers that stop at every call).
	div  int64
	need string // binary that must exist
	skip string // why the variant is not run, when it is not
}

type options struct {
	loop, floor, sysobsd, btScript string
	rounds                         int
	settle                         time.Duration
	scale                          float64
	variants                       string
	straceDiv, perfDiv             int64
	quietWait                      time.Duration
	out, rawOut, workDir           string
	progStats                      bool
	// alt are other sysobsd builds to measure beside the default one
	// (variants sysobsd-NAME), for side-by-side trials of a change.
	alt string
	// progStatsWrite runs the 1-byte write loop too for -prog-stats.
	progStatsWrite bool
	// progStatsRounds is how many times -prog-stats measures each tracer.
	progStatsRounds int
}

type sample struct {
	NsPerOp   float64 `json:"ns_per_op"`
	Ops       int64   `json:"ops"`
	Syscalls  int64   `json:"syscalls"`
	WallNs    int64   `json:"wall_ns"`
	CPUNs     int64   `json:"cpu_ns"`
	TracerCPU float64 `json:"tracer_cpu_ns"`  // tracer's CPU time during the run
	TracerRSS int64   `json:"tracer_rss_kib"` // VmRSS at the end of the run
	TracerHWM int64   `json:"tracer_hwm_kib"` // VmHWM (peak) at the end of the run
	Foreign   int     `json:"foreign_links"`  // other programs on sys_enter/sys_exit
	// ProcWallNs is the loop's (or the wrapping tracer's) lifetime as the
	// harness saw it: the denominator of the tracer's CPU share.
	ProcWallNs int64 `json:"proc_wall_ns"`
}

type run struct {
	Round    int    `json:"round"`
	Variant  string `json:"variant"`
	Workload string `json:"workload"`
	sample
}

func main() {
	var o options
	flag.StringVar(&o.loop, "loop", "bench/.build/loop", "bench/loop binary")
	flag.StringVar(&o.floor, "floor", "bench/.build/floor", "bench/cmd/floor binary")
	flag.StringVar(&o.sysobsd, "sysobsd", "build/sysobsd", "sysobsd binary")
	flag.StringVar(&o.btScript, "bpftrace-script", "bench/tracers/sysobsd.bt", "the bpftrace variant's script")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds (each runs every variant once)")
	flag.DurationVar(&o.settle, "settle", 500*time.Millisecond, "pause after a tracer is ready")
	flag.Float64Var(&o.scale, "scale", 1, "multiplies every loop's iterations")
	flag.StringVar(&o.variants, "variants", "", "space- or comma-separated variants to run (default: all)")
	flag.Int64Var(&o.straceDiv, "strace-div", 200, "strace runs this many times fewer iterations")
	flag.Int64Var(&o.perfDiv, "perf-div", 20, "perf trace runs this many times fewer iterations")
	flag.DurationVar(&o.quietWait, "quiet-wait", 30*time.Second, "before each round, wait up to this long for other programs on sys_enter/sys_exit to go")
	flag.StringVar(&o.out, "out", "", "write the markdown report here (default stdout)")
	flag.BoolVar(&o.progStats, "prog-stats", true, "after the rounds, measure each BPF program's own run time (kernel.bpf_stats_enabled)")
	flag.StringVar(&o.rawOut, "raw", "", "write every run as JSON here")
	flag.StringVar(&o.workDir, "work", "", "scratch directory (default: a new temporary one)")
	flag.BoolVar(&o.progStatsWrite, "prog-stats-write", false, "with -prog-stats, also the 1-byte write loop (a call that moves bytes)")
	flag.IntVar(&o.progStatsRounds, "prog-stats-rounds", 5, "with -prog-stats, measure each tracer this many times, in turn, and report medians")
	flag.StringVar(&o.alt, "alt", "", "other sysobsd builds to run with the default config beside -sysobsd, as NAME=PATH,...: variants sysobsd-NAME")
	flag.Parse()
	if err := mainErr(o); err != nil {
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(1)
	}
}

func workloads(scale float64) []workload {
	n := func(v float64) int64 { return max(int64(v*scale), 1000) }
	return []workload{
		{"getppid", "getppid", n(3e6)},
		{"write", "1-byte write to /dev/null", n(2e6)},
		{"mutex", "4 threads handing a futex lock round in turn", n(1.5e5)},
	}
}

func allVariants(o options, port int, work string) []variant {
	noLatency := filepath.Join(work, "no-latency.yml")
	listen := fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port)
	var alts []variant
	for _, spec := range strings.Split(o.alt, ",") {
		name, path, ok := strings.Cut(spec, "=")
		if !ok {
			continue
		}
		alts = append(alts, variant{name: "sysobsd-" + name, title: measure.BuildTitle(name, "sysobsd") + " (" + path + ")",
			system: []string{path, listen, "--log.level=warn"}, http: true, stop: syscall.SIGTERM})
	}
	return append(alts, []variant{
		{name: "floor", title: measure.Titles["floor"],
			system: []string{o.floor}, ready: "attached", stop: syscall.SIGTERM},
		{name: "floor-exit", title: measure.Titles["floor-exit"],
			system: []string{o.floor, "--exit-only"}, ready: "attached", stop: syscall.SIGTERM},
		{name: "floor-clock", title: measure.Titles["floor-clock"],
			system: []string{o.floor, "--clock"}, ready: "attached", stop: syscall.SIGTERM},
		{name: "sysobsd", title: measure.Titles["sysobsd"],
			system: []string{o.sysobsd, listen, "--log.level=warn"}, http: true, stop: syscall.SIGTERM},
		{name: "sysobsd-nolat", title: measure.Titles["sysobsd-nolat"],
			system: []string{o.sysobsd, listen, "--log.level=warn", "--config.file=" + noLatency}, http: true, stop: syscall.SIGTERM},
		{name: "sysobsd-exact", title: measure.Titles["sysobsd-exact"],
			system: []string{o.sysobsd, listen, "--log.level=warn", "--config.file=" + filepath.Join(work, "exact.yml")}, http: true, stop: syscall.SIGTERM},
		{name: "sysobsd-notable", title: "sysobsd, notable events on (`events.enabled: true`)",
			system: []string{o.sysobsd, listen, "--log.level=warn", "--config.file=" + filepath.Join(work, "events.yml")}, http: true, stop: syscall.SIGTERM},
		{name: "sysobsd-stat", title: "`sysobsd stat --`",
			wrap: []string{o.sysobsd, "stat", "-o", filepath.Join(work, "sysobsd-stat.out"), "--"}},
		{name: "bpftrace", title: "bpftrace script doing what sysobsd does",
			system: []string{"bpftrace", o.btScript}, env: []string{"BPFTRACE_MAP_KEYS_MAX=65536"},
			ready: "sysobsd-bench: ready", stop: syscall.SIGINT, need: "bpftrace"},
		{name: "syscount", title: "libbpf-tools `syscount -L`",
			system: []string{"stdbuf", "-oL", "syscount", "-L"}, ready: "Tracing syscalls", stop: syscall.SIGINT, need: "syscount"},
		{name: "strace", title: "`strace -c -f`",
			wrap: []string{"strace", "-c", "-f", "-o", filepath.Join(work, "strace.out"), "--"},
			div:  o.straceDiv, need: "strace"},
		{name: "perf", title: "`perf trace -s`",
			wrap: []string{"perf", "trace", "-s", "-o", filepath.Join(work, "perf.out"), "--"},
			div:  o.perfDiv, need: "perf"},
	}...)
}

func mainErr(o options) error {
	work := o.workDir
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "sysobsd-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	if err := os.WriteFile(filepath.Join(work, "events.yml"), []byte("events:\n  enabled: true\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(work, "exact.yml"), []byte("latency: true\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(work, "no-latency.yml"), []byte("latency: false\n"), 0o644); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, v := range strings.FieldsFunc(o.variants, func(r rune) bool { return r == ' ' || r == ',' }) {
		want[v] = true
	}
	var vars []variant
	var skipped []variant
	for _, v := range allVariants(o, port, work) {
		switch {
		case len(want) > 0 && !want[v.name]:
			continue
		case v.skip != "":
		case v.need != "":
			if _, err := exec.LookPath(v.need); err != nil {
				v.skip = fmt.Sprintf("`%s` not installed", v.need)
			}
		}
		if v.skip == "" && v.name == "perf" {
			if err := probePerfTrace(o.loop); err != nil {
				v.skip = "`perf trace` does not run here: " + err.Error()
			}
		}
		if v.skip != "" {
			skipped = append(skipped, v)
			continue
		}
		vars = append(vars, v)
	}
	wls := workloads(o.scale)

	var runs []run
	for r := 0; r < o.rounds; r++ {
		waitQuiet(o.quietWait)
		// Rotate the order so no variant always runs first or last.
		order := make([]variant, len(vars))
		for i := range vars {
			order[i] = vars[(i+r)%len(vars)]
		}
		rs, err := runBase(o, r, wls)
		if err != nil {
			return err
		}
		runs = append(runs, rs...)
		for _, v := range order {
			logf("round %d/%d: %s", r+1, o.rounds, v.name)
			rs, err := runVariant(o, r, v, wls, work)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, v.name, err)
			}
			runs = append(runs, rs...)
			if rs, err = runBase(o, r, wls); err != nil {
				return err
			}
			runs = append(runs, rs...)
		}
	}
	if o.rawOut != "" {
		b, _ := json.MarshalIndent(runs, "", "  ")
		if err := os.WriteFile(o.rawOut, b, 0o644); err != nil {
			return err
		}
	}
	report := renderReport(o, vars, skipped, wls, runs)
	if o.progStats {
		report += progStatsReport(o, vars, work)
	}
	if o.out == "" {
		_, err = os.Stdout.WriteString(report)
		return err
	}
	return os.WriteFile(o.out, []byte(report), 0o644)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// probePerfTrace runs perf trace on a tiny loop: perf can be installed and
// still fail (no tracefs, no syscall tracepoints, a perf/kernel mismatch).
func probePerfTrace(loop string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "perf", "trace", "-s", "-o", os.DevNull, "--", loop, "getppid", "1000").CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.IndexByte(msg, '\n'); i > 0 {
			msg = msg[:i]
		}
		return fmt.Errorf("%v: %s", err, msg)
	}
	return nil
}

// foreignLinks counts BPF links on sys_enter/sys_exit (tp_btf and raw
// tracepoints) that are not ours: another tracer on the host makes every
// syscall slower, the untraced runs included.
func foreignLinks(ours int) int {
	out, err := exec.Command("bpftool", "link", "show", "-j").Output()
	if err != nil {
		return -1
	}
	var links []struct {
		Type   string `json:"type"`
		TpName string `json:"tp_name"`
	}
	if json.Unmarshal(out, &links) != nil {
		return -1
	}
	n := 0
	for _, l := range links {
		if l.Type == "raw_tracepoint" && (l.TpName == "sys_enter" || l.TpName == "sys_exit") {
			n++
		}
	}
	return n - ours
}

func waitQuiet(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for foreignLinks(0) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	if n := foreignLinks(0); n > 0 {
		logf("warning: %d other BPF programs are attached to sys_enter/sys_exit; the runs of this round pay for them too", n)
	}
}

func runBase(o options, round int, wls []workload) ([]run, error) {
	var runs []run
	foreign := foreignLinks(0)
	for _, w := range wls {
		s, err := runLoop(o.loop, nil, w.name, w.iters, nil)
		if err != nil {
			return nil, fmt.Errorf("untraced %s: %w", w.name, err)
		}
		s.Foreign = foreign
		runs = append(runs, run{round, "untraced", w.name, s})
	}
	return runs, nil
}

func runVariant(o options, round int, v variant, wls []workload, work string) ([]run, error) {
	var runs []run
	if v.wrap != nil {
		foreign := foreignLinks(0)
		for _, w := range wls {
			iters := max(w.iters/max(v.div, 1), 1000)
			s, err := runLoop(o.loop, v.wrap, w.name, iters, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", w.name, err)
			}
			s.Foreign = foreign
			runs = append(runs, run{round, v.name, w.name, s})
		}
		return runs, nil
	}
	t, err := startTracer(v, work)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	time.Sleep(o.settle)
	ours := 2
	if v.name == "floor-exit" || v.name == "sysobsd-nolat" {
		ours = 1
	}
	if v.name == "bpftrace" || v.name == "syscount" {
		ours = 0 // perf-event or plain raw tracepoint attachments: not all show as links
	}
	foreign := max(foreignLinks(ours), 0)
	for _, w := range wls {
		s, err := runLoop(o.loop, nil, w.name, w.iters, t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w.name, err)
		}
		s.Foreign = foreign
		runs = append(runs, run{round, v.name, w.name, s})
	}
	if err := t.stop(); err != nil {
		return nil, err
	}
	return runs, nil
}

type tracer struct {
	cmd     *exec.Cmd
	sig     syscall.Signal
	done    chan error
	log     string
	stopped bool
}

func startTracer(v variant, work string) (*tracer, error) {
	logPath := filepath.Join(work, v.name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(v.system[0], v.system[1:]...)
	cmd.Env = append(os.Environ(), v.env...)
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	var lines chan string
	if v.ready != "" {
		pr, pw := io.Pipe()
		cmd.Stdout = pw
		lines = make(chan string, 64)
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				select {
				case lines <- sc.Text():
				default:
				}
				fmt.Fprintln(logFile, sc.Text())
			}
			io.Copy(io.Discard, pr)
		}()
		// stderr too: syscount prints its banner there on some versions.
		cmd.Stderr = pw
	} else {
		cmd.Stdout = logFile
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t := &tracer{cmd: cmd, sig: v.stop, done: make(chan error, 1), log: logPath}
	go func() { t.done <- cmd.Wait() }()
	deadline := time.After(60 * time.Second)
	fail := func(why string) (*tracer, error) {
		t.stop()
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%s did not get ready: %s; its output:\n%s", v.name, why, tail(string(b), 2000))
	}
	if v.http {
		url := ""
		for _, a := range v.system {
			if p, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
				url = "http://" + p + "/metrics"
			}
		}
		client := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case err := <-t.done:
				t.done <- err
				return fail(fmt.Sprintf("exited (%v)", err))
			case <-deadline:
				return fail("timeout")
			case <-time.After(100 * time.Millisecond):
			}
			resp, err := client.Get(url)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return t, nil
				}
			}
		}
	}
	for {
		select {
		case line := <-lines:
			if strings.Contains(line, v.ready) {
				return t, nil
			}
		case err := <-t.done:
			t.done <- err
			return fail(fmt.Sprintf("exited (%v)", err))
		case <-deadline:
			return fail("timeout")
		}
	}
}

func (t *tracer) stop() error {
	if t.stopped {
		return nil
	}
	t.stopped = true
	t.cmd.Process.Signal(t.sig)
	select {
	case <-t.done:
		return nil
	case <-time.After(60 * time.Second):
		t.cmd.Process.Kill()
		<-t.done
		return fmt.Errorf("%s did not stop within 60 s of %v; killed", t.cmd.Path, t.sig)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// runLoop runs one loop, wrapped by wrap if set, and measures the tracer:
// the system-wide tracer t, or the wrapping command itself.
func runLoop(loop string, wrap []string, mode string, iters int64, t *tracer) (sample, error) {
	args := append(append([]string{}, wrap...), loop, mode, strconv.FormatInt(iters, 10))
	cmd := exec.Command(args[0], args[1:]...)
	var stdout strings.Builder
	var stderr strings.Builder
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	var s sample
	var cpu0 float64
	if t != nil {
		cpu0 = cpuNs(t.cmd.Process.Pid)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return s, err
	}
	if wrap != nil {
		// The wrapping tracer is the child: poll its memory while it runs,
		// and read its CPU time once it has exited but is not reaped yet.
		pid := cmd.Process.Pid
		exited := make(chan struct{})
		go func() {
			var info unix.Siginfo
			for unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
			}
			close(exited)
		}()
	poll:
		for {
			if rss, hwm := measure.MemKiB(pid); hwm > 0 {
				s.TracerRSS, s.TracerHWM = rss, hwm
			}
			select {
			case <-exited:
				break poll
			case <-time.After(20 * time.Millisecond):
			}
		}
		s.TracerCPU = statCPUNs(pid)
	}
	err := cmd.Wait()
	s.ProcWallNs = time.Since(start).Nanoseconds()
	if err != nil {
		return s, fmt.Errorf("%v: %v: %s", args, err, tail(stderr.String(), 1000))
	}
	if err := parseLoop(stdout.String(), &s); err != nil {
		return s, fmt.Errorf("%v: %w", args, err)
	}
	if t != nil {
		pid := t.cmd.Process.Pid
		s.TracerCPU = cpuNs(pid) - cpu0
		s.TracerRSS, s.TracerHWM = measure.MemKiB(pid)
	}
	return s, nil
}

func parseLoop(out string, s *sample) error {
	found := false
	for _, f := range strings.Fields(out) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		found = true
		switch k {
		case "ns_per_op":
			s.NsPerOp, _ = strconv.ParseFloat(v, 64)
		case "ops":
			s.Ops, _ = strconv.ParseInt(v, 10, 64)
		case "syscalls":
			s.Syscalls, _ = strconv.ParseInt(v, 10, 64)
		case "wall_ns":
			s.WallNs, _ = strconv.ParseInt(v, 10, 64)
		case "cpu_ns":
			s.CPUNs, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if !found || s.Ops == 0 {
		return errors.New("no result line from the loop: " + tail(out, 500))
	}
	return nil
}

// cpuNs is the time a process's threads have spent on a CPU, in ns, summed
// from /proc/PID/task/*/schedstat (nanoseconds; /proc/PID/stat's
// utime+stime count 10 ms ticks, too coarse for sub-second runs).
func cpuNs(pid int) float64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var sum float64
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, task.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			v, _ := strconv.ParseFloat(f[0], 64)
			sum += v
		}
	}
	return sum
}

// statCPUNs is utime+stime of /proc/PID/stat in ns (all threads, also
// those already gone), for a process that has exited but is not reaped.
func statCPUNs(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// Fields after the comm: state is f[0]; utime is field 14 overall, f[11].
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) * 1e9 / 100 // USER_HZ is 100 on Linux
}

// ---- statistics and the report ----

type stat struct{ med, min, max, q1, q3 float64 }

func stats(v []float64) stat {
	if len(v) == 0 {
		return stat{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	q := func(p float64) float64 {
		pos := p * float64(len(s)-1)
		lo := int(pos)
		if lo+1 >= len(s) {
			return s[lo]
		}
		return s[lo] + (pos-float64(lo))*(s[lo+1]-s[lo])
	}
	return stat{q(0.5), s[0], s[len(s)-1], q(0.25), q(0.75)}
}

type cell struct {
	traced, added, ratio, cpuPct, sysPerOp []float64
	addedCPU                               []float64 // from the loop's CPU time instead of wall time
	// addedByRound is added by round, to set two variants' runs of one round
	// side by side (pairedRatios).
	addedByRound map[int]float64
	rss, hwm     int64
	foreign      int
	n            int
}

// pair finds, for each traced run, the untraced runs of the same workload
// just before and after it in the same round.
func aggregate(runs []run, vars []variant, wls []workload) map[string]map[string]*cell {
	cells := map[string]map[string]*cell{}
	for _, v := range append([]variant{{name: "untraced"}}, vars...) {
		cells[v.name] = map[string]*cell{}
		for _, w := range wls {
			cells[v.name][w.name] = &cell{}
		}
	}
	for i, r := range runs {
		c := cells[r.Variant][r.Workload]
		if c == nil {
			continue
		}
		c.n++
		c.traced = append(c.traced, r.NsPerOp)
		if r.Ops > 0 {
			c.sysPerOp = append(c.sysPerOp, float64(r.Syscalls)/float64(r.Ops))
		}
		if r.Foreign > 0 {
			c.foreign++
		}
		if r.Variant == "untraced" {
			continue
		}
		var base []run
		for j := i - 1; j >= 0; j-- {
			if runs[j].Variant == "untraced" && runs[j].Workload == r.Workload && runs[j].Round == r.Round {
				base = append(base, runs[j])
				break
			}
		}
		for j := i + 1; j < len(runs); j++ {
			if runs[j].Variant == "untraced" && runs[j].Workload == r.Workload && runs[j].Round == r.Round {
				base = append(base, runs[j])
				break
			}
		}
		if len(base) == 0 {
			continue
		}
		b, bc := 0.0, 0.0
		for _, x := range base {
			b += x.NsPerOp
			bc += float64(x.CPUNs) / float64(x.Ops)
		}
		b /= float64(len(base))
		bc /= float64(len(base))
		c.added = append(c.added, r.NsPerOp-b)
		if c.addedByRound == nil {
			c.addedByRound = map[int]float64{}
		}
		c.addedByRound[r.Round] = r.NsPerOp - b
		c.addedCPU = append(c.addedCPU, float64(r.CPUNs)/float64(r.Ops)-bc)
		c.ratio = append(c.ratio, r.NsPerOp/b)
		if r.ProcWallNs > 0 {
			c.cpuPct = append(c.cpuPct, 100*r.TracerCPU/float64(r.ProcWallNs))
		}
		c.rss = max(c.rss, r.TracerRSS)
		c.hwm = max(c.hwm, r.TracerHWM)
	}
	return cells
}

// pairedRatios divides a's added cost by b's round by round: a ratio of
// two runs minutes apart, not of two medians of the whole run, so its spread
// shows how far one run's headline ratio can be trusted.
func pairedRatios(a, b *cell) []float64 {
	var r []float64
	if a == nil || b == nil {
		return nil
	}
	for round, x := range a.addedByRound {
		if y, ok := b.addedByRound[round]; ok && y > 0 {
			r = append(r, x/y)
		}
	}
	sort.Float64s(r)
	return r
}

func f0(x float64) string { return strconv.FormatFloat(x, 'f', 0, 64) }
func f1(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }

func renderReport(o options, vars []variant, skipped []variant, wls []workload, runs []run) string {
	cells := aggregate(runs, vars, wls)
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	for _, w := range wls {
		p("### %s\n\n", w.title)
		unit := "syscall"
		if w.name == "mutex" {
			unit = "op"
		}
		base := stats(cells["untraced"][w.name].traced)
		p("Untraced: **%s ns per %s** (median of %d runs, %s–%s).", measure.Num(base.med), unit, cells["untraced"][w.name].n, measure.Num(base.min), measure.Num(base.max))
		if w.name == "mutex" {
			p(" An op is one lock + unlock; futex calls per 1000 ops untraced: %s (the loop counts every one).", f1(1000*stats(cells["untraced"][w.name].sysPerOp).med))
		}
		p("\n\n")
		p("| attached | ns per %s | ns added per %s, median (min–max) | slowdown, median (min–max) | vs floor | added, CPU-time basis | tracer CPU, %% of a core | tracer RSS / peak, MiB |", unit, unit)
		if w.name == "mutex" {
			p(" futex calls per 1000 ops |")
		}
		p("\n|---|---:|---:|---:|---:|---:|---:|---:|")
		if w.name == "mutex" {
			p("---:|")
		}
		p("\n")
		floorAdded := 0.0
		if c := cells["floor"][w.name]; c != nil && len(c.added) > 0 {
			floorAdded = stats(c.added).med
		}
		for _, v := range vars {
			c := cells[v.name][w.name]
			tr, ad, ra, cpu := stats(c.traced), stats(c.added), stats(c.ratio), stats(c.cpuPct)
			vsFloor := "–"
			if floorAdded > 0 && v.name != "floor" {
				vsFloor = measure.Ratio(ad.med / floorAdded)
			}
			mark := ""
			if c.foreign > 0 {
				mark = fmt.Sprintf(" †%d", c.foreign)
			}
			p("| %s%s | %s | **%s** (%s – %s) | %s (%s – %s) | %s | %s | %s | %s / %s |",
				v.title, mark, measure.Num(tr.med), measure.Num(ad.med), measure.Num(ad.min), measure.Num(ad.max),
				measure.Ratio(ra.med), measure.Ratio(ra.min), measure.Ratio(ra.max), vsFloor, measure.Num(stats(c.addedCPU).med),
				f1(cpu.med), f1(float64(c.rss)/1024), f1(float64(c.hwm)/1024))
			if w.name == "mutex" {
				p(" %s |", f1(1000*stats(c.sysPerOp).med))
			}
			p("\n")
		}
		p("\n")
	}
	for _, v := range skipped {
		p("- Not run: %s — %s.\n", v.title, v.skip)
	}
	foreign := 0
	for _, r := range runs {
		if r.Foreign > 0 {
			foreign++
		}
	}
	if foreign > 0 {
		p("- † Runs during which other BPF programs (not this benchmark's) were attached to sys_enter/sys_exit: %d of %d runs in all (the number after † counts them per cell). Those runs, untraced ones included, paid for the other programs too: their added cost is understated and their base overstated.\n", foreign, len(runs))
	}
	p("\n")
	p("Targets, from the getppid medians of this run, on both bases (wall time; the loop's CPU time), and\n")
	p("round by round: each round's two runs (minutes apart) divided, wall time; median (min–max) and in\n")
	p("how many rounds the target held:\n\n")
	p("| target | wall time | | CPU time | | round by round |\n|---|---:|---|---:|---|---:|\n")
	med := func(v string, cpu bool) (float64, bool) {
		c := cells[v]["getppid"]
		if c == nil || len(c.added) == 0 {
			return 0, false
		}
		if cpu {
			return stats(c.addedCPU).med, true
		}
		return stats(c.added).med, true
	}
	verdict := func(r float64, ok bool, le bool, limit float64) string {
		switch {
		case !ok:
			return "not run"
		case limit == 0:
			return "(no target)"
		case holds(r, le, limit):
			return "met"
		}
		return "not met"
	}
	// ratio of a's added cost to b's, on one basis.
	ratio := func(a, b string, cpu bool) (string, float64, bool) {
		x, ok1 := med(a, cpu)
		y, ok2 := med(b, cpu)
		if !ok1 || !ok2 || y <= 0 {
			return "–", 0, false
		}
		return fmt.Sprintf("%s / %s ns = %s", measure.Num(x), measure.Num(y), measure.Ratio(x/y)), x / y, true
	}
	for _, t := range measure.CallTargets {
		ws, wr, wok := ratio(t.A, t.B, false)
		cs, cr, cok := ratio(t.A, t.B, true)
		p("| %s | %s | %s | %s | %s | %s |\n", t.What, ws, verdict(wr, wok, t.AtMost, t.Limit), cs, verdict(cr, cok, t.AtMost, t.Limit),
			roundByRound(pairedRatios(cells[t.A]["getppid"], cells[t.B]["getppid"]), t.AtMost, t.Limit))
	}
	p("\n")
	return b.String()
}

// holds says whether ratio r meets a target: at most limit (le), else at least.
func holds(r float64, le bool, limit float64) bool {
	return le && r <= limit || !le && r >= limit
}

// roundByRound sums up paired ratios: "2.03x (1.78x – 2.59x), 2 of 5".
func roundByRound(r []float64, le bool, limit float64) string {
	if len(r) == 0 {
		return "–"
	}
	st := stats(r)
	out := fmt.Sprintf("%s (%s – %s)", measure.Ratio(st.med), measure.Ratio(st.min), measure.Ratio(st.max))
	if limit == 0 {
		return out
	}
	held := 0
	for _, x := range r {
		if holds(x, le, limit) {
			held++
		}
	}
	return fmt.Sprintf("%s, %d of %d", out, held, len(r))
}

// progStatsReport runs the getppid loop again under each system-wide tracer
// with kernel.bpf_stats_enabled=1, -prog-stats-rounds times with the tracers
// taken in turn, and reports the kernel's own run-time accounting of each of
// their programs: the cost inside the programs, without the scheduler's
// noise (but with the ~20 ns the accounting adds to each run, which is why
// the rounds above run without it). One run is not enough: on a shared VM a
// program's ns per run moves by half between two runs of the same code.
func progStatsReport(o options, vars []variant, work string) string {
	const knob = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(knob)
	if err != nil {
		return ""
	}
	if err := os.WriteFile(knob, []byte("1"), 0o644); err != nil {
		return ""
	}
	defer os.WriteFile(knob, old, 0o644)
	var samples progSamples
	rounds := max(o.progStatsRounds, 1)
	for range rounds {
		for _, v := range vars {
			if v.system == nil {
				continue
			}
			for _, loop := range o.progStatsLoops() {
				got, err := progStatsRun(o, v, loop, work)
				samples.add(v.title, loop, got, err)
			}
		}
	}
	return samples.report(vars, o.progStatsLoops(), rounds)
}

// progStatsLoops are the loops progStatsReport runs: getppid, and the
// 1-byte write when -prog-stats-write is set (a call that moves bytes).
func (o options) progStatsLoops() []string {
	if o.progStatsWrite {
		return []string{"getppid", "write"}
	}
	return []string{"getppid"}
}

// progSample is one program's accounting over one loop.
type progSample struct {
	name     string
	runs     int64
	nsPerRun float64
}

// tracerLoop is one tracer (its title) under one loop.
type tracerLoop struct{ title, loop string }

// progSamples holds every round's samples by tracer and loop, then program
// name, and the rounds in which the tracer or the loop failed.
type progSamples struct {
	byName map[tracerLoop]map[string][]progSample
	failed map[tracerLoop][]error
}

func (s *progSamples) add(title, loop string, got []progSample, err error) {
	k := tracerLoop{title, loop}
	if err != nil {
		if s.failed == nil {
			s.failed = map[tracerLoop][]error{}
		}
		s.failed[k] = append(s.failed[k], err)
		return
	}
	if s.byName == nil {
		s.byName = map[tracerLoop]map[string][]progSample{}
	}
	if s.byName[k] == nil {
		s.byName[k] = map[string][]progSample{}
	}
	for _, g := range got {
		s.byName[k][g.name] = append(s.byName[k][g.name], g)
	}
}

// report is the section's markdown: per tracer, loop and program, the median
// (min–max) over the rounds of ns per run; the syscall hooks first.
func (s *progSamples) report(vars []variant, loops []string, rounds int) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("### Inside the programs\n\n")
	p("The getppid loop again under each system-wide tracer, with `kernel.bpf_stats_enabled=1`, %d time(s), the tracers taken in turn: the kernel's own accounting of each program's run time (ns per run, averaged over every run during the loop, other processes' syscalls included; the accounting itself adds some ns per run), median (min–max) over the rounds. The rest of the added cost is the kernel's: the slow syscall path and the trampolines or perf events that call the programs.\n\n", rounds)
	p("| attached | loop | program | runs per round, median | ns per run, median (min–max) |\n|---|---|---|---:|---:|\n")
	rank := func(n string) string {
		if strings.Contains(n, "sys_e") || strings.HasPrefix(n, "floor_") || strings.HasPrefix(n, "clock_") {
			return "0" + n
		}
		return "1" + n
	}
	for _, v := range vars {
		for _, loop := range loops {
			k := tracerLoop{v.title, loop}
			if failed := s.failed[k]; len(failed) > 0 {
				p("| %s | %s | (%d of %d rounds: %v) | | |\n", v.title, loop, len(failed), rounds, failed[0])
			}
			byName := s.byName[k]
			names := make([]string, 0, len(byName))
			for n := range byName {
				names = append(names, n)
			}
			sort.Slice(names, func(i, j int) bool { return rank(names[i]) < rank(names[j]) })
			for _, n := range names {
				var ns, runs []float64
				for _, g := range byName[n] {
					ns = append(ns, g.nsPerRun)
					runs = append(runs, float64(g.runs))
				}
				st := stats(ns)
				p("| %s | %s | `%s` | %s | **%s** (%s – %s) |\n", v.title, loop, n,
					measure.GroupThousands(f0(stats(runs).med)), f1(st.med), f1(st.min), f1(st.max))
			}
		}
	}
	p("\n")
	return b.String()
}

// progStatsRun runs one loop under v and returns each program's ns per run.
func progStatsRun(o options, v variant, loop, work string) ([]progSample, error) {
	t, err := startTracer(v, work)
	if err != nil {
		return nil, fmt.Errorf("did not start: %w", err)
	}
	time.Sleep(o.settle)
	ids := progIDs(t.cmd.Process.Pid)
	before := progRuns(ids)
	_, err = runLoop(o.loop, nil, loop, max(int64(1e6*o.scale), 1000), t)
	after := progRuns(ids)
	t.stop()
	if err != nil {
		return nil, fmt.Errorf("loop failed: %w", err)
	}
	var got []progSample
	for id, a := range after {
		runs := a.cnt - before[id].cnt
		if runs > 0 {
			got = append(got, progSample{name: a.name, runs: runs, nsPerRun: float64(a.ns-before[id].ns) / float64(runs)})
		}
	}
	return got, nil
}

type progRun struct {
	name    string
	ns, cnt int64
}

// progIDs lists the BPF programs a process holds, through its program and
// link file descriptors.
func progIDs(pid int) []int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
	seen := map[int]bool{}
	var ids []int
	for _, fd := range fds {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "prog_id:"); ok {
				id, _ := strconv.Atoi(strings.TrimSpace(v))
				if id > 0 && !seen[id] {
					seen[id] = true
					ids = append(ids, id)
				}
			}
		}
	}
	return ids
}

func progRuns(ids []int) map[int]progRun {
	m := map[int]progRun{}
	for _, id := range ids {
		out, err := exec.Command("bpftool", "prog", "show", "id", strconv.Itoa(id), "-j").Output()
		if err != nil {
			continue
		}
		var info struct {
			Name   string `json:"name"`
			RunNs  int64  `json:"run_time_ns"`
			RunCnt int64  `json:"run_cnt"`
		}
		if json.Unmarshal(out, &info) == nil {
			m[id] = progRun{info.Name, info.RunNs, info.RunCnt}
		}
	}
	return m
}
