package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	eaw "golang.org/x/text/width"

	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/counting"
	"github.com/sysobsd/sysobsd/internal/filter"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/tally"
)

// topSample is every process name's totals at one moment.
type topSample struct {
	// at is when the sample was taken, on CLOCK_MONOTONIC (the clock of the
	// kernel's entry times): rates are per second between two samples' at.
	at    time.Duration
	procs map[string]*topTotals
	// busy is what the totals' seconds hold, and so what % means.
	busy busyKind
	// longest are the calls in flight the longest (engine mode), oldest
	// first: the stuck threads top shows under its rows.
	longest []callInFlight
}

// longestShown is how many of the calls in flight longest top shows, and
// longestAtLeast how long a call must have been inside to be one.
const (
	longestShown   = 3
	longestAtLeast = time.Second
)

func newTopSample(busy busyKind) topSample {
	return topSample{procs: make(map[string]*topTotals), busy: busy}
}

// busyKind is what a sample's seconds count: what % can say.
type busyKind int

const (
	// busyInFlight: the time of completed calls plus, for each thread now
	// inside a call, the time since its entry. Its change over an interval is
	// the time spent inside calls in that interval: a thread reads at most
	// 100%. Top computes it when it loads the programs itself.
	busyInFlight busyKind = iota
	// busyCompleted: completed calls' time only, counted whole when a call
	// returns. What a daemon's /metrics has: a call blocked 3 s that returns
	// in one interval adds 3 s to it.
	busyCompleted
	// busyUnmeasured: no durations (a daemon running with latency: false).
	busyUnmeasured
)

// percentMeaning is the header line that says what % is; each fits 80
// columns.
var percentMeaning = map[busyKind]string{
	busyInFlight:   "%: time in syscalls per second, calls in flight included; one thread ≤100%",
	busyCompleted:  "%: time of calls that returned in the interval per second (a long one: >100%)",
	busyUnmeasured: "%: not measured (the daemon runs with latency: false)",
}

type topTotals struct {
	calls, errors float64
	seconds       float64            // inside calls, as busy says
	bySyscall     map[string]float64 // seconds
}

func (s topSample) add(comm string) *topTotals {
	t := s.procs[comm]
	if t == nil {
		t = &topTotals{bySyscall: make(map[string]float64)}
		s.procs[comm] = t
	}
	return t
}

// monotonicNow reads CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonicNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for this clock
	return time.Duration(ts.Nano())
}

// sampleFromDaemon reads a running daemon's /metrics.
func sampleFromDaemon(addr string) func() (topSample, error) {
	endpoint := newDaemonEndpoint(addr, "/metrics")
	shown := endpoint.shown // messages never show a basic-auth password
	client := &http.Client{Timeout: 5 * time.Second}
	return func() (topSample, error) {
		rc, err := endpoint.get(client, "top", "")
		if err != nil {
			return topSample{}, err
		}
		defer rc.Close()
		var body bytes.Buffer
		if _, err := body.ReadFrom(rc); err != nil {
			return topSample{}, err
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(&body)
		if err != nil {
			return topSample{}, fmt.Errorf("top: parse %s: %w", shown, err)
		}
		s := newTopSample(busyCompleted)
		s.at = monotonicNow()
		for name, mf := range families {
			for _, m := range mf.GetMetric() {
				var comm, sc string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "comm":
						comm = l.GetValue()
					case "syscall":
						sc = l.GetValue()
					}
				}
				v := m.GetCounter().GetValue()
				switch name {
				case "sysobsd_syscalls_total":
					s.add(comm).calls += v
				case "sysobsd_syscall_errors_total":
					s.add(comm).errors += v
				case "sysobsd_syscall_seconds_total":
					t := s.add(comm)
					t.seconds += v
					t.bySyscall[sc] += v
				}
			}
		}
		// A daemon with latency: false exports seconds of 0 and no
		// histogram: 0% would be a wrong number, not a measured one.
		if _, timed := families["sysobsd_syscall_duration_seconds"]; !timed && s.anyCalls() {
			s.busy = busyUnmeasured
		}
		return s, nil
	}
}

func (s topSample) anyCalls() bool {
	for _, t := range s.procs {
		if t.calls > 0 {
			return true
		}
	}
	return false
}

// callClock says whether a thread is inside a call, and since when
// (*loader.Maps; a fake in tests).
type callClock interface {
	CallStartedAt(tid uint32) (monotonicNS uint64, inCall bool, err error)
}

// procThread is one thread of a running process.
type procThread struct{ pid, tid uint32 }

// longCall is how long a call must have been in flight for its return
// during a sample to be worth taking the sample again (sampleFromEngine):
// a shorter one moves under 1% of a second between two intervals.
const longCall = 10 * time.Millisecond

// sampleFromEngine reads this process's own programs: the counters of
// completed calls, and the entry time of every thread now inside a call.
func sampleFromEngine(engine *tally.Engine, clock callClock, procRoot string) func() (topSample, error) {
	names := syscalls.Host()
	self := uint32(os.Getpid())
	return func() (topSample, error) {
		// The counters and the entry times are separate maps, read one
		// after the other. sys_exit clears a call's slot before it adds the
		// call to the counters, and the slots are read after the counters:
		// no call is counted twice. A call that returns between the read
		// of its process's counters and the read of its slot is in
		// neither: that interval reads low and the next high by its time.
		// So the slots are read before the counters too, and when a call in
		// flight before, for longCall or more, is gone after, the sample is
		// taken again (that call is over now, and in the counters); after
		// three reads the last is used.
		for attempt := 1; ; attempt++ {
			threads, err := hostThreads(procRoot, self)
			if err != nil {
				return topSample{}, err
			}
			before, err := callsInFlight(clock, threads)
			if err != nil {
				return topSample{}, err
			}
			beforeAt := monotonicNow()
			snap, err := engine.Snapshot(context.Background())
			if err != nil {
				return topSample{}, err
			}
			at := monotonicNow()
			after, err := callsInFlight(clock, threads)
			if err != nil {
				return topSample{}, err
			}
			if attempt < 3 && longCallReturned(before, after, beforeAt) {
				continue
			}
			s := newTopSample(busyInFlight)
			s.at = at
			for k, v := range snap.Calls {
				t := s.add(k.Comm)
				t.calls += float64(v.Calls)
				t.seconds += float64(v.NS) / 1e9
				t.bySyscall[names.Name(syscalls.ABI(k.ABI), uint32(k.NR))] += float64(v.NS) / 1e9
			}
			for k, n := range snap.Errors {
				s.add(k.Comm).errors += float64(n)
			}
			calls := describeCalls(procRoot, names, threads, after)
			s.addInFlight(calls)
			s.longest = longestInFlight(calls, at)
			return s, nil
		}
	}
}

// hostThreads lists the threads of every process but self (/proc/PID/task).
// A process or thread that exits while it is read is left out.
func hostThreads(procRoot string, self uint32) ([]procThread, error) {
	procs, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("top: list processes: %w", err)
	}
	var threads []procThread
	for _, p := range procs {
		pid, err := strconv.ParseUint(p.Name(), 10, 32)
		if err != nil || uint32(pid) == self {
			continue
		}
		tasks, err := os.ReadDir(filepath.Join(procRoot, p.Name(), "task"))
		if err != nil {
			continue // exited
		}
		for _, task := range tasks {
			if tid, err := strconv.ParseUint(task.Name(), 10, 32); err == nil {
				threads = append(threads, procThread{uint32(pid), uint32(tid)})
			}
		}
	}
	return threads, nil
}

// callsInFlight maps each of threads that is inside a call to the call's
// entry time (CLOCK_MONOTONIC ns).
func callsInFlight(clock callClock, threads []procThread) (map[procThread]uint64, error) {
	started := make(map[procThread]uint64)
	for _, th := range threads {
		ns, in, err := clock.CallStartedAt(th.tid)
		if err != nil {
			return nil, fmt.Errorf("top: %w", err)
		}
		if in {
			started[th] = ns
		}
	}
	return started, nil
}

// longCallReturned reports whether a call in flight at the first read (at
// firstAt), there for longCall or more, was over at the second.
func longCallReturned(first, second map[procThread]uint64, firstAt time.Duration) bool {
	for th, ns := range first {
		if second[th] != ns && firstAt-time.Duration(ns) >= longCall {
			return true
		}
	}
	return false
}

// callInFlight is one thread inside a call, as a sample counts it.
type callInFlight struct {
	comm      string // the process's name
	syscall   string // "" when /proc does not say
	startedNS uint64 // entry time, CLOCK_MONOTONIC
}

// describeCalls names the calls in flight: their process's name (the
// thread-group leader's, as the counters have it) and the syscall each is
// in, from /proc. A process that exited since is left out: its calls are
// over, and counted as completed from the next sample on.
func describeCalls(procRoot string, names *syscalls.Table, threads []procThread, started map[procThread]uint64) []callInFlight {
	comms := make(map[uint32]string)
	var calls []callInFlight
	for _, th := range threads {
		ns, in := started[th]
		if !in {
			continue
		}
		comm, known := comms[th.pid]
		if !known {
			raw, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(int(th.pid)), "comm"))
			if err != nil {
				comms[th.pid] = ""
				continue
			}
			comm = strings.TrimSuffix(string(raw), "\n")
			comms[th.pid] = comm
		}
		if comm == "" {
			continue
		}
		calls = append(calls, callInFlight{comm: comm, syscall: syscallOf(procRoot, names, th), startedNS: ns})
	}
	return calls
}

// syscallOf is the call thread th is blocked in: the first field of
// /proc/PID/task/TID/syscall ("running" or unreadable: "").
func syscallOf(procRoot string, names *syscalls.Table, th procThread) string {
	raw, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(int(th.pid)), "task", strconv.Itoa(int(th.tid)), "syscall"))
	if err != nil {
		return ""
	}
	field, _, _ := strings.Cut(strings.TrimSpace(string(raw)), " ")
	nr, err := strconv.ParseUint(field, 10, 32)
	if err != nil {
		return ""
	}
	return names.Name(syscalls.Native, uint32(nr))
}

// longestInFlight are the calls inside for longestAtLeast or more at at,
// oldest first, at most longestShown.
func longestInFlight(calls []callInFlight, at time.Duration) []callInFlight {
	var out []callInFlight
	for _, c := range calls {
		if at-time.Duration(c.startedNS) >= longestAtLeast {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b callInFlight) int { return cmp.Compare(a.startedNS, b.startedNS) })
	return out[:min(len(out), longestShown)]
}

// addInFlight adds to each process the time its threads have spent so far
// in the calls they are in: busy(at) = completed time + Σ (at − entry).
// A call entered after at adds nothing yet.
func (s topSample) addInFlight(calls []callInFlight) {
	for _, c := range calls {
		if time.Duration(c.startedNS) >= s.at {
			continue
		}
		secs := (s.at - time.Duration(c.startedNS)).Seconds()
		t := s.add(c.comm)
		t.seconds += secs
		t.bySyscall[c.syscall] += secs
	}
}

type topRow struct {
	comm                   string
	calls, errors, seconds float64 // per second
	topSyscall             string
}

// topRows turns two samples into per-second rates over the time between
// them, sorted by key. A row's seconds is the change of busy time per second
// of wall time: × 100 its %.
func topRows(prev, cur topSample, sortBy string) []topRow {
	elapsed := (cur.at - prev.at).Seconds()
	if elapsed <= 0 {
		return nil
	}
	var rows []topRow
	for comm, c := range cur.procs {
		p := prev.procs[comm]
		if p == nil {
			p = &topTotals{}
		}
		r := topRow{
			comm:   comm,
			calls:  (c.calls - p.calls) / elapsed,
			errors: (c.errors - p.errors) / elapsed,
			// Below 0 only when a process with the name exited in a call,
			// or a call returned between the two reads of a sample.
			seconds: max(0, (c.seconds-p.seconds)/elapsed),
		}
		best := 0.0
		for sc, v := range c.bySyscall {
			if d := v - p.bySyscall[sc]; d > best {
				best, r.topSyscall = d, sc
			}
		}
		if r.calls > 0 || r.errors > 0 || r.seconds > 0 {
			rows = append(rows, r)
		}
	}
	sortRows(rows, sortBy)
	return rows
}

func sortRows(rows []topRow, sortBy string) {
	key := func(r topRow) float64 {
		switch sortBy {
		case "calls":
			return r.calls
		case "errors":
			return r.errors
		}
		return r.seconds
	}
	slices.SortFunc(rows, func(a, b topRow) int { return cmp.Or(cmp.Compare(key(b), key(a)), cmp.Compare(a.comm, b.comm)) })
}

// topFrame is what one refresh shows.
type topFrame struct {
	rows   []topRow
	sortBy string
	busy   busyKind
	// stuck are the lines about the calls in flight longest, shown under
	// the rows when there is room.
	stuck []string
}

// stuckLines describe the sample's calls in flight longest.
func stuckLines(s topSample) []string {
	if len(s.longest) == 0 {
		return nil
	}
	lines := []string{"INSIDE A CALL LONGEST (sysobsd ps shows every thread):"}
	for _, c := range s.longest {
		sc := c.syscall
		if sc == "" {
			sc = "?"
		}
		lines = append(lines, fmt.Sprintf("  %s in %s for %.1f s", printable(c.comm), sc, (s.at-time.Duration(c.startedNS)).Seconds()))
	}
	return lines
}

// topHeaderLines come before the rows.
const topHeaderLines = 3

// lines is the frame as text, at most limit rows.
func (f topFrame) lines(limit int) []string {
	lines := []string{
		fmt.Sprintf("sysobsd top — sorted by %s (t: time, c: calls, e: errors, q: quit)", f.sortBy),
		percentMeaning[f.busy],
		fmt.Sprintf("%-16s %10s %12s %10s  %s", "COMM", "SYSCALL %", "CALLS/s", "ERRORS/s", "TOP SYSCALL"),
	}
	rowLimit, stuck := limit, f.stuck
	if len(stuck) > 0 && len(f.rows)+len(stuck) > limit {
		// Room for the stuck calls only if a few rows stay.
		if limit-len(stuck) >= 3 {
			rowLimit = limit - len(stuck)
		} else {
			stuck = nil
		}
	}
	for i, r := range f.rows {
		if i == rowLimit {
			break
		}
		pct := fmt.Sprintf("%9.1f%%", 100*r.seconds)
		if f.busy == busyUnmeasured {
			pct = fmt.Sprintf("%10s", "-")
		}
		row := fmt.Sprintf("%-16s %s %12.0f %10.0f  %s", printable(r.comm), pct, r.calls, r.errors, r.topSyscall)
		lines = append(lines, strings.TrimRight(row, " "))
	}
	return append(lines, stuck...)
}

// printable replaces what a terminal would act on instead of showing (a
// process may name itself "\x1b[2J") with "?".
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
}

// renderPlain writes the frame as lines of text, for a pipe or a file.
func renderPlain(w io.Writer, f topFrame, limit int) error {
	var b strings.Builder
	for _, l := range f.lines(limit) {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// renderScreen draws the frame over the whole terminal, width × height, in
// raw mode: no line wider than the terminal (it would wrap), no more lines
// than it has (it would scroll), each line cleared before it is written,
// and each ended by "\r\n" (raw mode does not turn "\n" into it).
func renderScreen(w io.Writer, f topFrame, width, height int) error {
	lines := f.lines(max(0, height-topHeaderLines))
	lines = lines[:min(len(lines), height)]
	var b strings.Builder
	b.WriteString("\x1b[H") // home
	for i, l := range lines {
		if i > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("\x1b[2K") // clear the line
		b.WriteString(truncateColumns(l, width))
	}
	// Clear what the last frame left below. After a line as wide as the
	// terminal the cursor waits on its last column: move off that line
	// first, or the clear would take its last character.
	if len(lines) < height {
		b.WriteString("\r\n\x1b[J")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// truncateColumns cuts s to at most width terminal columns: a wide
// (East Asian) character takes two.
func truncateColumns(s string, width int) string {
	cols := 0
	for i, r := range s {
		w := 1
		switch eaw.LookupRune(r).Kind() {
		case eaw.EastAsianWide, eaw.EastAsianFullwidth:
			w = 2
		}
		if cols+w > width {
			return s[:i]
		}
		cols += w
	}
	return s
}

// topSource opens what top samples: a daemon's /metrics, or programs it
// loads itself. close frees them.
func topSource(opts options, cfg config.Config, log *zap.Logger) (sample func() (topSample, error), close func(), err error) {
	if opts.top.daemon != "" {
		return sampleFromDaemon(opts.top.daemon), func() {}, nil
	}
	f, err := filter.Compile(cfg.Filters, config.Events{}, syscalls.Host(), nil)
	if err != nil {
		return nil, nil, err
	}
	// Whatever the config's latency: % needs every call's entry time.
	c, err := counting.Start(counting.Options{
		Config: cfg, ForceLatency: true, Filter: f, KernelBTF: opts.kernelBTF, Attach: opts.attachMode,
		Engine: true, Labels: tally.LabelSet(tally.LabelComm),
	}, log)
	if err != nil {
		return nil, nil, err
	}
	sampleEngine := sampleFromEngine(c.Engine, &c.Probes.Maps, counting.ProcRoot)
	sample = func() (topSample, error) {
		select {
		case <-c.Stopped():
			return topSample{}, fmt.Errorf("top: counting stopped: %w", c.Err())
		default:
		}
		return sampleEngine()
	}
	return sample, func() {
		if err := c.Close(); err != nil {
			log.Warn("top: stop counting", zap.Error(err))
		}
	}, nil
}
