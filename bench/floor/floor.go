// Package floor attaches empty programs to tp_btf/sys_enter and
// tp_btf/sys_exit: the baseline sysobsd's per-syscall cost is measured
// against (bench/run.sh); or programs that only read the clock at entry and
// exit, the least that timing a call costs. Not part of the daemon.
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

// Mode says which programs Attach attaches.
type Mode int

const (
	Empty     Mode = iota // empty sys_enter and sys_exit programs
	ExitOnly              // the empty sys_exit program only
	ClockOnly             // a clock read in each, a duration summed at exit
)

// Attach loads the floor object and attaches the programs of mode.
func Attach(mode Mode) (*Attached, error) {
	a := &Attached{}
	if err := loadFloorObjects(&a.objs, nil); err != nil {
		return nil, fmt.Errorf("load floor programs: %w", err)
	}
	// sys_exit first, as the daemon does.
	progs := []*ebpf.Program{a.objs.FloorExit, a.objs.FloorEnter}
	switch mode {
	case ExitOnly:
		progs = progs[:1]
	case ClockOnly:
		progs = []*ebpf.Program{a.objs.ClockExit, a.objs.ClockEnter}
	}
	for i, prog := range progs {
		name := [...]string{"sys_exit", "sys_enter"}[i]
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
