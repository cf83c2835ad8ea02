// Package filter turns the config's filters into the kernel's filter maps,
// and judges the processes that were running before the lifecycle programs
// could, with the same rules as evaluate_process in bpf/sysobsd.bpf.c.
package filter

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sysobsd/sysobsd/internal/cgroups"
	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/syscalls"
)

// Filter is a compiled filter configuration.
type Filter struct {
	kernel loader.KernelFilters
	// cgroup path filters, for judging running processes by path (the
	// kernel matches their ids).
	cgroupPaths map[string]uint8
	// Unresolved lists cgroup paths that did not exist when compiled.
	Unresolved []string
}

// Compile builds the kernel's filters and event settings. resolver turns
// cgroup paths into ids; it may be nil when no cgroup path is filtered.
func Compile(f config.Filters, events config.Events, names *syscalls.Table, resolver *cgroups.Resolver) (*Filter, error) {
	out := &Filter{
		kernel: loader.KernelFilters{
			PIDs:        make(map[uint32]uint8),
			Comms:       make(map[string]uint8),
			CgroupIDs:   make(map[uint64]uint8),
			CgroupNames: make(map[string]uint8),
		},
		cgroupPaths: make(map[string]uint8),
	}
	k := &out.kernel
	for _, side := range []struct {
		m   config.Match
		bit uint8
	}{{f.Include, loader.MatchInclude}, {f.Exclude, loader.MatchExclude}} {
		for _, pid := range side.m.PIDs {
			k.PIDs[pid] |= side.bit
		}
		for _, comm := range side.m.Comms {
			k.Comms[comm] |= side.bit
		}
		for _, unit := range side.m.Units {
			k.CgroupNames[unit] |= side.bit
		}
		for _, path := range side.m.Cgroups {
			// Cleaned like the resolver cleans them and as Counted walks them:
			// "/" stays "/", "/a/" and "/a//" are "/a".
			out.cgroupPaths[filepath.Clean(path)] |= side.bit
			if resolver == nil {
				out.Unresolved = append(out.Unresolved, path)
				continue
			}
			id, err := resolver.ID(path)
			if err != nil {
				out.Unresolved = append(out.Unresolved, path)
				continue
			}
			k.CgroupIDs[id] |= side.bit
		}
	}

	setProcessMode(&k.Settings, f)

	if len(f.Include.Syscalls)+len(f.Exclude.Syscalls) > 0 {
		allowed, err := allowedSyscalls(f, names)
		if err != nil {
			return nil, err
		}
		k.SyscallAllowed = allowed
		k.Settings.SyscallFilter = 1
	}
	if events.Enabled {
		compileEvents(k, events, names)
	}
	return out, nil
}

// dims are the dimensions a match lists processes by.
func dims(m config.Match) uint32 {
	var d uint32
	if len(m.PIDs) > 0 {
		d |= loader.DimPID
	}
	if len(m.Comms) > 0 {
		d |= loader.DimComm
	}
	if len(m.Cgroups)+len(m.Units) > 0 {
		d |= loader.DimCgroup
	}
	return d
}

// setProcessMode decides how the kernel judges processes: only those listed
// in every include dimension, all but those excluded, or all.
func setProcessMode(s *loader.FilterSettings, f config.Filters) {
	s.IncludeMask = dims(f.Include)
	// The dimensions any list uses: a rename or a move that changes none
	// is not judged again in the kernel.
	s.Dims = dims(f.Include) | dims(f.Exclude)
	switch {
	case s.IncludeMask != 0:
		s.ProcessFilter = loader.FilterOnlyListed
	case dims(f.Exclude) != 0:
		s.ProcessFilter = loader.FilterExceptListed
	default:
		s.ProcessFilter = loader.FilterOff
	}
}

// compileEvents fills the notable-event settings: which errnos, how slow,
// how many, and where each syscall's path argument is.
func compileEvents(k *loader.KernelFilters, e config.Events, names *syscalls.Table) {
	if e.Errors {
		k.Settings.Notable |= loader.NotableErrors
		k.ErrnoNotable = make([]bool, 4096)
		for i := 1; i < len(k.ErrnoNotable); i++ {
			k.ErrnoNotable[i] = true
		}
		for _, name := range e.IgnoreErrnos {
			if n, ok := syscalls.ErrnoNumber(name); ok && int(n) < len(k.ErrnoNotable) {
				k.ErrnoNotable[n] = false
			}
		}
	}
	if e.Slow > 0 {
		k.Settings.Notable |= loader.NotableSlow
		k.Settings.SlowNs = uint64(e.Slow.Nanoseconds())
	}
	k.Settings.NotableRate = uint32(e.RateLimit)
	k.Settings.PathMax = uint32(min(e.PathMax, loader.PathCapture))
	k.PathArg = make([]uint8, loader.ABIs*loader.NRSlots)
	for abi := range loader.ABIs {
		for _, name := range names.Names(syscalls.ABI(abi)) {
			i, ok := syscalls.PathArg(name)
			nr, known := names.Number(syscalls.ABI(abi), name)
			if ok && known && nr < loader.NRSlots-1 {
				k.PathArg[abi*loader.NRSlots+int(nr)] = uint8(i + 1)
			}
		}
	}
}

// Follow makes a process tree's children counted from their fork on (sysobsd
// stat): with an include filter, a listed parent lists its child.
func (f *Filter) Follow() { f.kernel.Settings.FollowForks = 1 }

// allowedSyscalls marks the counted syscalls of both ABIs: the include list
// (or every syscall), less the exclude list.
func allowedSyscalls(f config.Filters, names *syscalls.Table) ([]bool, error) {
	allowed := make([]bool, loader.ABIs*loader.NRSlots)
	mark := func(list []string, on bool) error {
		for _, name := range list {
			found := false
			for abi := range loader.ABIs {
				nr, ok := names.Number(syscalls.ABI(abi), name)
				if !ok {
					continue
				}
				found = true
				if nr < loader.NRSlots-1 { // the last slot is shared by larger numbers
					allowed[abi*loader.NRSlots+int(nr)] = on
				}
			}
			if !found {
				return fmt.Errorf("filters: unknown syscall %q on this architecture", name)
			}
		}
		return nil
	}
	if len(f.Include.Syscalls) == 0 {
		for i := range allowed {
			allowed[i] = true
		}
	} else if err := mark(f.Include.Syscalls, true); err != nil {
		return nil, err
	}
	if err := mark(f.Exclude.Syscalls, false); err != nil {
		return nil, err
	}
	return allowed, nil
}

// Kernel is what loader.Maps.SetFilters writes.
func (f *Filter) Kernel() loader.KernelFilters { return f.kernel }

// Active reports whether processes are filtered (not only syscalls).
func (f *Filter) Active() bool { return f.kernel.Settings.ProcessFilter != loader.FilterOff }

// Counted judges a process as the kernel would: tgid, its name, and its
// cgroup2 path.
func (f *Filter) Counted(tgid uint32, comm, cgroupPath string) bool {
	var included uint32
	var excluded uint8
	match := func(m uint8, dim uint32) {
		if m&loader.MatchInclude != 0 {
			included |= dim
		}
		excluded |= m & loader.MatchExclude
	}
	match(f.kernel.PIDs[tgid], loader.DimPID)
	if len(comm) >= loader.CommLen {
		comm = comm[:loader.CommLen-1]
	}
	match(f.kernel.Comms[comm], loader.DimComm)
	// The cgroup and its ancestors, nearest first, as deep as the kernel looks.
	path := strings.TrimSuffix(cgroupPath, "/")
	for range loader.CgroupDepth {
		name := path[strings.LastIndexByte(path, '/')+1:]
		if len(name) >= loader.CgroupNameLen { // the kernel reads names into CGROUP_NAME_LEN bytes
			name = name[:loader.CgroupNameLen-1]
		}
		match(f.kernel.CgroupNames[name]|f.cgroupPaths[orRoot(path)], loader.DimCgroup)
		if path == "" {
			break
		}
		path = path[:strings.LastIndexByte(path, '/')]
	}
	counted := included&f.kernel.Settings.IncludeMask == f.kernel.Settings.IncludeMask && excluded == 0
	return counted
}

func orRoot(path string) string {
	if path == "" {
		return "/"
	}
	return path
}

// Apply writes the filters to the kernel, then judges every running process
// (new ones are judged by the lifecycle programs from now on).
func Apply(maps *loader.Maps, f *Filter, procRoot string) error {
	if err := maps.SetFilters(f.kernel); err != nil {
		return err
	}
	if !f.Active() {
		return nil
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return fmt.Errorf("filters: scan running processes: %w", err)
	}
	onlyListed := f.kernel.Settings.ProcessFilter == loader.FilterOnlyListed
	identify := func(pid uint32) (process, bool) { return identity(procRoot, pid) }
	for _, e := range entries {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		if err := f.judge(maps, uint32(pid), onlyListed, identify); err != nil {
			return err
		}
	}
	return nil
}

// process is what a verdict depends on.
type process struct{ comm, cgroupPath string }

// identity reads a running process's name and cgroup from /proc; false if
// it is gone.
func identity(procRoot string, pid uint32) (process, bool) {
	comm, err := os.ReadFile(procRoot + "/" + strconv.FormatUint(uint64(pid), 10) + "/comm")
	if err != nil {
		return process{}, false
	}
	path, _ := cgroups.ForPID(procRoot, int(pid))
	return process{strings.TrimSuffix(string(comm), "\n"), path}, true
}

// verdicts is where a process's verdict goes (loader.Maps).
type verdicts interface {
	SetProcessListed(tgid uint32, listed bool) error
}

// judgeTries bounds judge's rereads of a process that keeps changing.
const judgeTries = 4

// judge writes a running process's verdict, then reads its name and cgroup
// again: a rename or move between the read and the write had the kernel's
// hook write the newer verdict, which this write would otherwise replace
// with the older one until the process's next rename or exec.
func (f *Filter) judge(out verdicts, pid uint32, onlyListed bool, identify func(uint32) (process, bool)) error {
	p, ok := identify(pid)
	for range judgeTries {
		if !ok {
			return nil // gone: nothing to judge
		}
		if err := out.SetProcessListed(pid, f.Counted(pid, p.comm, p.cgroupPath) == onlyListed); err != nil {
			return err
		}
		again, still := identify(pid)
		if still && again == p {
			return nil
		}
		p, ok = again, still
	}
	return nil
}
