package lifecycle

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcessTable knows the name of every process generation (tgid, exec_id)
// that may still have counts in the kernel. Not safe for concurrent use: the
// engine goroutine owns it.
type ProcessTable struct {
	procRoot string
	// CgroupOf finds the cgroup of a process that no record told about
	// (running before the daemon); nil when cgroups are not labelled.
	CgroupOf func(tgid uint32) (uint64, bool)
	live     map[uint32]*process
	// exited processes keep their names until their counts are folded.
	exited map[uint32]*process
	// execed holds the processes with an exec record since the last fold:
	// each left a finished generation whose entries can be folded
	// (Superseded).
	execed map[uint32]struct{}
}

type generationName struct {
	execID uint32
	name   string
}

type process struct {
	// base names generations without a record of their own: the name seen
	// at fork, or in /proc for processes older than the daemon.
	base string
	// gens names generations from exec, rename and exit records: a process
	// has one or two (fork, exec) while a fold is pending, and a slice of
	// them takes a fifth of the memory of a map (10,000 processes: ~2 MB).
	gens []generationName
	// cgroup is the cgroup2 id from the latest record (or the scan).
	cgroup      uint64
	cgroupKnown bool
	folds       int // full reads since the process exited (ForgetExited)
	// exec is the current generation's exec_id, when a fork or exec record
	// told it (processes found by Scan learn it at their first exec; the
	// exit record gives the last).
	exec      uint32
	execKnown bool
	// gone: found dead by a sweep, its exit record lost (MarkGone). Its
	// exec records may have been lost with it: see lostExec.
	gone bool
}

// NewProcessTable reads names it has no record for from procRoot (/proc).
func NewProcessTable(procRoot string) *ProcessTable {
	return &ProcessTable{
		procRoot: procRoot,
		live:     make(map[uint32]*process),
		exited:   make(map[uint32]*process),
		execed:   make(map[uint32]struct{}),
	}
}

// Scan learns the names of the processes that were running before the
// daemon's programs were attached. Records already applied take precedence.
func (t *ProcessTable) Scan() error {
	entries, err := os.ReadDir(t.procRoot)
	if err != nil {
		return err
	}
	for _, e := range entries {
		tgid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		if _, known := t.live[uint32(tgid)]; known {
			continue
		}
		if comm, ok := t.readComm(uint32(tgid)); ok {
			p := &process{base: comm}
			t.learnCgroup(p, uint32(tgid))
			t.live[uint32(tgid)] = p
		}
	}
	return nil
}

// Apply records what a lifecycle record says.
func (t *ProcessTable) Apply(ev Record) {
	switch ev.Kind {
	case Fork:
		// A new thread group: a reused tgid starts afresh. Its generation is
		// named as well, so that an exited process of the same tgid, not
		// yet folded, cannot lend it its base name.
		p := &process{base: ev.Comm, exec: ev.ExecID, execKnown: true}
		p.name(ev.ExecID, ev.Comm)
		p.cgroup, p.cgroupKnown = ev.CgroupID, true
		t.live[ev.TGID] = p
	case Exec:
		p := t.liveProcess(ev.TGID)
		p.name(ev.ExecID, ev.Comm)
		p.cgroup, p.cgroupKnown = ev.CgroupID, true
		p.exec, p.execKnown = ev.ExecID, true
		t.execed[ev.TGID] = struct{}{}
	case Rename:
		p := t.liveProcess(ev.TGID)
		p.name(ev.ExecID, ev.Comm)
		p.cgroup, p.cgroupKnown = ev.CgroupID, true
	case Cgroup:
		p := t.liveProcess(ev.TGID)
		p.cgroup, p.cgroupKnown = ev.CgroupID, true
	case Exit:
		p := t.liveProcess(ev.TGID)
		p.name(ev.ExecID, ev.Comm)
		p.cgroup, p.cgroupKnown = ev.CgroupID, true
		if !p.execKnown || int32(ev.ExecID-p.exec) > 0 { // the last; ahead if an exec record was lost
			p.exec, p.execKnown = ev.ExecID, true
		}
		delete(t.live, ev.TGID)
		if old, ok := t.exited[ev.TGID]; ok {
			// Exited twice before a fold (tgid reused): keep both's names.
			for _, g := range old.gens {
				if _, ok := p.generation(g.execID); !ok {
					p.name(g.execID, g.name)
				}
			}
		}
		t.exited[ev.TGID] = p
	}
}

// MarkGone treats a process as exited whose exit record was lost.
func (t *ProcessTable) MarkGone(tgid uint32) {
	if p, ok := t.live[tgid]; ok {
		delete(t.live, tgid)
		p.gone = true
		t.exited[tgid] = p
		return
	}
	if _, ok := t.exited[tgid]; !ok {
		t.exited[tgid] = &process{gone: true}
	}
}

func (t *ProcessTable) liveProcess(tgid uint32) *process {
	p, ok := t.live[tgid]
	if !ok {
		p = &process{}
		t.live[tgid] = p
	}
	return p
}

func (p *process) name(execID uint32, comm string) {
	for i := range p.gens {
		if p.gens[i].execID == execID {
			p.gens[i].name = comm
			return
		}
	}
	p.gens = append(p.gens, generationName{execID, comm})
}

// generation returns the name a record gave the generation.
func (p *process) generation(execID uint32) (string, bool) {
	for _, g := range p.gens {
		if g.execID == execID {
			return g.name, true
		}
	}
	return "", false
}

// owns reports whether a record of the process named the generation.
func (p *process) owns(execID uint32) bool {
	_, named := p.generation(execID)
	return named || (p.execKnown && p.exec == execID)
}

// spans reports whether p's base name can name the generation: not one
// after the latest its records told of (exec_id grows by one per exec), nor
// one more execs before it than a process makes between folds. Such a
// generation is an exec's whose record was sent after the drain that
// preceded this read of the maps, or, mostly, a later process's reusing the
// tgid whose fork record was: generation_of adds the start time in ns,
// modulo 2^32, so a process that reuses the tgid 2.1 to 4.3 s later reads as
// 2^31 to 2^32 execs *before* it (found by two process trees churning
// through 32768 pids: their calls were counted under each other's names).
func (p *process) spans(execID uint32) bool {
	if !p.execKnown {
		return true
	}
	behind := int32(p.exec - execID)
	return behind >= 0 && behind < maxExecsBehind
}

// maxExecsBehind bounds how far behind its latest generation an older one of
// the same process may be: a process execs once per generation.
const maxExecsBehind = 1 << 16

// lostExec reports whether the generation is one of a few after the latest
// a gone process's records told of: an exec whose record was lost with its
// exit (a ring buffer that overflows loses runs of records). Its counts are
// final, under no name (no record, and the base name is the program's
// before the exec). A bound of a few execs keeps a later process reusing
// the tgid, whose generation ids are its start time's, out of it.
func (p *process) lostExec(execID uint32) bool {
	ahead := int32(execID - p.exec)
	return p.gone && p.execKnown && ahead > 0 && ahead <= maxLostExecs
}

// maxLostExecs bounds how many execs of a gone process may have lost their
// records.
const maxLostExecs = 16

// byOwner returns the exited and the live process of a tgid, the one the
// generation belongs to first (see ExitedGeneration).
func (t *ProcessTable) byOwner(tgid, execID uint32) [2]*process {
	if t.ExitedGeneration(tgid, execID) {
		return [2]*process{t.exited[tgid], t.live[tgid]}
	}
	return [2]*process{t.live[tgid], t.exited[tgid]}
}

// Name returns the name of a process generation, and false when no record
// and no /proc entry tell it.
func (t *ProcessTable) Name(tgid, execID uint32) (string, bool) {
	// A tgid can be exited and live at once (reused before the fold): a
	// generation's own record wins over either process's base name, and
	// the process it belongs to over the other.
	live := t.live[tgid]
	owners := t.byOwner(tgid, execID)
	for _, p := range owners {
		if p == nil {
			continue
		}
		if n, ok := p.generation(execID); ok {
			return n, true
		}
	}
	// A base name names only its own process's generations: never an exec
	// (or a reusing process) whose record is still in the ring buffer. That
	// generation waits for its record, at the next scrape; exported now under
	// the name from before the exec, its counts would stay there for good.
	spanned, other := false, false
	for _, p := range owners {
		switch {
		case p == nil:
		case !p.spans(execID):
			other = true
		case p.base != "":
			return p.base, true
		default:
			spanned = true
		}
	}
	if other && !spanned {
		return "", false
	}
	// Neither fork record nor scan saw it (a lost record): ask /proc once.
	comm, found := t.readComm(tgid)
	if !found {
		return "", false
	}
	if live == nil {
		live = &process{}
		t.live[tgid] = live
	}
	live.base = comm
	return comm, true
}

// CgroupID returns the cgroup2 id of the process the generation belongs to,
// and false when nothing tells it.
func (t *ProcessTable) CgroupID(tgid, execID uint32) (uint64, bool) {
	for _, p := range t.byOwner(tgid, execID) {
		if p != nil && p.cgroupKnown {
			return p.cgroup, true
		}
	}
	if p := t.live[tgid]; p != nil {
		t.learnCgroup(p, tgid)
		return p.cgroup, p.cgroupKnown
	}
	return 0, false
}

func (t *ProcessTable) learnCgroup(p *process, tgid uint32) {
	if t.CgroupOf == nil || p.cgroupKnown {
		return
	}
	p.cgroup, p.cgroupKnown = t.CgroupOf(tgid)
}

// Exited reports whether a process by that tgid exited and waits to be
// folded.
func (t *ProcessTable) Exited(tgid uint32) bool {
	_, ok := t.exited[tgid]
	return ok
}

// ExitedGeneration reports whether the generation belongs to a process whose
// exit was seen, so that its counts are final. A tgid reused before the
// fold is exited and live at once: the generation is then the exited
// process's only if its records named it and the live one's did not (the
// kernel's generation ids tell two processes of one tgid apart). One that
// neither named is left to the live process: taking a running process's
// entries for final would delete them while they count. So is one outside
// the exited process's generations while no live one is known: a process
// reusing the tgid whose fork record is not applied yet.
func (t *ProcessTable) ExitedGeneration(tgid, execID uint32) bool {
	old, exited := t.exited[tgid]
	if !exited {
		return false
	}
	cur, live := t.live[tgid]
	if !live {
		return old.owns(execID) || old.spans(execID) || old.lostExec(execID)
	}
	return old.owns(execID) && !cur.owns(execID)
}

// ExitedCount is how many exited processes wait to be folded.
func (t *ProcessTable) ExitedCount() int { return len(t.exited) }

// Superseded reports whether a running process has exec'd since the
// generation execID: that generation's counts are final (its last calls
// returned before the exec record was sent), so they can be folded without
// waiting for the process to exit.
func (t *ProcessTable) Superseded(tgid, execID uint32) bool {
	p, ok := t.live[tgid]
	// exec_id only grows within a process; the difference survives wrapping.
	return ok && p.execKnown && int32(p.exec-execID) > 0
}

// Running reports whether the generation is a running process's current
// one: its counts still grow, and a fold leaves its entries alone.
func (t *ProcessTable) Running(tgid, execID uint32) bool {
	_, live := t.live[tgid]
	return live && !t.ExitedGeneration(tgid, execID) && !t.Superseded(tgid, execID)
}

// ExecsSinceFold is how many processes exec'd since the last fold.
func (t *ProcessTable) ExecsSinceFold() int { return len(t.execed) }

// Finishing calls fn for every process that may have final entries: those
// that exited and are not forgotten yet, and those that exec'd since the
// last fold.
func (t *ProcessTable) Finishing(fn func(tgid uint32)) {
	for tgid := range t.exited {
		fn(tgid)
	}
	for tgid := range t.execed {
		if _, exited := t.exited[tgid]; !exited {
			fn(tgid)
		}
	}
}

// Forget drops an exited process once its counts have been folded.
func (t *ProcessTable) Forget(tgid uint32) { delete(t.exited, tgid) }

// ForgetExited drops every exited process that two full reads of the maps
// have passed over; fullRead tells whether the sync that calls it was one.
//
// A map read racing with the kernel's inserts may miss an entry once, and a
// fold by keys misses an entry whose key the tally never learned: such an
// entry must still find its name at the next full read rather than be
// counted as ~unknown.
func (t *ProcessTable) ForgetExited(fullRead bool) {
	clear(t.execed)
	if !fullRead {
		return
	}
	for tgid, p := range t.exited {
		p.folds++
		if p.folds >= 2 {
			delete(t.exited, tgid)
		}
	}
}

// EachLive calls fn for every process the table tracks as running.
func (t *ProcessTable) EachLive(fn func(tgid uint32)) {
	for tgid := range t.live {
		fn(tgid)
	}
}

// Live is how many processes the table tracks as running.
func (t *ProcessTable) Live() int { return len(t.live) }

// Known reports whether the table has a running process by that tgid.
func (t *ProcessTable) Known(tgid uint32) bool {
	_, ok := t.live[tgid]
	return ok
}

func (t *ProcessTable) readComm(tgid uint32) (string, bool) {
	b, err := os.ReadFile(filepath.Join(t.procRoot, strconv.FormatUint(uint64(tgid), 10), "comm"))
	if err != nil {
		return "", false
	}
	return strings.ToValidUTF8(string(bytes.TrimSuffix(b, []byte("\n"))), "?"), true
}
