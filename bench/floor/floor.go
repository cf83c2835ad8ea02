// Package floor attaches empty programs to tp_btf/sys_enter and
// tp_btf/sys_exit: the baseline sysobsd's per-syscall cost is measured
// against (bench/run.sh). Not part of the daemon.
package floor

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Attached holds the links of the floor programs; Close detaches them.
type Attached struct {
	objs  floorObjects
	links []link.Link
}

// Attach loads the floor object and attaches the empty sys_exit program and,
// unless exitOnly, the empty sys_enter program.
func Attach(exitOnly bool) (*Attached, error) {
	a := &Attached{}
	if err := loadFloorObjects(&a.objs, nil); err != nil {
		return nil, fmt.Errorf("load floor programs: %w", err)
	}
	progs := map[string]*ebpf.Program{"sys_exit": a.objs.FloorExit}
	if !exitOnly {
		progs["sys_enter"] = a.objs.FloorEnter
	}
	for _, name := range []string{"sys_exit", "sys_enter"} {
		prog, ok := progs[name]
		if !ok {
			continue
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("attach floor %s: %w", name, err)
		}
		a.links = append(a.links, l)
	}
	return a, nil
}

// Close detaches the programs and releases the objects.
func (a *Attached) Close() error {
	var errs []error
	for _, l := range a.links {
		errs = append(errs, l.Close())
	}
	a.links = nil
	errs = append(errs, a.objs.Close())
	return errors.Join(errs...)
}
