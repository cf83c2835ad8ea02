package tally

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/lifecycle"
	"github.com/sysobsd/sysobsd/internal/loader"
)

const allLabels = LabelSet(LabelComm | LabelUnit | LabelContainer | LabelCgroup | LabelPID)

// sampleLabels has a distinct value for every label.
var sampleLabels = Labels{Comm: "nginx", Unit: "nginx.service", Container: "c0ffee", Cgroup: "/system.slice/nginx.service", PID: "42"}

func TestLabelSetNamesInExpositionOrder(t *testing.T) {
	tests := []struct {
		set  LabelSet
		want []string
	}{
		{0, nil},
		{LabelSet(LabelComm), []string{"comm"}},
		{LabelSet(LabelPID | LabelComm), []string{"comm", "pid"}},
		{LabelSet(LabelCgroup | LabelUnit), []string{"unit", "cgroup"}},
		{LabelSet(LabelContainer | LabelPID | LabelUnit), []string{"unit", "container", "pid"}},
		{allLabels, []string{"comm", "unit", "container", "cgroup", "pid"}},
	}
	for _, tt := range tests {
		if got := tt.set.Names(); !slices.Equal(got, tt.want) {
			t.Errorf("LabelSet(%05b).Names() = %q, want %q", tt.set, got, tt.want)
		}
	}
}

// The config accepts exactly the labels the tally knows, in the same order.
func TestLabelNamesMatchConfig(t *testing.T) {
	var set LabelSet
	for _, name := range config.LabelNames {
		l, ok := LabelNames[name]
		if !ok {
			t.Errorf("config label %q unknown to the tally", name)
		}
		set |= LabelSet(l)
	}
	if len(LabelNames) != len(config.LabelNames) {
		t.Errorf("tally knows %d labels, config %d", len(LabelNames), len(config.LabelNames))
	}
	if got := set.Names(); !slices.Equal(got, config.LabelNames) {
		t.Errorf("Names() of every config label = %q, want %q", got, config.LabelNames)
	}
}

func TestLabelsValuesAndProject(t *testing.T) {
	l := sampleLabels
	tests := []struct {
		set     LabelSet
		values  []string
		project Labels
	}{
		{0, nil, Labels{}},
		{LabelSet(LabelComm), []string{"nginx"}, Labels{Comm: "nginx"}},
		{LabelSet(LabelPID | LabelComm), []string{"nginx", "42"}, Labels{Comm: "nginx", PID: "42"}},
		{LabelSet(LabelContainer | LabelCgroup), []string{"c0ffee", "/system.slice/nginx.service"},
			Labels{Container: "c0ffee", Cgroup: "/system.slice/nginx.service"}},
		{LabelSet(LabelUnit), []string{"nginx.service"}, Labels{Unit: "nginx.service"}},
		{allLabels, []string{"nginx", "nginx.service", "c0ffee", "/system.slice/nginx.service", "42"}, l},
	}
	for _, tt := range tests {
		if got := l.Values(tt.set); !slices.Equal(got, tt.values) {
			t.Errorf("Values(%q) = %q, want %q", tt.set.Names(), got, tt.values)
		}
		if got := l.project(tt.set); got != tt.project {
			t.Errorf("project(%q) = %+v, want %+v", tt.set.Names(), got, tt.project)
		}
		// Values has one value per name, whatever the labels hold.
		if got := (Labels{}).Values(tt.set); len(got) != len(tt.set.Names()) {
			t.Errorf("Values(%q) of empty labels has %d values, want %d", tt.set.Names(), len(got), len(tt.set.Names()))
		}
	}
}

// fakeCgroups is a cgroups.Resolver that knows paths: a pointer, so that
// SetLabels can compare it.
type fakeCgroups struct {
	paths map[uint64]string
	gone  map[uint64]bool
	asked int
	// removedAsked counts the calls of Removed.
	removedAsked int
}

func (c *fakeCgroups) Learn(id uint64, path string) {
	if c.paths == nil {
		c.paths = make(map[uint64]string)
	}
	if _, ok := c.paths[id]; !ok {
		c.paths[id] = path
	}
}

func (c *fakeCgroups) Removed(ids []uint64) map[uint64]struct{} {
	c.removedAsked++
	gone := make(map[uint64]struct{})
	for _, id := range ids {
		if c.gone[id] {
			gone[id] = struct{}{}
		}
	}
	return gone
}

func (c *fakeCgroups) Path(id uint64) (string, bool) {
	c.asked++
	p, ok := c.paths[id]
	return p, ok
}

// The cgroups of the label tests.
const (
	ctrID          = "3f1a9c2b7d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeef"
	nginxCgroup    = uint64(1)
	dockerCgroup   = uint64(2)
	rootCgroup     = uint64(3)
	nginxSubCgroup = uint64(4)
	unknownCgroup  = uint64(99)
	nginxPath      = "/system.slice/nginx.service"
	dockerPath     = "/system.slice/docker-" + ctrID + ".scope"
	dockerUnit     = "docker-" + ctrID + ".scope"
)

func newFakeCgroups() *fakeCgroups {
	return &fakeCgroups{paths: map[uint64]string{
		nginxCgroup:    nginxPath,
		dockerCgroup:   dockerPath,
		rootCgroup:     "/",
		nginxSubCgroup: nginxPath + "/worker",
	}}
}

// fork records a new process in a cgroup.
func (h *harness) fork(tgid uint32, comm string, cgroup uint64) {
	h.procs.Apply(lifecycle.Record{Kind: lifecycle.Fork, TGID: tgid, ExecID: 1, CgroupID: cgroup, Comm: comm})
}

func TestLabelerLabelsFromProcessAndCgroup(t *testing.T) {
	h := newHarness(t, nil)
	h.fork(10, "nginx", nginxCgroup)
	h.fork(11, "app", dockerCgroup)
	h.fork(12, "lost", unknownCgroup)
	h.fork(13, "init", rootCgroup)
	h.fork(14, "worker", nginxSubCgroup)
	fake := newFakeCgroups()

	tests := []struct {
		name    string
		set     LabelSet
		cgroups Cgroups
		tgid    uint32
		want    Labels
	}{
		{"systemd service", allLabels, fake, 10,
			Labels{Comm: "nginx", Unit: "nginx.service", Cgroup: nginxPath, PID: "10"}},
		{"sub-cgroup of a service", allLabels, fake, 14,
			Labels{Comm: "worker", Unit: "nginx.service", Cgroup: nginxPath + "/worker", PID: "14"}},
		{"docker container", allLabels, fake, 11,
			Labels{Comm: "app", Unit: dockerUnit, Container: ctrID, Cgroup: dockerPath, PID: "11"}},
		{"root cgroup", allLabels, fake, 13,
			Labels{Comm: "init", Cgroup: "/", PID: "13"}},
		{"unknown cgroup id", allLabels, fake, 12,
			Labels{Comm: "lost", PID: "12"}},
		{"comm and pid only", LabelSet(LabelComm | LabelPID), fake, 11,
			Labels{Comm: "app", PID: "11"}},
		{"container only", LabelSet(LabelContainer), fake, 11,
			Labels{Container: ctrID}},
		{"unit only", LabelSet(LabelUnit), fake, 11,
			Labels{Unit: dockerUnit}},
		{"cgroup only", LabelSet(LabelCgroup), fake, 10,
			Labels{Cgroup: nginxPath}},
		{"no cgroups source", allLabels, nil, 11,
			Labels{Comm: "app", PID: "11"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lb := labeler{set: tt.set, cgroups: tt.cgroups}
			got, ok := lb.labels(h.procs, tt.tgid, 1)
			if !ok || got != tt.want {
				t.Errorf("labels(%d) = %+v, %v; want %+v, true", tt.tgid, got, ok, tt.want)
			}
		})
	}

	lb := labeler{set: allLabels, cgroups: fake}
	if got, ok := lb.labels(h.procs, 77, 1); ok {
		t.Errorf("labels of a process nothing names = %+v, true; want false", got)
	}
}

func TestLabelerNamesCgroupOnceResolvable(t *testing.T) {
	h := newHarness(t, nil)
	h.fork(10, "new", 50)
	fake := newFakeCgroups()
	lb := labeler{set: allLabels, cgroups: fake}
	if got, _ := lb.labels(h.procs, 10, 1); got != (Labels{Comm: "new", PID: "10"}) {
		t.Errorf("before the cgroup resolves: %+v", got)
	}
	fake.paths[50] = "/system.slice/new.service"
	want := Labels{Comm: "new", Unit: "new.service", Cgroup: "/system.slice/new.service", PID: "10"}
	if got, _ := lb.labels(h.procs, 10, 1); got != want {
		t.Errorf("once the cgroup resolves: %+v, want %+v", got, want)
	}
	// Known now: asked no more.
	asked := fake.asked
	lb.labels(h.procs, 10, 1)
	if fake.asked != asked {
		t.Errorf("resolved cgroup asked again")
	}
}

func TestSeriesLabelledByCgroup(t *testing.T) {
	h := newHarness(t, nil)
	h.tally.SetLabels(LabelSet(LabelComm|LabelUnit|LabelContainer), newFakeCgroups())
	h.fork(10, "nginx", nginxCgroup)
	h.fork(11, "nginx", dockerCgroup)
	h.fork(12, "nginx", unknownCgroup)
	h.kernel.call(10, 1, read, 1, 10)
	h.kernel.call(11, 1, read, 2, 20)
	h.kernel.call(12, 1, read, 4, 40)
	h.kernel.fail(11, 1, openat, enoent, 3)

	inNginx := Labels{Comm: "nginx", Unit: "nginx.service"}
	inDocker := Labels{Comm: "nginx", Unit: dockerUnit, Container: ctrID}
	snap := h.snapshot()
	if want := LabelSet(LabelComm | LabelUnit | LabelContainer); snap.LabelSet != want {
		t.Errorf("LabelSet = %q, want %q", snap.LabelSet.Names(), want.Names())
	}
	checkCalls(t, "labelled", snap.Calls, map[SeriesKey]loader.Counts{
		{inNginx, read}:               counts(1, 10),
		{inDocker, read}:              counts(2, 20),
		{Labels{Comm: "nginx"}, read}: counts(4, 40),
	})
	checkErrors(t, "labelled", snap.Errors, map[ErrorKey]uint64{{SeriesKey{inDocker, openat}, enoent}: 3})

	// Process 10 moves into the container's cgroup: later calls count there.
	h.procs.Apply(lifecycle.Record{Kind: lifecycle.Cgroup, TGID: 10, ExecID: 1, CgroupID: dockerCgroup, Comm: "nginx"})
	h.kernel.call(10, 1, read, 5, 50)
	next := h.snapshot()
	checkCalls(t, "moved", next.Calls, map[SeriesKey]loader.Counts{
		{inNginx, read}:               counts(1, 10),
		{inDocker, read}:              counts(7, 70),
		{Labels{Comm: "nginx"}, read}: counts(4, 40),
	})
	checkNonDecreasing(t, "moved", snap, next)
}

// sumAll is a snapshot's sum over every series, overflow included.
func sumAll(s *Snapshot) (loader.Counts, uint64) {
	return plusCounts(sumCalls(s), s.CallsOther), sumErrors(s) + s.ErrorsOther
}

// checkSetLabelsKeepsCounts fails if the sums of prev and next differ or a
// series in both went down.
func checkSetLabelsKeepsCounts(t *testing.T, prev, next *Snapshot) {
	t.Helper()
	pc, pe := sumAll(prev)
	nc, ne := sumAll(next)
	if pc != nc || pe != ne {
		t.Errorf("sums went from %+v calls, %d errors to %+v, %d", pc, pe, nc, ne)
	}
	for k, p := range prev.Calls {
		if n, ok := next.Calls[k]; ok && (n.Calls < p.Calls || n.NS < p.NS) {
			t.Errorf("series %+v went from %+v to %+v", k, p, n)
		}
	}
	for k, p := range prev.Errors {
		if n, ok := next.Errors[k]; ok && n < p {
			t.Errorf("error series %+v went from %d to %d", k, p, n)
		}
	}
}

func TestSetLabelsAddingLabelsKeepsCounts(t *testing.T) {
	h := newHarness(t, nil)
	h.fork(10, "nginx", nginxCgroup)
	h.fork(11, "nginx", dockerCgroup)
	h.fork(12, "bash", nginxCgroup)
	h.kernel.call(10, 1, read, 5, 50)
	h.kernel.call(11, 1, read, 3, 30)
	h.kernel.call(12, 1, read, 7, 70)
	h.kernel.fail(10, 1, openat, enoent, 1)
	h.kernel.fail(11, 1, openat, enoent, 2)
	h.kernel.fail(12, 1, openat, eacces, 4)
	h.record(lifecycle.Exit, 12, 1, "bash")

	wantCalls := map[SeriesKey]loader.Counts{series("nginx", read): counts(8, 80), series("bash", read): counts(7, 70)}
	wantErrors := map[ErrorKey]uint64{errSeries("nginx", openat, enoent): 3, errSeries("bash", openat, eacces): 4}
	before := h.snapshot()
	checkCalls(t, "before", before.Calls, wantCalls)
	checkErrors(t, "before", before.Errors, wantErrors)

	// What was exported stays, under the old labels: unit and container
	// are "" on it, which is the same series.
	h.tally.SetLabels(LabelSet(LabelComm|LabelUnit|LabelContainer), newFakeCgroups())
	after := h.snapshot()
	checkCalls(t, "after", after.Calls, wantCalls)
	checkErrors(t, "after", after.Errors, wantErrors)
	checkSetLabelsKeepsCounts(t, before, after)

	// Later counts carry the new labels.
	h.kernel.call(10, 1, read, 2, 20)
	h.kernel.fail(11, 1, openat, enoent, 1)
	inNginx := Labels{Comm: "nginx", Unit: "nginx.service"}
	inDocker := Labels{Comm: "nginx", Unit: dockerUnit, Container: ctrID}
	wantCalls[SeriesKey{inNginx, read}] = counts(2, 20)
	wantErrors[ErrorKey{SeriesKey{inDocker, openat}, enoent}] = 1
	later := h.snapshot()
	checkCalls(t, "later", later.Calls, wantCalls)
	checkErrors(t, "later", later.Errors, wantErrors)

	// Their exits fold what the new labels had, once.
	h.record(lifecycle.Exit, 10, 1, "nginx")
	h.record(lifecycle.Exit, 11, 1, "nginx")
	exited := h.snapshot()
	checkCalls(t, "exited", exited.Calls, wantCalls)
	checkErrors(t, "exited", exited.Errors, wantErrors)
}

func TestSetLabelsDroppingLabelMergesSeries(t *testing.T) {
	h := newHarness(t, nil)
	h.tally.SetLabels(LabelSet(LabelComm|LabelPID), nil)
	h.fork(10, "nginx", 0)
	h.fork(11, "nginx", 0)
	h.fork(12, "nginx", 0)
	h.kernel.call(10, 1, read, 1, 10)
	h.kernel.call(11, 1, read, 2, 20)
	h.kernel.call(12, 1, read, 3, 30)
	h.kernel.fail(10, 1, openat, enoent, 1)
	h.kernel.fail(12, 1, openat, enoent, 2)
	h.record(lifecycle.Exit, 10, 1, "nginx")
	h.record(lifecycle.Exit, 11, 1, "nginx")

	withPID := func(pid string) Labels { return Labels{Comm: "nginx", PID: pid} }
	before := h.snapshot()
	checkCalls(t, "before", before.Calls, map[SeriesKey]loader.Counts{
		{withPID("10"), read}: counts(1, 10),
		{withPID("11"), read}: counts(2, 20),
		{withPID("12"), read}: counts(3, 30),
	})

	h.tally.SetLabels(LabelSet(LabelComm), nil)
	after := h.snapshot()
	if after.LabelSet != LabelSet(LabelComm) {
		t.Errorf("LabelSet = %q, want [comm]", after.LabelSet.Names())
	}
	checkCalls(t, "after", after.Calls, map[SeriesKey]loader.Counts{series("nginx", read): counts(6, 60)})
	checkErrors(t, "after", after.Errors, map[ErrorKey]uint64{errSeries("nginx", openat, enoent): 3})
	checkSetLabelsKeepsCounts(t, before, after)

	h.kernel.call(12, 1, read, 4, 40)
	checkCalls(t, "later", h.snapshot().Calls, map[SeriesKey]loader.Counts{series("nginx", read): counts(10, 100)})
}

func TestSetLabelsAddingPIDLeavesHistoryWithout(t *testing.T) {
	h := newHarness(t, nil)
	h.fork(10, "bash", 0)
	h.fork(11, "nginx", 0)
	h.kernel.call(10, 1, read, 7, 70)
	h.kernel.call(11, 1, read, 2, 20)
	h.record(lifecycle.Exit, 10, 1, "bash")
	before := h.snapshot()

	h.tally.SetLabels(LabelSet(LabelComm|LabelPID), nil)
	h.kernel.call(11, 1, read, 1, 10)
	after := h.snapshot()
	checkCalls(t, "after", after.Calls, map[SeriesKey]loader.Counts{
		series("bash", read):                     counts(7, 70),
		series("nginx", read):                    counts(2, 20),
		{Labels{Comm: "nginx", PID: "11"}, read}: counts(1, 10),
	})
	checkNonDecreasing(t, "after", before, after)
}

// Every label change keeps the sums, whatever the history: random calls,
// exits and renames between changes of random label sets.
func TestSetLabelsNeverLosesCounts(t *testing.T) {
	h := newHarness(t, nil)
	fake := newFakeCgroups()
	cgroupIDs := slices.Sorted(maps.Keys(fake.paths))
	sets := []LabelSet{LabelSet(LabelComm), LabelSet(LabelPID), LabelSet(LabelUnit | LabelContainer),
		allLabels, LabelSet(LabelCgroup), LabelSet(LabelComm | LabelUnit)}
	names := []string{"a", "b"}
	var total loader.Counts
	var totalErrors uint64
	live := map[uint32]string{}
	next := uint32(100)
	for round := range 24 {
		// Deterministic churn: a new process, calls by every live one, a
		// rename and an exit.
		live[next] = names[round%2]
		h.fork(next, names[round%2], cgroupIDs[round%len(cgroupIDs)])
		next++
		for _, tgid := range slices.Sorted(maps.Keys(live)) {
			h.kernel.call(tgid, 1, read, 1, uint64(tgid))
			h.kernel.fail(tgid, 1, openat, enoent, 1)
			total = plusCounts(total, counts(1, uint64(tgid)))
			totalErrors++
		}
		tgids := slices.Sorted(maps.Keys(live))
		if round%3 == 0 {
			h.record(lifecycle.Rename, tgids[0], 1, strings.ToUpper(live[tgids[0]]))
		}
		if round%4 == 3 {
			h.record(lifecycle.Exit, tgids[len(tgids)-1], 1, live[tgids[len(tgids)-1]])
			delete(live, tgids[len(tgids)-1])
		}
		before := h.snapshot()
		if c, e := sumAll(before); c != total || e != totalErrors {
			t.Fatalf("round %d: sums %+v, %d; want %+v, %d", round, c, e, total, totalErrors)
		}
		h.tally.SetLabels(sets[round%len(sets)], fake)
		after := h.snapshot()
		checkSetLabelsKeepsCounts(t, before, after)
		if t.Failed() {
			t.Fatalf("round %d: label set %q", round, sets[round%len(sets)].Names())
		}
	}
}
