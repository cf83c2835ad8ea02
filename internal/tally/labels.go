package tally

import (
	"strconv"

	"github.com/sysobsd/sysobsd/internal/cgroups"
)

// Label names a process label a series may carry.
type Label uint8

// The process labels, in exposition order.
const (
	LabelComm Label = 1 << iota
	LabelUnit
	LabelContainer
	LabelCgroup
	LabelPID
)

// dimension is one process label: its name, the field of Labels that holds
// it, and where its value comes from, for a process generation and for calls
// the kernel counted by process name and cgroup (a group entry). A new label
// is a Label bit, a Labels field (and its case in value) and a row here.
type dimension struct {
	label Label
	name  string
	// ofProcess is a process generation's value; false while it cannot
	// be known yet (its records are still in flight).
	ofProcess func(*labelSource) (string, bool)
	// ofGroup is a group entry's value (no pid: "~other").
	ofGroup func(*labelSource) string
	// fromCgroup: the value comes from the process's cgroup, which needs
	// cgroup2 mounted.
	fromCgroup bool
}

// value is l's field for label: a switch, not a func in the table, so that
// l stays on the stack (a func value would make every Labels escape).
func (l *Labels) value(label Label) *string {
	switch label {
	case LabelComm:
		return &l.Comm
	case LabelUnit:
		return &l.Unit
	case LabelContainer:
		return &l.Container
	case LabelCgroup:
		return &l.Cgroup
	default:
		return &l.PID
	}
}

// dimensions are the process labels, in exposition order.
var dimensions = []dimension{
	{LabelComm, "comm",
		func(s *labelSource) (string, bool) { return s.procs.Name(s.tgid, s.execID) },
		func(s *labelSource) string { return s.comm }, false},
	{LabelUnit, "unit",
		fromIdentity(func(id cgroups.Identity) string { return id.Unit }),
		func(s *labelSource) string { return s.identity().Unit }, true},
	{LabelContainer, "container",
		fromIdentity(func(id cgroups.Identity) string { return id.Container }),
		func(s *labelSource) string { return s.identity().Container }, true},
	{LabelCgroup, "cgroup",
		fromIdentity(func(id cgroups.Identity) string { return id.Path }),
		func(s *labelSource) string { return s.identity().Path }, true},
	{LabelPID, "pid",
		func(s *labelSource) (string, bool) { return strconv.FormatUint(uint64(s.tgid), 10), true },
		func(*labelSource) string { return OtherComm }, false},
}

func fromIdentity(value func(cgroups.Identity) string) func(*labelSource) (string, bool) {
	return func(s *labelSource) (string, bool) { return value(s.identity()), true }
}

// LabelNames maps config names to labels.
var LabelNames = func() map[string]Label {
	m := make(map[string]Label, len(dimensions))
	for _, d := range dimensions {
		m[d.name] = d.label
	}
	return m
}()

// LabelSet is the process labels the counters carry.
type LabelSet uint8

// Has reports whether the set includes l.
func (s LabelSet) Has(l Label) bool { return uint8(s)&uint8(l) != 0 }

// NeedsCgroups reports whether a label of the set comes from cgroups.
func (s LabelSet) NeedsCgroups() bool {
	for _, d := range dimensions {
		if d.fromCgroup && s.Has(d.label) {
			return true
		}
	}
	return false
}

// Names lists the set's label names in exposition order.
func (s LabelSet) Names() []string {
	var names []string
	for _, d := range dimensions {
		if s.Has(d.label) {
			names = append(names, d.name)
		}
	}
	return names
}

// Labels are one series' process label values; labels not in the set are "".
type Labels struct {
	Comm, Unit, Container, Cgroup, PID string
}

// Values lists the values of the set's labels, in Names order.
func (l Labels) Values(s LabelSet) []string {
	var v []string
	for _, d := range dimensions {
		if s.Has(d.label) {
			v = append(v, *l.value(d.label))
		}
	}
	return v
}

// project keeps the labels in s; a label s adds that l lacks stays "".
func (l Labels) project(s LabelSet) Labels {
	for _, d := range dimensions {
		if !s.Has(d.label) {
			*l.value(d.label) = ""
		}
	}
	return l
}

// EveryLabel is value in every label: the "~other" and "~unknown" series.
func EveryLabel(value string) Labels {
	var l Labels
	for _, d := range dimensions {
		*l.value(d.label) = value
	}
	return l
}

// Cgroups turns cgroup ids into paths and knows which were removed
// (cgroups.Resolver).
type Cgroups interface {
	Path(id uint64) (string, bool)
	// Learn takes a new cgroup's path from its creation record.
	Learn(id uint64, path string)
	// Removed returns those of ids whose cgroup was removed.
	Removed(ids []uint64) map[uint64]struct{}
}

// labeler makes a process generation's labels.
type labeler struct {
	set        LabelSet
	cgroups    Cgroups
	identities map[uint64]cgroups.Identity // by cgroup id; cleared when it grows large
	src        labelSource                 // scratch of labels and groupLabels
}

const maxCachedIdentities = 65536

// labelSource is what a series' labels are made from: a process generation
// (procs, tgid, execID) or a group entry (comm, cgroupID). Its cgroup's
// identity is looked up once, when a label needs it.
type labelSource struct {
	lb           *labeler
	procs        Processes
	tgid, execID uint32
	comm         string
	cgroupID     uint64
	hasCgroup    bool
	resolved     bool
	ident        cgroups.Identity
}

func (s *labelSource) identity() cgroups.Identity {
	if !s.resolved {
		s.resolved = true
		if s.procs != nil {
			s.cgroupID, s.hasCgroup = s.procs.CgroupID(s.tgid, s.execID)
		}
		if s.hasCgroup && s.lb.cgroups != nil {
			s.ident = s.lb.identity(s.cgroupID)
		}
	}
	return s.ident
}

// labels are a process generation's labels; false while its name is not
// known yet.
func (lb *labeler) labels(procs Processes, tgid, execID uint32) (Labels, bool) {
	var l Labels
	// Reused, not a new one each call: passed to the rows' funcs, it would
	// escape to the heap, an allocation per process generation and scrape.
	lb.src = labelSource{lb: lb, procs: procs, tgid: tgid, execID: execID}
	src := &lb.src
	for _, d := range dimensions {
		if !lb.set.Has(d.label) {
			continue
		}
		v, ok := d.ofProcess(src)
		if !ok {
			return Labels{}, false
		}
		*l.value(d.label) = v
	}
	return l, true
}

// groupLabels are the labels of calls the kernel counted by process name
// and cgroup (its per-process map full): a process's, but pid "~other".
func (lb *labeler) groupLabels(comm string, cgroupID uint64) Labels {
	var l Labels
	lb.src = labelSource{lb: lb, comm: comm, cgroupID: cgroupID, hasCgroup: true}
	for _, d := range dimensions {
		if lb.set.Has(d.label) {
			*l.value(d.label) = d.ofGroup(&lb.src)
		}
	}
	return l
}

func (lb *labeler) identity(id uint64) cgroups.Identity {
	if ident, ok := lb.identities[id]; ok {
		return ident
	}
	path, ok := lb.cgroups.Path(id)
	if !ok {
		// Gone before it could be walked: no unit, container or path to
		// show. Not cached, so a later walk can still name it.
		return cgroups.Identity{}
	}
	if lb.identities == nil || len(lb.identities) >= maxCachedIdentities {
		lb.identities = make(map[uint64]cgroups.Identity)
	}
	ident := cgroups.Classify(path)
	lb.identities[id] = ident
	return ident
}
