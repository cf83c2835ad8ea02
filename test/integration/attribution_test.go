package integration

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sysobsd/sysobsd/internal/cgroups"
	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/tally"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

// gatedProcess is a workload that makes n getppid calls per round, one round
// per byte the test sends, so the test can move or reconfigure in between.
type gatedProcess struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	acks  io.Reader
}

func startGated(t *testing.T, workload, comm string, n int) *gatedProcess {
	t.Helper()
	cmd := exec.Command(workload, "gated", comm, strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	acks, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &gatedProcess{t: t, cmd: cmd, stdin: stdin, acks: acks}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	return g
}

// round makes the process run one round and waits until it is done.
func (g *gatedProcess) round() {
	g.t.Helper()
	if _, err := g.stdin.Write([]byte{'x'}); err != nil {
		g.t.Fatal(err)
	}
	var ack [1]byte
	if _, err := io.ReadFull(g.acks, ack[:]); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gatedProcess) exit() {
	g.t.Helper()
	g.stdin.Close()
	if err := g.cmd.Wait(); err != nil {
		g.t.Fatal(err)
	}
}

// makeCgroup creates a cgroup at rel under the cgroup2 mount, removed at the end.
func makeCgroup(t *testing.T, rel string) string {
	t.Helper()
	mount, err := findCgroup2()
	if err != nil {
		testenv.Skip(t, "needs a cgroup2 mount: "+err.Error())
	}
	dir := filepath.Join(mount, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		testenv.Skip(t, "cannot create a cgroup: "+err.Error())
	}
	t.Cleanup(func() {
		// Deepest first; a cgroup is removable once its processes are gone.
		for d := dir; d != mount && strings.HasPrefix(d, mount); d = filepath.Dir(d) {
			testenv.Eventually(2*time.Second, func() bool { return os.Remove(d) == nil || os.IsNotExist(os.Remove(d)) })
		}
	})
	return dir
}

func findCgroup2() (string, error) {
	r := cgroupResolverPath()
	if r == "" {
		return "", fmt.Errorf("no cgroup2 in /proc/self/mountinfo")
	}
	return r, nil
}

func moveTo(t *testing.T, dir string, pid int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatalf("move %d to %s: %v", pid, dir, err)
	}
}

func series(name string, labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for k, v := range labels {
		parts = append(parts, fmt.Sprintf("%s=%q", k, v))
	}
	return name + labelStringSorted(parts)
}

// A process in a cgroup named like a systemd unit is counted under the unit.
func TestUnitLabelFromCgroup(t *testing.T) {
	h := start(t, setup{labels: []string{"comm", "unit"}})
	unit := fmt.Sprintf("sysobsd-demo%d.service", rand.IntN(1000000))
	dir := makeCgroup(t, unit)
	comm := uniqueComm("unit")
	g := startGated(t, h.workload, comm, 400)
	moveTo(t, dir, g.cmd.Process.Pid)
	g.round()
	g.exit()
	h.expect(2*time.Second, map[string]float64{
		series("sysobsd_syscalls_total", map[string]string{"comm": comm, "unit": unit, "syscall": "getppid"}): 400,
	})
}

// A unit that runs and is removed before the daemon looks (a oneshot, a cron
// job: within a fold interval) still labels its calls: the path comes with
// the cgroup's creation record, not from a walk that no longer finds it.
func TestUnitLabelOfCgroupGoneBeforeTheFold(t *testing.T) {
	h := start(t, setup{labels: []string{"comm", "unit"}})
	unit := fmt.Sprintf("sysobsd-brief%d.service", rand.IntN(1000000))
	dir := makeCgroup(t, unit)
	comm := uniqueComm("brief")
	g := startGated(t, h.workload, comm, 300)
	moveTo(t, dir, g.cmd.Process.Pid)
	g.round()
	g.exit()
	if err := os.Remove(dir); err != nil {
		t.Fatalf("remove the cgroup right after its process: %v", err)
	}
	h.expect(3*time.Second, map[string]float64{
		series("sysobsd_syscalls_total", map[string]string{"comm": comm, "unit": unit, "syscall": "getppid"}): 300,
	})
}

// A docker-style cgroup path gives the container id.
func TestContainerLabelFromDockerCgroup(t *testing.T) {
	h := start(t, setup{labels: []string{"container"}})
	id := fmt.Sprintf("%064x", rand.Uint64())
	dir := makeCgroup(t, filepath.Join(fmt.Sprintf("sysobsd-test%d.slice", rand.IntN(1000000)), "docker-"+id+".scope"))
	g := startGated(t, h.workload, uniqueComm("ctr"), 300)
	moveTo(t, dir, g.cmd.Process.Pid)
	g.round()
	g.round()
	g.exit()
	h.expect(2*time.Second, map[string]float64{
		series("sysobsd_syscalls_total", map[string]string{"container": id, "syscall": "getppid"}): 600,
	})
}

// Calls made before a move stay with the old cgroup's series; no counter
// goes backwards and the total is exact.
func TestMoveBetweenCgroupsSplitsAtTheScrape(t *testing.T) {
	h := start(t, setup{labels: []string{"comm", "unit"}})
	base := rand.IntN(1000000)
	first := fmt.Sprintf("sysobsd-a%d.service", base)
	second := fmt.Sprintf("sysobsd-b%d.service", base)
	dirA, dirB := makeCgroup(t, first), makeCgroup(t, second)
	comm := uniqueComm("mv")
	g := startGated(t, h.workload, comm, 250)
	moveTo(t, dirA, g.cmd.Process.Pid)
	g.round()
	a := series("sysobsd_syscalls_total", map[string]string{"comm": comm, "unit": first, "syscall": "getppid"})
	b := series("sysobsd_syscalls_total", map[string]string{"comm": comm, "unit": second, "syscall": "getppid"})
	h.expect(2*time.Second, map[string]float64{a: 250})
	moveTo(t, dirB, g.cmd.Process.Pid)
	g.round()
	g.exit()
	h.expect(2*time.Second, map[string]float64{a: 250, b: 250})
}

// An excluded comm is never counted; everyone else stays exact.
func TestExcludedCommIsNotCounted(t *testing.T) {
	skipped := uniqueComm("skip")
	h := start(t, setup{filters: config.Filters{Exclude: config.Match{Comms: []string{skipped}}}})
	// Named by exec (a symlink), so the filter holds from its first call.
	link := h.workloadNamed(skipped)
	if out, err := exec.Command(link, "getppid-only", "500").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	counted := uniqueComm("kept")
	h.run("basic", counted, "100", "2", "3")
	got := h.expect(2*time.Second, map[string]float64{
		calls(counted, "write"):           103,
		errs(counted, "openat", "ENOENT"): 2,
	})
	for k := range got {
		if strings.Contains(k, `comm="`+skipped+`"`) {
			t.Errorf("excluded comm exported: %s = %v", k, got[k])
		}
	}
}

// A call whose entry was not timed (its process was excluded then, and a
// rename within the call let it in) is counted without a duration: never
// with the entry time of an earlier call whose exit was not counted, which
// the entry time left in the thread's slot used to give it (here the sleep).
func TestCallEnteredWhileExcludedHasNoStaleDuration(t *testing.T) {
	skip, keep := uniqueComm("flipx"), uniqueComm("flipk")
	h := start(t, setup{filters: config.Filters{Exclude: config.Match{Comms: []string{skip}}}})
	noStart := `sysobsd_drops_total{reason="no_start_time"}`
	before := h.scrape()[noStart]
	if out, err := exec.Command(h.workloadNamed(keep), "flip", skip, keep, "300").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// The first prctl's exit was excluded (renamed skip), the sleep too;
	// the second prctl's entry was excluded, its exit counted.
	got := h.expect(3*time.Second, map[string]float64{calls(keep, "prctl"): 1})
	if s := got[seconds(keep, "prctl")]; s != 0 {
		t.Errorf("%s = %v s, want 0: the prctl's entry was never timed (0.3 s is the sleep's)", seconds(keep, "prctl"), s)
	}
	if got[noStart] <= before {
		t.Errorf("%s = %v, want more than %v: the call was counted without its duration", noStart, got[noStart], before)
	}
	if n := got[calls(keep, "nanosleep")]; n != 0 {
		t.Errorf("%s = %v, want 0 (excluded)", calls(keep, "nanosleep"), n)
	}
}

// A process that takes the pid of one whose counts are not folded yet keeps
// its own: siblings share an exec count (self_exec_id is inherited at fork),
// so keyed by it the two were counted as one, and the daemon, taking the
// running one's entries for the exited one's, folded and deleted them while
// they counted. The pid is reused on purpose (ns_last_pid).
func TestReusedPIDCountsApart(t *testing.T) {
	h := start(t, setup{})
	a, b := uniqueComm("pida"), uniqueComm("pidb")
	linkA, linkB := h.workloadNamed(a), h.workloadNamed(b)
	for try := 0; try < 50; try++ {
		first := exec.Command(linkA, "getppid-only", "100")
		if out, err := first.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		pid := first.Process.Pid
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Fatalf("set the next pid: %v", err)
		}
		second := exec.Command(linkB, "spin", b, "50")
		stdin, err := second.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := second.Start(); err != nil {
			t.Fatal(err)
		}
		if second.Process.Pid != pid { // another task took it first: again
			stdin.Close()
			second.Wait()
			h.expect(3*time.Second, map[string]float64{calls(a, "getppid"): float64(100 * (try + 1))})
			continue
		}
		want := map[string]float64{calls(a, "getppid"): float64(100 * (try + 1)), calls(b, "getppid"): float64(50 * (try + 1))}
		h.expect(3*time.Second, want)
		// Folds run while the second process lives on: its counts stay.
		time.Sleep(2500 * time.Millisecond)
		h.expect(time.Second, want)
		stdin.Close()
		if err := second.Wait(); err != nil {
			t.Fatal(err)
		}
		h.expect(3*time.Second, want)
		return
	}
	t.Fatal("no pid reused in 50 tries: the host starts tasks too often")
}

// With a cap of n series, 10n distinct comms give at most n series plus the
// overflow, and the sum over all series is the exact total.
func TestSeriesCapKeepsTotalsExact(t *testing.T) {
	const capSeries, procs, each = 5, 50, 7
	prefix := uniqueComm("cap")[:9]
	comms := make([]string, procs)
	for i := range comms {
		comms[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	limits := tally.Limits{MaxSeries: capSeries}
	h := start(t, setup{
		limits: &limits,
		// Only these processes, only getppid: the host's own calls stay out.
		filters: config.Filters{Include: config.Match{Comms: comms, Syscalls: []string{"getppid"}}},
	})
	for _, comm := range comms {
		// Named by exec, so the include filter counts them from the first call.
		link := h.workloadNamed(comm)
		if out, err := exec.Command(link, "getppid-only", strconv.Itoa(each)).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	var got map[string]float64
	var sum float64
	var n int
	ok := testenv.Eventually(3*time.Second, func() bool {
		got = h.scrape()
		sum, n = 0, 0
		for k, v := range got {
			if strings.HasPrefix(k, "sysobsd_syscalls_total{") {
				sum += v
				n++
			}
		}
		return sum == procs*each
	})
	if !ok {
		t.Fatalf("sum over sysobsd_syscalls_total = %v, want %d", sum, procs*each)
	}
	if n > capSeries+1 {
		t.Errorf("%d series of sysobsd_syscalls_total, want at most %d plus the overflow", n, capSeries)
	}
	other := `sysobsd_syscalls_total{comm="~other",syscall="~other"}`
	if got[other] != float64((procs-capSeries)*each) {
		t.Errorf("%s = %v, want %d", other, got[other], (procs-capSeries)*each)
	}
	if got[`sysobsd_series_overflow_total{metric="syscalls"}`] != procs-capSeries {
		t.Errorf("sysobsd_series_overflow_total = %v, want %d", got[`sysobsd_series_overflow_total{metric="syscalls"}`], procs-capSeries)
	}
}

// A reload that changes the labels while a process runs loses no count.
func TestLabelChangeUnderLoadLosesNothing(t *testing.T) {
	comm := uniqueComm("hup")
	h := start(t, setup{filters: config.Filters{Include: config.Match{Comms: []string{comm}}}})
	const n = 3000
	g := startGated(t, h.workload, comm, n)
	g.round()
	h.expect(2*time.Second, map[string]float64{calls(comm, "getppid"): n})
	if err := h.engine.Reconfigure(context.Background(), labelSet([]string{"comm", "pid"}), tally.DefaultLimits); err != nil {
		t.Fatal(err)
	}
	g.round()
	g.round()
	pid := strconv.Itoa(g.cmd.Process.Pid)
	g.exit()
	var sum float64
	ok := testenv.Eventually(2*time.Second, func() bool {
		sum = 0
		for k, v := range h.scrape() {
			if strings.HasPrefix(k, "sysobsd_syscalls_total{") && strings.Contains(k, `syscall="getppid"`) {
				sum += v
			}
		}
		return sum == 3*n
	})
	if !ok {
		t.Fatalf("getppid summed over series = %v after the reload, want %d", sum, 3*n)
	}
	after := series("sysobsd_syscalls_total", map[string]string{"comm": comm, "pid": pid, "syscall": "getppid"})
	if got := h.scrape()[after]; got != 2*n {
		t.Errorf("%s = %v, want %d (the calls after the reload)", after, got, 2*n)
	}
}

// A 32-bit program's calls are named from the i386 table: getppid is 64
// there, which is semget on x86_64.
func TestCompatTaskNamedFromI386Table(t *testing.T) {
	h := start(t, setup{})
	w32 := testenv.BuildWorkload32(t, t.TempDir())
	comm := uniqueComm("i386")
	link := filepath.Join(t.TempDir(), comm)
	if err := os.Symlink(w32, link); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(link, "getppid-only", "321").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got := h.expect(2*time.Second, map[string]float64{calls(comm, "getppid"): 321})
	if v := got[calls(comm, "semget")]; v != 0 {
		t.Errorf("%s = %v: named from the x86_64 table", calls(comm, "semget"), v)
	}
	// i386's write is 4 (x86_64's stat, which moves no bytes): its bytes
	// are counted from the i386 table.
	comm = uniqueComm("i386w")
	h.run32(w32, "basic", comm, "250", "0", "3")
	h.expect(2*time.Second, map[string]float64{
		calls(comm, "write"):      253,
		bytesMoved(comm, "write"): 250,
	})
}

func labelStringSorted(parts []string) string {
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

func cgroupResolverPath() string {
	mount, err := cgroups.FindMount("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	return mount
}

// The per-process map full, a process's calls are counted by name and
// cgroup; once that cgroup is removed, its group entry is folded into the
// lasting totals and deleted from the kernel: the series stays exact and the
// group map does not fill with the cgroups of containers long gone. With the
// comm label only, the cgroup's path is never looked up: its removal record
// alone tells.
func TestGroupEntryOfARemovedCgroupIsFoldedAndDeleted(t *testing.T) {
	for _, labels := range [][]string{{"comm", "unit"}, {"comm"}} {
		t.Run(strings.Join(labels, ","), func(t *testing.T) { foldGroupOfRemovedCgroup(t, labels) })
	}
}

func foldGroupOfRemovedCgroup(t *testing.T, labels []string) {
	const n = 300
	filler, comm := uniqueComm("fill"), uniqueComm("gone")
	h := start(t, setup{
		load:    func(o *loader.Options) { o.CallSlots, o.StatsEntries = 0, 1 },
		labels:  labels,
		filters: config.Filters{Include: config.Match{Comms: []string{filler, comm}, Syscalls: []string{"getppid"}}},
	})
	base := rand.IntN(1000000)
	unit, fillUnit := fmt.Sprintf("sysobsd-gone%d.service", base), fmt.Sprintf("sysobsd-fill%d.service", base)
	dir := makeCgroup(t, unit)
	withLabels := func(comm, unit string) string {
		l := map[string]string{"comm": comm, "syscall": "getppid"}
		if slices.Contains(labels, "unit") {
			l["unit"] = unit
		}
		return series("sysobsd_syscalls_total", l)
	}
	// The filler takes the per-process map's one entry and keeps it; in a
	// unit of its own, whatever unit the test runs in.
	full := startGated(t, h.workload, filler, 1)
	moveTo(t, makeCgroup(t, fillUnit), full.cmd.Process.Pid)
	full.round()
	defer full.exit()
	h.expect(2*time.Second, map[string]float64{withLabels(filler, fillUnit): 1})

	g := startGated(t, h.workload, comm, n)
	moveTo(t, dir, g.cmd.Process.Pid)
	g.round()
	g.exit()
	if slices.Contains(labels, "unit") {
		// Scraped while the cgroup is there: its unit is known.
		h.expect(2*time.Second, map[string]float64{withLabels(comm, unit): n, `sysobsd_bpf_map_entries{map="group_stats"}`: 1})
	}
	if !testenv.Eventually(2*time.Second, func() bool { return os.Remove(dir) == nil }) {
		t.Fatalf("remove %s: its process is gone, yet the cgroup stays busy", dir)
	}
	// Counted by name and cgroup, then folded a grace after the removal.
	got := h.expect(10*time.Second, map[string]float64{withLabels(comm, unit): n, `sysobsd_bpf_map_entries{map="group_stats"}`: 0})
	if got[`sysobsd_drops_total{reason="stats_map_full"}`] != n {
		t.Errorf("stats_map_full drops = %v, want %d", got[`sysobsd_drops_total{reason="stats_map_full"}`], n)
	}
	left := 0
	if err := h.probes.GroupStats().Read(func(loader.GroupKey, loader.Counts) { left++ }); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("group_stats holds %d entries after the cgroup's removal, want 0", left)
	}
}

// Cgroups come and go while the per-process map is full (a host of short
// jobs, each in a scope of its own): every call is counted under its name,
// and the group map ends empty, each cgroup's entry freed after its removal.
func TestCgroupChurnLeavesNoGroupEntries(t *testing.T) {
	const cgroups, n = 40, 25
	filler, comm := uniqueComm("fill"), uniqueComm("job")
	h := start(t, setup{
		load:    func(o *loader.Options) { o.CallSlots, o.StatsEntries, o.GroupStatsEntries = 0, 1, 64 },
		filters: config.Filters{Include: config.Match{Comms: []string{filler, comm}, Syscalls: []string{"getppid"}}},
	})
	full := startGated(t, h.workload, filler, 1)
	full.round()
	defer full.exit()
	h.expect(2*time.Second, map[string]float64{calls(filler, "getppid"): 1})

	base := rand.IntN(1000000)
	for i := range cgroups {
		dir := makeCgroup(t, fmt.Sprintf("sysobsd-job%d-%d.scope", base, i))
		g := startGated(t, h.workload, comm, n)
		moveTo(t, dir, g.cmd.Process.Pid)
		g.round()
		g.exit()
		if !testenv.Eventually(2*time.Second, func() bool { return os.Remove(dir) == nil }) {
			t.Fatalf("remove %s: its process is gone, yet the cgroup stays busy", dir)
		}
	}
	got := h.expect(10*time.Second, map[string]float64{
		calls(comm, "getppid"):                       cgroups * n,
		`sysobsd_bpf_map_entries{map="group_stats"}`: 0,
	})
	if v, ok := got[calls(tally.OtherComm, "getppid")]; ok {
		t.Errorf(`%v calls under comm="~other" with room in group_stats`, v)
	}
}
