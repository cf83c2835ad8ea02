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

// LabelNames maps config names to labels.
var LabelNames = map[string]Label{
	"comm": LabelComm, "unit": LabelUnit, "container": LabelContainer, "cgroup": LabelCgroup, "pid": LabelPID,
}

// LabelSet is the process labels the counters carry.
type LabelSet uint8

// Has reports whether the set includes l.
func (s LabelSet) Has(l Label) bool { return uint8(s)&uint8(l) != 0 }

// Names lists the set's label names in exposition order.
func (s LabelSet) Names() []string {
	var names []string
	for _, n := range []struct {
		l    Label
		name string
	}{{LabelComm, "comm"}, {LabelUnit, "unit"}, {LabelContainer, "container"}, {LabelCgroup, "cgroup"}, {LabelPID, "pid"}} {
		if s.Has(n.l) {
			names = append(names, n.name)
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
	if s.Has(LabelComm) {
		v = append(v, l.Comm)
	}
	if s.Has(LabelUnit) {
		v = append(v, l.Unit)
	}
	if s.Has(LabelContainer) {
		v = append(v, l.Container)
	}
	if s.Has(LabelCgroup) {
		v = append(v, l.Cgroup)
	}
	if s.Has(LabelPID) {
		v = append(v, l.PID)
	}
	return v
}

// project keeps the labels in s; a label s adds that l lacks stays "".
func (l Labels) project(s LabelSet) Labels {
	if !s.Has(LabelComm) {
		l.Comm = ""
	}
	if !s.Has(LabelUnit) {
		l.Unit = ""
	}
	if !s.Has(LabelContainer) {
		l.Container = ""
	}
	if !s.Has(LabelCgroup) {
		l.Cgroup = ""
	}
	if !s.Has(LabelPID) {
		l.PID = ""
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
}

const maxCachedIdentities = 65536

func (lb *labeler) labels(procs Processes, tgid, execID uint32) (Labels, bool) {
	var l Labels
	if lb.set.Has(LabelComm) {
		comm, ok := procs.Name(tgid, execID)
		if !ok {
			return l, false
		}
		l.Comm = comm
	}
	if lb.set.Has(LabelPID) {
		l.PID = strconv.FormatUint(uint64(tgid), 10)
	}
	if lb.wantsCgroup() {
		if id, ok := procs.CgroupID(tgid, execID); ok {
			lb.setCgroupLabels(&l, id)
		}
	}
	return l, true
}

// groupLabels are the labels of calls the kernel counted by process name
// and cgroup (its per-process map full): a process's, but pid "~other".
func (lb *labeler) groupLabels(comm string, cgroupID uint64) Labels {
	var l Labels
	if lb.set.Has(LabelComm) {
		l.Comm = comm
	}
	if lb.set.Has(LabelPID) {
		l.PID = OtherComm
	}
	if lb.wantsCgroup() {
		lb.setCgroupLabels(&l, cgroupID)
	}
	return l
}

func (lb *labeler) wantsCgroup() bool {
	return lb.set&LabelSet(LabelUnit|LabelContainer|LabelCgroup) != 0 && lb.cgroups != nil
}

func (lb *labeler) setCgroupLabels(l *Labels, id uint64) {
	ident := lb.identity(id)
	if lb.set.Has(LabelUnit) {
		l.Unit = ident.Unit
	}
	if lb.set.Has(LabelContainer) {
		l.Container = ident.Container
	}
	if lb.set.Has(LabelCgroup) {
		l.Cgroup = ident.Path
	}
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
