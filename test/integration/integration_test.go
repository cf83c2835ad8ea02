// Package integration loads the real BPF programs, runs workloads with a
// known syscall mix, and checks the exported metrics against exact counts.
package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sysobsd/sysobsd/internal/cgroups"
	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/filter"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/metrics"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/tally"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

// harness is one loaded set of programs with its engine and collector.
type harness struct {
	t        *testing.T
	probes   *loader.Probes
	engine   *tally.Engine
	registry *prometheus.Registry
	workload string
}

// setup is what a test changes from the defaults.
type setup struct {
	load    func(*loader.Options)
	filters config.Filters
	events  config.Events
	labels  []string // default: comm
	limits  *tally.Limits
	// held, if set, keeps the engine from running (reading the ring
	// buffer, folding) until it is closed: a daemon starved of CPU.
	held <-chan struct{}
}

func start(t *testing.T, s setup) *harness {
	t.Helper()
	testenv.RequireRoot(t)
	workload := testenv.BuildWorkload(t, t.TempDir())
	opts := loader.DefaultOptions()
	if s.load != nil {
		s.load(&opts)
	}
	resolver := cgroupResolver(t)
	f, err := filter.Compile(s.filters, s.events, syscalls.Host(), resolver)
	if err != nil {
		t.Fatal(err)
	}
	opts.Prepare = func(p *loader.Probes) error { return filter.Apply(&p.Maps, f, "/proc") }
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	probes, err := loader.Load(opts, log)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	engineOpts := tally.EngineOptions{Labels: labelSet(s.labels), Limits: tally.DefaultLimits, Cgroups: resolver}
	if s.limits != nil {
		engineOpts.Limits = *s.limits
	}
	engine, err := tally.NewEngine(&probes.Maps, "/proc", engineOpts, log)
	if err != nil {
		probes.Close()
		t.Fatalf("engine: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		if s.held != nil {
			select {
			case <-s.held:
			case <-ctx.Done():
				done <- nil
				return
			}
		}
		done <- engine.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine: %v", err)
		}
		if err := probes.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	registry := prometheus.NewRegistry()
	registry.MustRegister(metrics.NewCollector(engine, syscalls.Host(), probes.Capacity(), log),
		metrics.NewProgramCollector(probes.ProgramStats))
	return &harness{t: t, probes: probes, engine: engine, registry: registry, workload: workload}
}

// syscallLabel is the `syscall="..."` part of a series key.
func syscallLabel(key string) string {
	i := strings.Index(key, `syscall="`)
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(key[i+len(`syscall="`):], '"')
	if j < 0 {
		return ""
	}
	return key[i : i+len(`syscall="`)+j+1]
}

func labelSet(names []string) tally.LabelSet {
	if names == nil {
		names = []string{"comm"}
	}
	var set tally.LabelSet
	for _, n := range names {
		set |= tally.LabelSet(tally.LabelNames[n])
	}
	return set
}

// cgroupResolver finds this host's cgroup2 mount (/sys/fs/cgroup, or
// /sys/fs/cgroup/unified on hybrid hosts).
func cgroupResolver(t *testing.T) *cgroups.Resolver {
	t.Helper()
	mount, err := cgroups.FindMount("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	return cgroups.NewResolver(mount)
}

// scrape gathers every sample as `name{k="v",...}` → value; histograms
// contribute _count and _sum.
func (h *harness) scrape() map[string]float64 {
	h.t.Helper()
	families, err := h.registry.Gather()
	if err != nil {
		h.t.Fatalf("gather: %v", err)
	}
	out := make(map[string]float64)
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			labels := labelString(m.GetLabel())
			switch {
			case m.Counter != nil:
				out[mf.GetName()+labels] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[mf.GetName()+labels] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[mf.GetName()+"_count"+labels] = float64(m.GetHistogram().GetSampleCount())
				out[mf.GetName()+"_sum"+labels] = m.GetHistogram().GetSampleSum()
				for _, b := range m.GetHistogram().GetBucket() {
					name, bound := "le", strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
					withLE := append(append([]*dto.LabelPair(nil), m.GetLabel()...), &dto.LabelPair{Name: &name, Value: &bound})
					out[mf.GetName()+"_bucket"+labelString(withLE)] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}

func labelString(pairs []*dto.LabelPair) string {
	parts := make([]string, 0, len(pairs))
	for _, p := range pairs {
		parts = append(parts, fmt.Sprintf("%s=%q", p.GetName(), p.GetValue()))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// expect polls scrapes until every want holds exactly, or fails after timeout
// with the last values seen.
func (h *harness) expect(timeout time.Duration, want map[string]float64) map[string]float64 {
	h.t.Helper()
	var got map[string]float64
	ok := testenv.Eventually(timeout, func() bool {
		got = h.scrape()
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	})
	if !ok {
		for k, v := range want {
			if got[k] != v {
				h.t.Errorf("%s = %v, want %v", k, got[k], v)
				// Where did the calls go? Series of the same metric and
				// syscall holding that many, and the loss counters.
				metric, _, _ := strings.Cut(k, "{")
				for other, ov := range got {
					if strings.HasPrefix(other, metric+"{") && ov >= v && other != k && strings.Contains(other, syscallLabel(k)) {
						h.t.Logf("  candidate: %s = %v", other, ov)
					}
					if strings.HasPrefix(other, "sysobsd_drops_total") && ov > 0 {
						h.t.Logf("  %s = %v", other, ov)
					}
				}
			}
		}
		h.t.FailNow()
	}
	return got
}

// timedRun runs a workload that prints the ns its calls took, timed from
// outside, and returns them in seconds.
func (h *harness) timedRun(args ...string) float64 {
	h.t.Helper()
	out, err := exec.Command(h.workload, args...).Output()
	if err != nil {
		h.t.Fatalf("workload %s: %v", args[0], err)
	}
	ns, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		h.t.Fatalf("workload %s printed %q: %v", args[0], out, err)
	}
	return ns / 1e9
}

func (h *harness) run(args ...string) {
	h.t.Helper()
	h.run32(h.workload, args...)
}

// run32 runs another build of the workload (the 32-bit one).
func (h *harness) run32(workload string, args ...string) {
	h.t.Helper()
	cmd := exec.Command(workload, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("workload %v: %v: %s", args, err, out)
	}
}

// workloadNamed is a path that runs the workload under comm from its exec
// on (a symlink: the kernel names a process after the file it executes).
func (h *harness) workloadNamed(comm string) string {
	h.t.Helper()
	link := filepath.Join(h.t.TempDir(), comm)
	if err := os.Symlink(h.workload, link); err != nil {
		h.t.Fatal(err)
	}
	return link
}

// uniqueComm gives each test process a name no other process on the host has.
func uniqueComm(prefix string) string {
	return fmt.Sprintf("%s%06d", prefix, rand.IntN(1000000))
}

func calls(comm, syscall string) string {
	return fmt.Sprintf(`sysobsd_syscalls_total{comm=%q,syscall=%q}`, comm, syscall)
}

func errs(comm, syscall, errno string) string {
	return fmt.Sprintf(`sysobsd_syscall_errors_total{comm=%q,errno=%q,syscall=%q}`, comm, errno, syscall)
}

func seconds(comm, syscall string) string {
	return fmt.Sprintf(`sysobsd_syscall_seconds_total{comm=%q,syscall=%q}`, comm, syscall)
}

func bytesMoved(comm, syscall string) string {
	return fmt.Sprintf(`sysobsd_syscall_bytes_total{comm=%q,syscall=%q}`, comm, syscall)
}

// The done-when case of the core issue: a short-lived static program that
// names itself, writes, fails openat and fills /dev/full.
func TestShortLivedProcessCountedExactly(t *testing.T) {
	h := start(t, setup{})
	const n, m, k = 1000, 7, 13
	comm := uniqueComm("short")
	h.run("basic", comm, fmt.Sprint(n), fmt.Sprint(m), fmt.Sprint(k))
	got := h.expect(2*time.Second, map[string]float64{
		calls(comm, "write"):           n + k,
		errs(comm, "write", "ENOSPC"):  k,
		calls(comm, "openat"):          m + 2,
		errs(comm, "openat", "ENOENT"): m,
		calls(comm, "prctl"):           1,
		// n one-byte writes; the failed ones move nothing.
		bytesMoved(comm, "write"): n,
	})
	if got[seconds(comm, "write")] <= 0 {
		t.Errorf("%s = %v, want > 0", seconds(comm, "write"), got[seconds(comm, "write")])
	}
	// Folded: none of its entries stays in the kernel.
	waitNoKernelEntries(t, h)
}

// Once the tally has read the maps, the programs announce every new entry,
// so a fold looks up the exited process's entries alone: it deletes them
// all, counts them exactly, and leaves whole-map reads to scrapes.
func TestFoldLooksUpTheExitedProcessByKeys(t *testing.T) {
	h := start(t, setup{})
	const byKeys, full = `sysobsd_bpf_map_reads_total{how="by_keys"}`, `sysobsd_bpf_map_reads_total{how="full"}`
	before := h.scrape()
	const n, m, k = 300, 4, 5
	comm := uniqueComm("keyed")
	cmd := exec.Command(h.workload, "basic", comm, fmt.Sprint(n), fmt.Sprint(m), fmt.Sprint(k))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("workload: %v: %s", err, out)
	}
	if err := h.engine.Fold(context.Background()); err != nil {
		t.Fatal(err)
	}
	tgid := uint32(cmd.Process.Pid)
	var left []loader.ErrnoKey
	if err := h.probes.ReadProcessKeys(func(key loader.ErrnoKey) {
		if key.Tgid == tgid {
			left = append(left, key)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("after the fold, the kernel keeps entries of exited process %d: %+v", tgid, left)
	}

	got := h.scrape()
	want := map[string]float64{
		calls(comm, "write"):           n + k,
		errs(comm, "write", "ENOSPC"):  k,
		calls(comm, "openat"):          m + 2,
		errs(comm, "openat", "ENOENT"): m,
		calls(comm, "prctl"):           1,
	}
	for key, v := range want {
		if got[key] != v {
			t.Errorf("%s = %v, want %v", key, got[key], v)
		}
	}
	if got[byKeys] <= before[byKeys] {
		t.Errorf("%s = %v, was %v: the fold did not go by keys", byKeys, got[byKeys], before[byKeys])
	}
	if got[full] != before[full]+1 {
		t.Errorf("%s = %v, was %v: want one more (this scrape's)", full, got[full], before[full])
	}
	if got[`sysobsd_bpf_entry_announcements_lost_total{}`] != 0 {
		t.Errorf("announcements lost: %v", got[`sysobsd_bpf_entry_announcements_lost_total{}`])
	}
}

// waitNoKernelEntries checks that no kernel entry belongs to a process that
// no longer exists once a fold has run.
func waitNoKernelEntries(t *testing.T, h *harness) {
	t.Helper()
	var stale []uint32
	ok := testenv.Eventually(3*time.Second, func() bool {
		if _, err := h.engine.Snapshot(context.Background()); err != nil {
			t.Fatal(err)
		}
		stale = stale[:0]
		err := h.probes.ReadProcessKeys(func(k loader.ErrnoKey) {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", k.Tgid)); err != nil {
				stale = append(stale, k.Tgid)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return len(stale) == 0
	})
	if !ok {
		t.Errorf("kernel entries of exited processes not folded: tgids %v", stale)
	}
}

func TestThreadsCountTowardTheirProcess(t *testing.T) {
	h := start(t, setup{})
	const threads, each = 8, 5000
	comm := uniqueComm("thr")
	h.run("threads", comm, fmt.Sprint(threads), fmt.Sprint(each))
	got := h.expect(2*time.Second, map[string]float64{calls(comm, "getppid"): threads * each})
	// glibc makes threads with clone3 where it has it (x86_64), else clone
	// (Debian 12's arm64 glibc 2.36).
	if n := got[calls(comm, "clone3")] + got[calls(comm, "clone")]; n != threads {
		t.Errorf("clone3 + clone = %v, want %d (one per thread)", n, threads)
	}
}

func TestExecSplitsCountsBetweenNames(t *testing.T) {
	h := start(t, setup{})
	before := uniqueComm("bef")
	after := uniqueComm("aft")
	link := h.workloadNamed(after)
	h.run("exec", before, "300", link, "700")
	h.expect(2*time.Second, map[string]float64{
		calls(before, "getppid"): 300,
		calls(after, "getppid"):  700,
		// An execve returns in the new program, so it counts under the new
		// name: "before" has the one that started it, "after" its own.
		calls(before, "execve"): 1,
		calls(after, "execve"):  1,
	})
}

// Once a process has exec'd, its calls before the exec are folded and
// their kernel entries freed while it runs on: exported counts unchanged.
func TestExecFreesThePreExecEntriesWhileRunning(t *testing.T) {
	h := start(t, setup{})
	before := uniqueComm("pre")
	after := uniqueComm("post")
	link := h.workloadNamed(after)
	// Started under its prctl name: a scrape between the exec and the
	// rename would keep the calls it read under the exec's name (renames
	// move only later calls, docs/architecture.md).
	cmd := exec.Command(h.workloadNamed(before), "exec-hold", before, "300", link, "700")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	want := map[string]float64{calls(before, "getppid"): 300, calls(after, "getppid"): 700}
	h.expect(2*time.Second, want)

	tgid := uint32(cmd.Process.Pid)
	generations := map[uint32]bool{}
	ok := testenv.Eventually(3*time.Second, func() bool {
		if _, err := h.engine.Snapshot(context.Background()); err != nil {
			t.Fatal(err)
		}
		clear(generations)
		err := h.probes.ReadProcessKeys(func(k loader.ErrnoKey) {
			if k.Tgid == tgid {
				generations[k.ExecId] = true
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return len(generations) == 1
	})
	if !ok {
		t.Errorf("running process %d keeps kernel entries of exec generations %v, want only the current one", tgid, generations)
	}
	h.expect(2*time.Second, want)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	h.expect(2*time.Second, want)
}

// A call's time is measured from its entry to its exit: at least what it
// slept, and at most what the caller timed around it (CLOCK_MONOTONIC, the
// clock the programs read). On a loaded host the sleep overruns; the bound
// moves with it.
func TestSleepTimedBetweenRequestAndCallersClock(t *testing.T) {
	h := start(t, setup{})
	const ms = 300
	comm := uniqueComm("slp")
	outside := h.timedRun("sleep", comm, fmt.Sprint(ms), "report")
	got := h.expect(2*time.Second, map[string]float64{calls(comm, "nanosleep"): 1})
	s := got[seconds(comm, "nanosleep")]
	if s < ms/1000.0 || s > outside {
		t.Errorf("%s = %v s, want between the %v s asked for and the %v s the caller timed", seconds(comm, "nanosleep"), s, ms/1000.0, outside)
	}
	if got[`sysobsd_syscall_duration_seconds_count{syscall="nanosleep"}`] < 1 {
		t.Errorf("nanosleep histogram is empty")
	}
}

// Threads whose ids share an entry-time slot (hosts whose pid_max exceeds
// the slots) are timed through task storage instead: with one slot for all,
// eight threads asleep at once each get their whole sleep.
func TestThreadsSharingASlotAreTimed(t *testing.T) {
	h := start(t, setup{load: func(o *loader.Options) { o.StartSlots = 1 }})
	const threads, ms = 8, 200
	comm := uniqueComm("shr")
	outside := h.timedRun("sleepers", comm, fmt.Sprint(threads), fmt.Sprint(ms), "report")
	got := h.expect(2*time.Second, map[string]float64{calls(comm, "nanosleep"): threads})
	// Each thread's whole sleep: at least what was asked, at most what the
	// threads timed around their calls (a loaded host wakes them late).
	s := got[seconds(comm, "nanosleep")]
	if want := threads * ms / 1000.0; s < want || s > outside {
		t.Errorf("%s = %v s, want between the %v s asked for and the %v s the threads timed", seconds(comm, "nanosleep"), s, want, outside)
	}
}

// A thread other than the leader that execs takes the leader's id before
// its execve returns: the call is still timed.
func TestExecFromASecondThreadIsTimed(t *testing.T) {
	h := start(t, setup{})
	after := uniqueComm("tex")
	link := h.workloadNamed(after)
	h.run("thread-exec", link, "100")
	got := h.expect(2*time.Second, map[string]float64{
		calls(after, "getppid"): 100,
		calls(after, "execve"):  1,
	})
	if s := got[seconds(after, "execve")]; s <= 0 {
		t.Errorf("%s = %v, want the execve's duration", seconds(after, "execve"), s)
	}
}

// A live process is exported while it runs, and folding it at exit neither
// loses nor repeats a call.
func TestLiveProcessCountedBeforeAndAfterExit(t *testing.T) {
	h := start(t, setup{})
	comm := uniqueComm("live")
	cmd := exec.Command(h.workloadNamed(comm), "spin", comm, "500") // named at exec, as above
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.expect(2*time.Second, map[string]float64{calls(comm, "getppid"): 500})
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	h.expect(2*time.Second, map[string]float64{calls(comm, "getppid"): 500})
	waitNoKernelEntries(t, h)
}

// basicCounts are the exact counts of `workload basic NAME 100 3 5`: 100
// writes and 5 more that fail with ENOSPC, 3 openat that fail with ENOENT.
func basicCounts(comm string) map[string]float64 {
	return map[string]float64{
		calls(comm, "write"):           105,
		errs(comm, "write", "ENOSPC"):  5,
		errs(comm, "openat", "ENOENT"): 3,
	}
}

func TestRawTracepointFallbackCountsExactly(t *testing.T) {
	h := start(t, setup{load: func(o *loader.Options) { o.Attach = "raw_tracepoint" }})
	if h.probes.AttachMode != "raw_tracepoint" {
		t.Fatalf("attach mode %q", h.probes.AttachMode)
	}
	comm := uniqueComm("raw")
	h.run("basic", comm, "100", "3", "5")
	h.expect(2*time.Second, basicCounts(comm))
}

func TestLatencyOffCountsCallsAndErrorsOnly(t *testing.T) {
	h := start(t, setup{load: func(o *loader.Options) { o.Latency = false }})
	comm := uniqueComm("nolat")
	h.run("basic", comm, "100", "3", "5")
	want := basicCounts(comm)
	want[seconds(comm, "write")] = 0
	got := h.expect(2*time.Second, want)
	for k := range got {
		if strings.HasPrefix(k, "sysobsd_syscall_duration_seconds") {
			t.Errorf("histogram %s exported with latency off", k)
		}
	}
}

// Sampled latency (latency: sampled, one call in 4 here) counts calls and
// errors exactly; time and histogram are estimates scaled by 4. 400 naps of
// 2 ms: the timed ones number 100 ± 8.7 (binomial), so the estimate is
// within half of the truth but with a chance of 1e-8. A nap the scheduler
// stretched past a long call's ticks would count unscaled: the histogram's
// buckets up to 2^-7 s hold short calls only (a long one lasts more than
// its ticks less one, 2^23 ns and more), each as 4.
func TestSampledLatencyCountsExactlyAndEstimatesTime(t *testing.T) {
	const every, naps, ms = 4, 400, 2
	h := start(t, setup{load: func(o *loader.Options) { o.LatencySampleEvery = every }})
	comm := uniqueComm("smp")
	h.run("basic", comm, "100", "3", "5")
	h.expect(2*time.Second, basicCounts(comm))

	napper := uniqueComm("nap")
	outside := h.timedRun("naps", napper, fmt.Sprint(naps), fmt.Sprint(ms))
	got := h.expect(2*time.Second, map[string]float64{calls(napper, "nanosleep"): naps})
	asked := naps * ms / 1000.0
	if s := got[seconds(napper, "nanosleep")]; s < asked/2 || s > outside*1.5 {
		t.Errorf("%s = %v s, want an estimate within half of the %v s the naps took (at least %v s asked)",
			seconds(napper, "nanosleep"), s, outside, asked)
	}
	// Every timed short call enters the histogram as 4 observations.
	const short = `sysobsd_syscall_duration_seconds_bucket{le="0.0078125",syscall="nanosleep"}`
	if n := got[short]; n == 0 || int64(n)%every != 0 {
		t.Errorf("%s = %v, want a positive multiple of %d", short, n, every)
	}
}

// Sampled latency misses no long call: one in 65536 is timed here, yet
// each of 6 naps of 3 long calls' length (at least 51 ms, by the kernel's
// tick) is counted once in the histogram, unscaled, and their time within
// a tick each of what they took.
func TestSampledLatencyCountsEveryLongCall(t *testing.T) {
	const naps = 6
	tick, err := loader.KernelTick()
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, setup{load: func(o *loader.Options) { o.LatencySampleEvery = 1 << 16 }})
	long := h.probes.LongCall
	if long < 1<<24 || long%tick != 0 || long < 4*tick {
		t.Fatalf("long calls from %v: want whole ticks of %v, at least 4 of them and 2^24 ns", long, tick)
	}
	napper := uniqueComm("lnap")
	nap := 3 * long
	outside := h.timedRun("naps", napper, fmt.Sprint(naps), fmt.Sprint(nap.Milliseconds()+1))
	got := h.expect(2*time.Second, map[string]float64{
		calls(napper, "nanosleep"):                                                    naps,
		`sysobsd_syscall_duration_seconds_count{syscall="nanosleep"}`:                 naps,
		`sysobsd_syscall_duration_seconds_bucket{le="0.0078125",syscall="nanosleep"}`: 0,
	})
	least := float64(naps) * (nap - tick).Seconds()
	most := outside + float64(naps)*tick.Seconds()
	if s := got[seconds(napper, "nanosleep")]; s < least || s > most {
		t.Errorf("%s = %v s, want from %v to %v s: the %v s the naps took, within a tick (%v) each", seconds(napper, "nanosleep"), s, least, most, outside, tick)
	}
}

// Many short processes at once: each one's calls arrive exactly, under its name.
func TestManyShortLivedProcessesExact(t *testing.T) {
	h := start(t, setup{})
	const procs = 200
	prefix := uniqueComm("many")
	want := make(map[string]float64)
	for i := range procs {
		comm := fmt.Sprintf("%s%d", prefix[:9], i)
		want[calls(comm, "write")] = float64(i + 1)
		h.run("basic", comm, fmt.Sprint(i+1), "0", "0")
	}
	h.expect(3*time.Second, want)
	waitNoKernelEntries(t, h)
}
