// Command inplace measures what each tracer adds per syscall with its
// programs loaded once and their syscall hooks switched on and off in
// place, between short runs of bench/loop: hundreds of traced runs, each
// paired with the untraced runs just before and after it, all within a
// minute or two. bench/cmd/overhead starts and stops a daemon around each
// block of runs; on a shared VM whose speed drifts by 20% within a minute,
// its ratios of medians of 5 rounds carry about ±25%, while these carry a
// few percent, and a bootstrap over the rounds says how many.
//
// Each variant runs in its own harness process (this binary with -serve),
// loaded as the daemon loads it (sysobsd's variants from the embedded
// default config and its filter, without the tally engine: see
// sysobsdSwitch), pinned away from the loop's CPU, and answering "on" and
// "off" on stdin. Several
// instances of each variant are loaded (-instances): two loads of the same
// build place their maps on different pages, and on a machine without PCID
// that alone has moved a call's cost by 60 ns.
//
// With -workload, each run is that command instead (a load generator
// against a server already running: bench/servers.sh INPLACE=1), and the
// cost is the throughput lost against the untraced runs beside it.
//
// Only programs it can switch in place are measured: the floor programs and
// sysobsd (this build's, and other builds' inplace binaries with -alt);
// bpftrace, syscount, strace and perf trace stay in bench/cmd/overhead and
// bench/servers.sh. Needs root (or CAP_BPF and CAP_PERFMON), taskset and nice.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

type options struct {
	serve     string
	variants  string
	alt       string
	instances int
	rounds    int
	iters     int
	call      string
	loop      string
	workload  string
	metric    metric
	cpu       int
	nice      int
	seed      uint64
	out, raw  string
}

func main() {
	var o options
	flag.StringVar(&o.serve, "serve", "", "run as the harness of one variant (what the driver starts; not for people)")
	flag.StringVar(&o.variants, "variants", strings.Join(knownVariants, " "), "space- or comma-separated variants to run")
	flag.StringVar(&o.alt, "alt", "", "other builds' inplace binaries to run as variants sysobsd-NAME, as NAME=PATH[:VARIANT],... (VARIANT: sysobsd, the default, sysobsd-nolat or sysobsd-exact)")
	flag.IntVar(&o.instances, "instances", 2, "harness processes per variant, each with its own maps")
	flag.IntVar(&o.rounds, "rounds", 40, "rounds; each runs every instance once, in a random order")
	flag.IntVar(&o.iters, "iters", 50000, "calls per loop run")
	flag.StringVar(&o.call, "call", "getppid", "the loop: getppid, write (1 byte to /dev/null), eagain (a 1-byte read from an empty non-blocking pipe) or mix (8 cheap syscalls in turn)")
	flag.StringVar(&o.loop, "loop", "bench/.build/loop", "bench/loop binary")
	flag.StringVar(&o.workload, "workload", "", "instead of the loop, run this shell command for each run (nothing is pinned)")
	parser := flag.String("parse", "wrk", "with -workload, what its output is: wrk (Requests/sec) or pgbench (tps)")
	flag.IntVar(&o.cpu, "cpu", -1, "the CPU the loop runs on (-1: the last; harnesses run on the others)")
	flag.IntVar(&o.nice, "nice", -10, "nice value of the loop")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the run order and the bootstrap")
	flag.StringVar(&o.out, "out", "", "write the markdown report here (default stdout)")
	flag.StringVar(&o.raw, "raw", "", "write every run as JSON here")
	flag.Parse()

	if o.serve != "" {
		if err := serve(o.serve, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "inplace -serve:", err)
			os.Exit(1)
		}
		return
	}
	o.metric = loopMetric
	if o.workload != "" {
		m, ok := workloadMetrics[*parser]
		if !ok {
			fmt.Fprintf(os.Stderr, "inplace: -parse %q: wrk or pgbench\n", *parser)
			os.Exit(2)
		}
		o.metric = m
	}
	if err := drive(o); err != nil {
		fmt.Fprintln(os.Stderr, "inplace:", err)
		os.Exit(1)
	}
}

// harness is one loaded instance of a variant.
type harness struct {
	variant  string
	instance int
	cmd      *exec.Cmd
	in       io.WriteCloser
	out      *bufio.Scanner
}

// startHarness starts path -serve name on cpus and waits until it is loaded.
func startHarness(path, name string, instance int, cpus string) (*harness, error) {
	args := []string{path, "-serve", name}
	if cpus != "" {
		args = append([]string{"taskset", "-c", cpus}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	h := &harness{variant: name, instance: instance, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	if err := h.expect(readyLine); err != nil {
		h.stop()
		return nil, err
	}
	return h, nil
}

func (h *harness) expect(want string) error {
	if !h.out.Scan() {
		return fmt.Errorf("%s (instance %d) exited; its error is above", h.variant, h.instance+1)
	}
	if got := h.out.Text(); got != want {
		return fmt.Errorf("%s (instance %d): %s", h.variant, h.instance+1, got)
	}
	return nil
}

func (h *harness) set(on bool) error {
	word := map[bool]string{true: "on", false: "off"}[on]
	if _, err := fmt.Fprintln(h.in, word); err != nil {
		return fmt.Errorf("%s (instance %d): %w", h.variant, h.instance+1, err)
	}
	return h.expect("ok")
}

// stop closes the harness's stdin, which unloads it, and waits for it.
func (h *harness) stop() {
	h.in.Close()
	done := make(chan struct{})
	go func() { h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		h.cmd.Process.Kill()
		<-done
	}
}

// loopCPUs picks the loop's CPU and the harnesses' (the others); on one CPU
// nothing is pinned.
func loopCPUs(want int) (loop, others string) {
	n := runtime.NumCPU()
	if n < 2 {
		return "", ""
	}
	if want < 0 || want >= n {
		want = n - 1
	}
	var rest []string
	for c := range n {
		if c != want {
			rest = append(rest, strconv.Itoa(c))
		}
	}
	return strconv.Itoa(want), strings.Join(rest, ",")
}

// runOnce runs the loop, or the workload, once and returns its figure.
func runOnce(o options, cpu string) (float64, error) {
	args := []string{"nice", "-n", strconv.Itoa(o.nice), o.loop, o.call, strconv.Itoa(o.iters)}
	if o.workload != "" {
		args = []string{"nice", "-n", strconv.Itoa(o.nice), "sh", "-c", o.workload}
	}
	if cpu != "" {
		args = append([]string{"taskset", "-c", cpu}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return 0, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(exit.Stderr)))
		}
		return 0, fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return o.metric.parse(string(out))
}

func drive(o options) error {
	if o.rounds < 2 || o.instances < 1 || o.iters < 1 {
		return fmt.Errorf("-rounds must be ≥ 2, -instances and -iters ≥ 1 (got %d, %d, %d)", o.rounds, o.instances, o.iters)
	}
	if !slices.Contains([]string{"getppid", "write", "eagain", "mix"}, o.call) {
		return fmt.Errorf("-call %q: getppid, write, eagain or mix", o.call)
	}
	vars, err := chosenVariants(o.variants, o.alt)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var loopCPU, harnessCPUs string // a server and its load generator use every CPU
	if o.workload == "" {
		loopCPU, harnessCPUs = loopCPUs(o.cpu)
	}
	if _, err := runOnce(o, loopCPU); err != nil { // the run works before anything is loaded
		return err
	}
	var hs []*harness
	defer func() {
		for _, h := range hs {
			h.stop()
		}
	}()
	for _, v := range vars {
		for i := range o.instances {
			path := self
			if v.path != "" {
				path = v.path
			}
			h, err := startHarness(path, v.serveAs, i, harnessCPUs)
			if err != nil {
				return err
			}
			h.variant = v.name
			hs = append(hs, h)
		}
	}

	started := time.Now()
	rng := rand.New(rand.NewPCG(o.seed, 0))
	var runs []pairedRun
	for r := range o.rounds {
		before, err := runOnce(o, loopCPU)
		if err != nil {
			return err
		}
		for _, i := range rng.Perm(len(hs)) {
			h := hs[i]
			if err := h.set(true); err != nil {
				return err
			}
			traced, err := runOnce(o, loopCPU)
			if err := errors.Join(err, h.set(false)); err != nil {
				return err
			}
			after, err := runOnce(o, loopCPU)
			if err != nil {
				return err
			}
			runs = append(runs, pairedRun{Round: r, Variant: h.variant, Instance: h.instance,
				Before: before, Traced: traced, After: after})
			before = after
		}
	}
	took := time.Since(started)

	if o.raw != "" {
		data, err := json.MarshalIndent(runs, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.raw, data, 0o644); err != nil {
			return err
		}
	}
	report := render(o, vars, runs, took, loopCPU, rand.New(rand.NewPCG(o.seed, 1)))
	if o.out == "" {
		_, err = io.WriteString(os.Stdout, report)
		return err
	}
	return os.WriteFile(o.out, []byte(report), 0o644)
}
