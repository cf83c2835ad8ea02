package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/notable"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/tally"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

// A flood of failing calls from several processes: every failed call is
// either delivered as an event or counted as dropped (seen == sent +
// dropped), the metrics stay exact, and the daemon keeps a bounded buffer.
func TestFloodOfFailingCallsIsAccountedFor(t *testing.T) {
	const procs, each, rate, keep = 4, 20000, 500, 1000
	prefix := uniqueComm("fl")[:8]
	comms := make([]string, procs)
	for i := range comms {
		comms[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	h := start(t, setup{
		filters: config.Filters{Include: config.Match{Comms: comms}},
		events:  config.Events{Enabled: true, Errors: true, RateLimit: rate, PathMax: 64},
	})
	recent := notable.NewRecent(keep)
	reader, err := notable.NewReader(h.probes.NotableEvents(), notable.NewDecoder(syscalls.Host(), "/proc", 64))
	if err != nil {
		t.Fatal(err)
	}
	var received sync.WaitGroup
	received.Add(1)
	go func() { defer received.Done(); reader.Run(recent.Add) }()
	t.Cleanup(func() { reader.Close(); received.Wait() })

	var wg sync.WaitGroup
	for _, comm := range comms {
		link := h.workloadNamed(comm)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := exec.Command(link, "basic", comm, "0", fmt.Sprint(each), "0").CombinedOutput(); err != nil {
				t.Errorf("%s: %v: %s", comm, err, out)
			}
		}()
	}
	wg.Wait()

	want := make(map[string]float64)
	for _, comm := range comms {
		want[errs(comm, "openat", "ENOENT")] = each
	}
	h.expect(3*time.Second, want)

	failed := uint64(procs * each)
	var sent, dropped uint64
	ok := testenv.Eventually(3*time.Second, func() bool {
		drops, err := h.probes.ReadDrops()
		if err != nil {
			t.Fatal(err)
		}
		dropped = 0
		for i, reason := range loader.DropReasons {
			if reason == "notable_rate_limited" || reason == "notable_ringbuf_full" {
				dropped += drops[i]
			}
		}
		sent = recent.Total() + reader.DecodeErrors.Load()
		return sent+dropped == failed
	})
	if !ok {
		t.Errorf("failed calls %d != events sent %d + dropped %d", failed, sent, dropped)
	}
	if dropped == 0 {
		t.Errorf("no event dropped at a limit of %d per CPU per second: the flood did not test the limit", rate)
	}
	if n := len(recent.Query(nil, 0)); n > keep {
		t.Errorf("buffer holds %d events, want at most %d", n, keep)
	}
}

// Every attached program's skipped runs are exported, so a loss no map of
// ours can count (a program already running on the CPU) is still seen.
func TestRecursionMissesExportedPerProgram(t *testing.T) {
	h := start(t, setup{})
	got := h.scrape()
	programs := []string{"sys_enter", "sys_exit", "process_fork", "process_exec", "process_exit", "cgroup_attach", "cgroup_mkdir", "cgroup_rmdir"}
	if h.probes.RenamesTracked {
		programs = append(programs, "task_rename")
	}
	if h.probes.InFlightTracked {
		programs = append(programs, "in_flight")
	}
	n := 0
	for k := range got {
		if strings.HasPrefix(k, "sysobsd_bpf_program_recursion_misses_total{") {
			n++
		}
	}
	if n != len(programs) {
		t.Errorf("%d programs export recursion misses, want %d (%v)", n, len(programs), programs)
	}
	for _, p := range programs {
		k := fmt.Sprintf(`sysobsd_bpf_program_recursion_misses_total{program=%q}`, p)
		v, ok := got[k]
		if !ok {
			t.Errorf("%s missing", k)
		} else if v != 0 {
			t.Errorf("%s = %v: the kernel skipped runs of an idle daemon's program", k, v)
		}
	}
}

// With the kernel's run statistics on, what each program costs is exported:
// sys_enter and sys_exit run at least once per call the workload makes.
func TestProgramRunStatisticsExported(t *testing.T) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("turn on the kernel's BPF run statistics: %v", err)
	}
	defer stats.Close()
	h := start(t, setup{})
	const n = 20000
	before := h.scrape()
	h.run("basic", uniqueComm("runs"), fmt.Sprint(n), "0", "0")
	got := h.scrape()
	for _, p := range []string{"sys_enter", "sys_exit"} {
		runs := fmt.Sprintf(`sysobsd_bpf_program_runs_total{program=%q}`, p)
		secs := fmt.Sprintf(`sysobsd_bpf_program_run_seconds_total{program=%q}`, p)
		if d := got[runs] - before[runs]; d < n {
			t.Errorf("%s rose by %v over a workload of %d writes, want at least %d", runs, d, n, n)
		}
		if d := got[secs] - before[secs]; d <= 0 {
			t.Errorf("%s rose by %v, want > 0", secs, d)
		}
	}
}

// More live processes than the per-process map holds: the excess is
// counted by process name and cgroup, so every comm's total stays exact, and
// stats_map_full counts the calls that lost their pid.
func TestMapFullCountsEachCommExactly(t *testing.T) {
	const procs, each, entries = 100, 50, 64
	got, comms := runMapFull(t, procs, each, func(o *loader.Options) { o.CallSlots, o.StatsEntries = 0, entries })
	for _, comm := range comms {
		if v := got[calls(comm, "getppid")]; v != each {
			t.Errorf("%s = %v, want %d", calls(comm, "getppid"), v, each)
		}
	}
	if got[`sysobsd_drops_total{reason="stats_map_full"}`] == 0 {
		t.Errorf("no stats_map_full drop counted with %d processes in %d entries", procs, entries)
	}
	if v := got[`sysobsd_bpf_map_entries{map="group_stats"}`]; v < procs-entries {
		t.Errorf("group_stats holds %v entries, want at least %d", v, procs-entries)
	}
	if v, ok := got[calls(tally.OtherComm, "getppid")]; ok {
		t.Errorf(`%v calls under comm="~other" with room in group_stats`, v)
	}
}

// More processes than call_slots holds (four slots a CPU): the calls that
// find no slot are counted in syscall_stats, per process, exactly, with no
// drop; once the processes exit, both are folded and emptied: every slot
// freed, and the processes' names and counts kept.
func TestCallSlotsFullCountInTheHashExactly(t *testing.T) {
	const procs, each = 40, 30
	prefix := uniqueComm("cs")[:8]
	comms := make([]string, procs)
	for i := range comms {
		comms[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	h := start(t, setup{
		load:    func(o *loader.Options) { o.CallSlots = 4 },
		filters: config.Filters{Include: config.Match{Comms: comms, Syscalls: []string{"getppid"}}},
	})
	var gated []*gatedProcess
	for _, comm := range comms {
		gated = append(gated, startGated(t, h.workloadNamed(comm), comm, each))
	}
	for _, g := range gated {
		g.round()
	}
	want := map[string]float64{}
	for _, comm := range comms {
		want[calls(comm, "getppid")] = each
	}
	got := h.expect(3*time.Second, want)
	if n := got[`sysobsd_bpf_map_entries{map="syscall_stats"}`]; n == 0 {
		t.Errorf("syscall_stats holds no entry with %d processes in %v slots", procs, got[`sysobsd_bpf_map_max_entries{map="call_slots"}`])
	}
	if n := got[`sysobsd_bpf_map_entries{map="call_slots"}`]; n == 0 || n > got[`sysobsd_bpf_map_max_entries{map="call_slots"}`] {
		t.Errorf("call_slots: %v slots in use of %v", n, got[`sysobsd_bpf_map_max_entries{map="call_slots"}`])
	}
	for _, reason := range []string{"stats_map_full", "group_stats_map_full"} {
		if n := got[fmt.Sprintf(`sysobsd_drops_total{reason=%q}`, reason)]; n != 0 {
			t.Errorf("%s = %v with room in syscall_stats", reason, n)
		}
	}
	// Exited: folded, every slot and entry freed, the counts the same.
	for _, g := range gated {
		g.exit()
	}
	want[`sysobsd_bpf_map_entries{map="call_slots"}`] = 0
	want[`sysobsd_bpf_map_entries{map="syscall_stats"}`] = 0
	h.expect(5*time.Second, want)
	// Freed slots are claimed again: a second round of processes counts
	// exactly in them.
	second := startGated(t, h.workloadNamed(comms[0]), comms[0], each)
	second.round()
	second.exit()
	h.expect(5*time.Second, map[string]float64{calls(comms[0], "getppid"): 2 * each})
}

// Both the per-process and the group map full: what fits in neither is
// counted under comm="~other", and the totals stay exact.
func TestMapsFullCountTheExcessUnderOther(t *testing.T) {
	const procs, each, entries = 100, 50, 32
	got, _ := runMapFull(t, procs, each, func(o *loader.Options) {
		o.CallSlots, o.StatsEntries, o.GroupStatsEntries = 0, entries, entries
	})
	for _, reason := range []string{"stats_map_full", "group_stats_map_full"} {
		if got[fmt.Sprintf(`sysobsd_drops_total{reason=%q}`, reason)] == 0 {
			t.Errorf("no %s drop counted with %d processes in %d + %d entries", reason, procs, entries, entries)
		}
	}
	if got[calls(tally.OtherComm, "getppid")] == 0 {
		t.Errorf(`no comm="~other" series for the excess`)
	}
}

// An errors map of one entry (and no call_slots, where errors go first):
// the process's first failing call takes it, the other errno is counted by
// name and cgroup, both exactly.
func TestErrorsMapFullCountsEachCommExactly(t *testing.T) {
	const n, m, k = 10, 7, 13
	comm := uniqueComm("ef")
	h := start(t, setup{
		load:    func(o *loader.Options) { o.CallSlots, o.ErrorsEntries = 0, 1 },
		filters: config.Filters{Include: config.Match{Comms: []string{comm}}},
	})
	h.run("basic", comm, fmt.Sprint(n), fmt.Sprint(m), fmt.Sprint(k))
	h.expect(2*time.Second, map[string]float64{
		errs(comm, "openat", "ENOENT"):                  m,
		errs(comm, "write", "ENOSPC"):                   k,
		`sysobsd_drops_total{reason="errors_map_full"}`: k,
	})
}

// runMapFull runs procs processes of distinct names, each making each
// getppid calls, with maps sized by load, and returns the scrape once the
// calls summed over every series are exact.
func runMapFull(t *testing.T, procs, each int, load func(*loader.Options)) (map[string]float64, []string) {
	t.Helper()
	prefix := uniqueComm("mf")[:8]
	comms := make([]string, procs)
	for i := range comms {
		comms[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	h := start(t, setup{
		load:    load,
		filters: config.Filters{Include: config.Match{Comms: comms, Syscalls: []string{"getppid"}}},
	})
	var gated []*gatedProcess
	for _, comm := range comms {
		link := h.workloadNamed(comm)
		gated = append(gated, startGated(t, link, comm, each))
	}
	for _, g := range gated {
		g.round()
	}
	var sum float64
	var got map[string]float64
	ok := testenv.Eventually(3*time.Second, func() bool {
		got = h.scrape()
		sum = 0
		for k, v := range got {
			if strings.HasPrefix(k, "sysobsd_syscalls_total{") {
				sum += v
			}
		}
		return sum == float64(procs*each)
	})
	if !ok {
		t.Fatalf("getppid summed over series = %v, want %d", sum, procs*each)
	}
	return got, comms
}

// Churn: 100,000 processes started and ended: totals exact, no kernel entry
// left behind, the process table back to its size before.
func TestChurnOfShortLivedProcesses(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 5000
	}
	runChurn(t, n, setup{}, nil)
}

// Churn while the daemon is held from reading, through a ring buffer of one
// page: lifecycle records are lost (on CI's faster machine the default 1 MiB
// lost 10% of 100,000 processes' while the race detector slowed the
// reader), exits among them. The processes that lost them look running
// until a sweep asks the kernel; a loss brings it within a second, and the
// engine's own folds (no scrape asks here) free their entries well within
// the 30 s of the regular sweep.
func TestChurnThatLosesLifecycleRecords(t *testing.T) {
	held := make(chan struct{})
	got := runChurn(t, 5000, setup{held: held, load: func(o *loader.Options) { o.RingBufferBytes = uint32(os.Getpagesize()) }},
		func(h *harness) {
			close(held)
			var left int
			freed := testenv.Eventually(10*time.Second, func() bool {
				left = 0
				if err := h.probes.ReadProcessKeys(func(loader.ErrnoKey) { left++ }); err != nil {
					t.Fatal(err)
				}
				return left == 0
			})
			if !freed {
				t.Errorf("%d kernel entries left 10 s after the churn with no scrape, want 0 (the engine's folds free them)", left)
			}
		})
	if got[`sysobsd_drops_total{reason="ringbuf_full"}`] == 0 {
		t.Errorf("no lifecycle record lost through a ring buffer of one page nobody read: the test checked no sweep")
	}
}

// runChurn runs n processes making 3 getppid calls each under s, calls
// churned (if set) once they have all ended, and checks the totals, the
// kernel entries freed and the processes folded; it returns the last scrape.
func runChurn(t *testing.T, n int, s setup, churned func(*harness)) map[string]float64 {
	t.Helper()
	const each = 3
	comm := uniqueComm("churn")
	s.filters = config.Filters{Include: config.Match{Comms: []string{comm}, Syscalls: []string{"getppid"}}}
	h := start(t, s)
	link := h.workloadNamed(comm)
	before := time.Now()
	if out, err := exec.Command(link, "churn", comm, fmt.Sprint(n), fmt.Sprint(each)).CombinedOutput(); err != nil {
		t.Fatalf("churn: %v: %s", err, out)
	}
	t.Logf("%d processes in %v", n, time.Since(before))
	if churned != nil {
		churned(h)
	}
	// Exact under its name, unless lifecycle records were lost (counted):
	// then the counts of processes no record named are under ~unknown.
	var got map[string]float64
	exact := testenv.Eventually(10*time.Second, func() bool {
		got = h.scrape()
		return got[calls(comm, "getppid")]+got[calls(tally.UnknownComm, "getppid")] == float64(n*each)
	})
	if !exact {
		var drops []string
		for k, v := range got {
			if strings.HasPrefix(k, "sysobsd_drops_total") && v > 0 {
				drops = append(drops, fmt.Sprintf("%s %v", k, v))
			}
		}
		t.Fatalf("getppid under %s %v + under ~unknown %v, want %d (~other %v; %v; kernel entries: %v slots, %v hash; processes tracked %v)", comm, got[calls(comm, "getppid")], got[calls(tally.UnknownComm, "getppid")], n*each, got[calls(tally.OtherComm, "getppid")], drops,
			got[`sysobsd_bpf_map_entries{map="call_slots"}`], got[`sysobsd_bpf_map_entries{map="syscall_stats"}`], got[`sysobsd_processes_tracked{}`])
	}
	if lost := got[`sysobsd_drops_total{reason="ringbuf_full"}`]; lost == 0 && got[calls(comm, "getppid")] != float64(n*each) {
		t.Errorf("%s = %v with no record lost, want %d", calls(comm, "getppid"), got[calls(comm, "getppid")], n*each)
	} else if lost > 0 {
		t.Logf("%v lifecycle records lost under load: %v calls under ~unknown", lost, got[calls(tally.UnknownComm, "getppid")])
	}
	var left int
	ok := testenv.Eventually(10*time.Second, func() bool {
		got := h.scrape()
		left = int(got[`sysobsd_bpf_map_entries{map="syscall_stats"}`] + got[`sysobsd_bpf_map_entries{map="call_slots"}`])
		return left == 0
	})
	if !ok {
		t.Errorf("%d kernel entries left after the churn, want 0 (only the churn's getppid is counted)", left)
	}
	got = h.scrape()
	if folded := got[`sysobsd_processes_folded_total{}`]; folded < float64(n) {
		t.Errorf("sysobsd_processes_folded_total = %v, want at least %d", folded, n)
	}
	return got
}
