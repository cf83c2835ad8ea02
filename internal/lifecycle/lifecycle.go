// Package lifecycle reads the process lifecycle records the kernel sends
// through its ring buffer (fork, exec, rename, exit, cgroup moves) and keeps
// the process table: which name and cgroup each process generation had.
package lifecycle

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sysobsd/sysobsd/internal/loader"
)

// Kind is what happened to a process.
type Kind uint32

// The kinds, as the BPF programs number them.
const (
	Fork   = Kind(loader.LifecycleFork)
	Exec   = Kind(loader.LifecycleExec)
	Rename = Kind(loader.LifecycleRename)
	Exit   = Kind(loader.LifecycleExit)
	Cgroup = Kind(loader.LifecycleCgroup)
	// CgroupGone is a removed cgroup2 cgroup: only CgroupID is set.
	CgroupGone = Kind(loader.LifecycleCgroupGone)
	// CgroupNew is a new cgroup2 cgroup: CgroupID and Path are set.
	CgroupNew = Kind(loader.LifecycleCgroupNew)
)

func (k Kind) String() string {
	switch k {
	case Fork:
		return "fork"
	case Exec:
		return "exec"
	case Rename:
		return "rename"
	case Exit:
		return "exit"
	case Cgroup:
		return "cgroup"
	case CgroupGone:
		return "cgroup_gone"
	case CgroupNew:
		return "cgroup_new"
	}
	return fmt.Sprintf("kind_%d", uint32(k))
}

// Record is one decoded ring-buffer record.
type Record struct {
	Kind   Kind
	TGID   uint32
	ExecID uint32 // the exec generation the record is about
	// CgroupID is the process's cgroup2 cgroup when the record was sent
	// (CgroupGone: the removed cgroup).
	CgroupID uint64
	Comm     string // the process name from then on (at exit: its last name)
	// Path is a new cgroup's path from the hierarchy's root (CgroupNew; ""
	// if it was too long to send).
	Path string
}

// lifecycleSize is the C struct's size; records are never shorter.
// cgroupNewSize is CgroupNew's, which carries a path after it.
var (
	lifecycleSize = binary.Size(loader.LifecycleEvent{})
	cgroupNewSize = binary.Size(loader.CgroupNewEvent{})
)

// ErrShortRecord is returned for a record smaller than struct lifecycle_event.
var ErrShortRecord = errors.New("lifecycle record too short")

// Decode decodes a raw ring-buffer sample.
func Decode(raw []byte) (Record, error) {
	if len(raw) < lifecycleSize {
		return Record{}, fmt.Errorf("%w: %d bytes, want %d", ErrShortRecord, len(raw), lifecycleSize)
	}
	// Decoded into the generated type: the layout is the C struct's.
	var rec loader.LifecycleEvent
	if _, err := binary.Decode(raw[:lifecycleSize], binary.NativeEndian, &rec); err != nil {
		return Record{}, fmt.Errorf("decode lifecycle record: %w", err)
	}
	ev := Record{
		Kind:     Kind(rec.Kind),
		TGID:     rec.Tgid,
		ExecID:   rec.ExecId,
		CgroupID: rec.CgroupId,
		Comm:     loader.CString(rec.Comm[:]),
	}
	if ev.Kind < Fork || ev.Kind > CgroupNew {
		return ev, fmt.Errorf("lifecycle record of unknown kind %d", uint32(ev.Kind))
	}
	if ev.Kind == CgroupNew {
		if len(raw) < cgroupNewSize {
			return ev, fmt.Errorf("%w: cgroup_new record of %d bytes, want %d", ErrShortRecord, len(raw), cgroupNewSize)
		}
		ev.Path = loader.CString(raw[lifecycleSize:cgroupNewSize])
	}
	return ev, nil
}
