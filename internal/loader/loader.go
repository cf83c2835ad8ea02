// Package loader loads sysobsd's BPF programs, sets their filter constants,
// attaches them to the syscall and process tracepoints, and detaches them.
package loader

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/sysobsd/sysobsd/internal/privilege"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// KernelBTFPath is where CO-RE and tp_btf find the running kernel's types.
const KernelBTFPath = "/sys/kernel/btf/vmlinux"

// renameProgram is optional: without it, renames are seen at exit only.
const renameProgram = sysobsdProgTaskRename

// inFlightProgram is optional too: without it (bpf_task_pt_regs, Linux
// 5.15), the calls in flight are not reported.
const inFlightProgram = sysobsdProgInFlight

// lifecyclePrograms send the process and cgroup records; attached before the
// syscall programs, in every mode.
var lifecyclePrograms = []string{sysobsdProgProcessFork, sysobsdProgProcessExec, sysobsdProgProcessExit,
	sysobsdProgCgroupAttach, sysobsdProgCgroupMkdir, sysobsdProgCgroupRmdir}

// Options choose what is loaded. The zero value is not useful: start from
// DefaultOptions.
type Options struct {
	// Latency attaches sys_enter and measures time per call. Without it,
	// only sys_exit runs: calls and errors are counted, durations are not.
	Latency bool
	// LatencySampleEvery, with Latency, times one call in this many (a
	// power of two; 0 or 1: every call), chosen at random at entry, and
	// scales its time by it: the calls are counted exactly, their time and
	// histogram are estimates. The rest read only jiffies, and every call
	// as long as Probes.LongCall or longer is counted unscaled, timed or not.
	LatencySampleEvery uint32
	// ExcludeTGID is never counted: the daemon's own process.
	ExcludeTGID uint32
	// CallSlots is each CPU's slots in call_slots, where calls are counted
	// by process generation and syscall, and errors by those and errno (a
	// power of two from 4; 0: none, every call and error counted in the
	// slower hash maps, as tests of a full map want). A key whose slots are
	// all taken goes to its hash map.
	CallSlots uint32
	// StatsEntries and ErrorsEntries size the per-process hash maps.
	StatsEntries  uint32
	ErrorsEntries uint32
	// GroupStatsEntries and GroupErrorsEntries, when not 0, size the maps
	// that count by process name and cgroup what the per-process maps have
	// no room for (0: the object's 8192 and 4096).
	GroupStatsEntries  uint32
	GroupErrorsEntries uint32
	// RingBufferBytes sizes the lifecycle ring buffer (a power of two, ≥ page size).
	RingBufferBytes uint32
	// EventsRingBufferBytes sizes the notable events' ring buffer.
	EventsRingBufferBytes uint32
	// Attach forces "tp_btf" or "raw_tracepoint" for the syscall hooks;
	// empty tries tp_btf first.
	Attach string
	// KernelBTF is the running kernel's BTF: /sys/kernel/btf/vmlinux, or a
	// file made for a kernel built without it.
	KernelBTF string
	// StartSlots, when not 0, sizes the entry-time slots (a power of two)
	// instead of pid_max: tests use it to make threads share slots.
	StartSlots uint32
	// Prepare runs after the lifecycle programs are attached and before the
	// syscall hooks are: the place to set filters and scan running processes.
	Prepare func(*Probes) error
}

// DefaultOptions are what the embedded default config asks for.
func DefaultOptions() Options {
	return Options{
		Latency:               true,
		ExcludeTGID:           uint32(os.Getpid()),
		CallSlots:             8192,
		StatsEntries:          65536,
		ErrorsEntries:         16384,
		RingBufferBytes:       1024 * 1024,
		EventsRingBufferBytes: 1024 * 1024,
		KernelBTF:             KernelBTFPath,
	}
}

// Probes are the loaded maps and attached programs.
type Probes struct {
	Maps
	// attached are the programs behind links, by hook name, kept open
	// for their run statistics (ProgramStats).
	attached map[string]*ebpf.Program
	links    []link.Link
	// syscallHooks are the syscall hooks' program names, sys_exit first;
	// syscallLinks their links while attached (SetSyscallHooks).
	syscallHooks []string
	syscallLinks []link.Link
	// AttachMode is how the syscall hooks were attached: "tp_btf" or "raw_tracepoint".
	AttachMode string
	// InFlightTracked is true where the in_flight iterator is attached:
	// calls in flight are reported (latency on, Linux 5.15).
	InFlightTracked bool
	// RenamesTracked is false where task_rename could not be attached
	// (bpf_task_pt_regs needs Linux 5.15): renames are then seen at exit.
	RenamesTracked bool
	// LongCall, with sampled latency, is how long a call lasts from which
	// it is counted unscaled, timed or not; 0 otherwise.
	LongCall time.Duration
}

// Load checks the kernel, loads the maps and programs, and attaches them.
// On error nothing stays loaded.
func Load(opts Options, log *zap.Logger) (*Probes, error) {
	kernelTypes, err := kernelBTF(opts.KernelBTF)
	if err != nil {
		return nil, err
	}
	if err := privilege.Check(); err != nil {
		return nil, err
	}
	if err := requireKernelFeatures(log); err != nil {
		return nil, err
	}
	modes := []string{"tp_btf", "raw_tracepoint"}
	if opts.Attach != "" {
		modes = []string{opts.Attach}
	}
	var firstErr error
	for _, mode := range modes {
		p, err := load(opts, mode, kernelTypes, log)
		if err == nil {
			return p, nil
		}
		if isPermission(err) {
			return nil, err
		}
		if firstErr == nil {
			firstErr = err
		}
		log.Debug("attach mode failed, trying the next", zap.String("mode", mode), zap.Error(err))
	}
	return nil, firstErr
}

// kernelBTF reads the kernel's types, which CO-RE and tp_btf need.
func kernelBTF(path string) (*btf.Spec, error) {
	if path == "" {
		path = KernelBTFPath
	}
	if _, err := os.Stat(path); err != nil {
		if path == KernelBTFPath {
			return nil, fmt.Errorf("load BPF: kernel has no BTF at %s; sysobsd needs Linux ≥5.13 built with CONFIG_DEBUG_INFO_BTF=y (its tp_btf hooks need the kernel's own BTF)", path)
		}
		return nil, fmt.Errorf("load BPF: --bpf.kernel-btf=%s: %w; give the BTF of the running kernel", path, err)
	}
	spec, err := btf.LoadSpec(path)
	if err != nil {
		return nil, fmt.Errorf("load BPF: %s is not usable BTF: %v; give the BTF of the running kernel (default %s)", path, err, KernelBTFPath)
	}
	return spec, nil
}

// maxStartSlots bounds the entry-time slots (16 bytes each): 4 MiB. Hosts
// whose pid_max is larger (systemd sets 2^22) share slots between thread
// ids, and a thread whose slot is held falls back to task storage.
const maxStartSlots = 1 << 18

// longCallFloor is the least a long call lasts (sampled latency): 2^24 ns,
// a bucket bound of the histogram (2^-6 s).
const longCallFloor = 1 << 24 * time.Nanosecond

// longCallTicks is the jiffies from which a call is long with sampled
// latency: at least longCallFloor and 4 ticks, so that an untimed call,
// counted as its ticks, is within a quarter of its time.
func longCallTicks(tick time.Duration) uint64 {
	return max(4, uint64((longCallFloor+tick-1)/tick))
}

// KernelTick is the kernel's tick (1/HZ): the resolution of the coarse
// clocks, which advance with jiffies.
func KernelTick() (time.Duration, error) {
	var res unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_MONOTONIC_COARSE, &res); err != nil {
		return 0, fmt.Errorf("read the kernel's tick (clock_getres CLOCK_MONOTONIC_COARSE): %w", err)
	}
	tick := time.Duration(res.Nano())
	if tick <= 0 || tick > time.Second {
		return 0, fmt.Errorf("the kernel's tick is %v (clock_getres CLOCK_MONOTONIC_COARSE): not from 1 ns to 1 s", tick)
	}
	return tick, nil
}

// startSlots is pid_max rounded up to a power of two, at most maxStartSlots:
// below that every thread id has a slot of its own.
func startSlots(pidMax uint32) uint32 {
	slots := uint32(1)
	for slots < pidMax && slots < maxStartSlots {
		slots <<= 1
	}
	return slots
}

// readPIDMax is the kernel's largest thread id plus one; if it cannot be
// read, the largest the kernel allows (so slots are at their bound).
func readPIDMax() uint32 {
	const pidMaxLimit = 1 << 22 // PID_MAX_LIMIT on 64-bit kernels
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return pidMaxLimit
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil || n == 0 {
		return pidMaxLimit
	}
	return uint32(n)
}

func isPermission(err error) bool {
	// The verifier refuses a program with EACCES too: that is a rejection
	// the next attach mode may not have, not a missing privilege.
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return false
	}
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

func permissionError(what string, err error) error {
	return fmt.Errorf("%s: permission denied; run sysobsd as root or with CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE where kernels older than 5.11 charge memlock (%w)", what, err)
}

// configure sets the constants and map sizes of opts in the spec, through
// the generated spec types: a map or variable renamed in the C fails here,
// by name, instead of as a nil pointer.
// It returns the long-call length it set (sampled latency; else 0).
func configure(spec *ebpf.CollectionSpec, opts Options) (longCall time.Duration, err error) {
	var specs sysobsdSpecs
	if err = spec.Assign(&specs); err != nil {
		return 0, fmt.Errorf("load BPF: the embedded object does not match its Go bindings (run make generate): %w", err)
	}
	vars, maps := specs.sysobsdVariableSpecs, specs.sysobsdMapSpecs
	slots := uint32(1)
	if opts.Latency {
		slots = startSlots(readPIDMax())
	}
	if opts.Latency && opts.StartSlots != 0 {
		if opts.StartSlots&(opts.StartSlots-1) != 0 {
			return 0, fmt.Errorf("load BPF: %d entry-time slots: not a power of two", opts.StartSlots)
		}
		slots = opts.StartSlots
	}
	maps.StartSlots.MaxEntries = slots
	sampleShift := uint32(0)
	tick, longTicks := time.Duration(0), uint64(0)
	if every := opts.LatencySampleEvery; opts.Latency && every > 1 {
		if every&(every-1) != 0 || every > 1<<16 {
			return 0, fmt.Errorf("load BPF: sampled latency one call in %d: not a power of two up to 65536", every)
		}
		sampleShift = uint32(bits.TrailingZeros32(every))
		if tick, err = KernelTick(); err != nil {
			return 0, fmt.Errorf("load BPF: sampled latency: %w", err)
		}
		longTicks = longCallTicks(tick)
	}
	slotBits, err := callSlotBits(opts.CallSlots)
	if err != nil {
		return 0, fmt.Errorf("load BPF: %w", err)
	}
	maps.CallSlots.MaxEntries = 1
	if opts.CallSlots != 0 {
		ncpu, err := ebpf.PossibleCPU()
		if err != nil {
			return 0, fmt.Errorf("load BPF: count possible CPUs: %w", err)
		}
		maps.CallSlots.MaxEntries = uint32(ncpu) << slotBits
	}
	maps.SyscallStats.MaxEntries = opts.StatsEntries
	maps.SyscallErrors.MaxEntries = opts.ErrorsEntries
	if opts.GroupStatsEntries != 0 {
		maps.GroupStats.MaxEntries = opts.GroupStatsEntries
	}
	if opts.GroupErrorsEntries != 0 {
		maps.GroupErrors.MaxEntries = opts.GroupErrorsEntries
	}
	maps.Lifecycle.MaxEntries = opts.RingBufferBytes
	if opts.EventsRingBufferBytes != 0 {
		maps.NotableEvents.MaxEntries = opts.EventsRingBufferBytes
	}
	constants := []struct {
		v     *ebpf.VariableSpec
		value any
	}{
		{vars.SelfTgid, opts.ExcludeTGID},
		{vars.MeasureLatency, opts.Latency},
		{vars.StartSlotMask, slots - 1},
		{vars.LatencySampleShift, sampleShift},
		{vars.TickNs, uint64(tick)},
		{vars.LongCallTicks, longTicks},
		{vars.CallSlotBits, slotBits},
		// The engine drains the records at every fold and scrape: a
		// quarter full is when they are worth an interrupt.
		{vars.LifecycleWakeupBytes, uint64(opts.RingBufferBytes / 4)},
	}
	for _, c := range constants {
		if err := c.v.Set(c.value); err != nil {
			return 0, fmt.Errorf("load BPF: set %s: %w", c.v.Name, err)
		}
	}
	return time.Duration(longTicks) * tick, nil
}

func load(opts Options, mode string, kernelTypes *btf.Spec, log *zap.Logger) (*Probes, error) {
	spec, err := loadSysobsd()
	if err != nil {
		return nil, fmt.Errorf("load BPF: parse embedded object: %w", err)
	}
	longCall, err := configure(spec, opts)
	if err != nil {
		return nil, err
	}
	enter, exit := syscallPrograms(mode)
	keepOnly(spec, opts.Latency, enter, exit)
	coll, err := newCollection(spec, kernelTypes, log)
	if err != nil {
		return nil, err
	}
	// Assign moves the maps out of the collection; the programs stay in it
	// until attached.
	defer coll.Close()
	p := &Probes{AttachMode: mode, attached: make(map[string]*ebpf.Program), LongCall: longCall}
	p.Maps.sampledLatency = longCall != 0
	if err := coll.Assign(&p.Maps.objs); err != nil {
		return nil, fmt.Errorf("load BPF: %w", err)
	}
	if err := p.Maps.init(); err != nil {
		p.Maps.Close()
		return nil, fmt.Errorf("load BPF: %w", err)
	}
	// Lifecycle first, so that Prepare's scan of running processes misses no
	// process; then exit before enter: a call whose entry is stamped but whose
	// exit is not hooked yet is only counted as missing its start.
	syscalls := []string{exit}
	if opts.Latency {
		syscalls = append(syscalls, enter)
	}
	err = p.attachAll(coll, mode, lifecyclePrograms)
	if err == nil {
		p.attachRename(coll, log)
		p.attachInFlight(coll, log)
		if opts.Prepare != nil {
			err = opts.Prepare(p)
		}
	}
	if err == nil {
		p.syscallHooks = syscalls
		for _, name := range syscalls {
			p.attached[hookName(name)] = coll.DetachProgram(name)
		}
		err = p.SetSyscallHooks(true)
	}
	if err != nil {
		p.detach()
		p.Maps.Close()
		return nil, err
	}
	return p, nil
}

// syscallPrograms are the two syscall hooks' programs in an attach mode.
func syscallPrograms(mode string) (enter, exit string) {
	if mode == "raw_tracepoint" {
		return sysobsdProgSysEnterRaw, sysobsdProgSysExitRaw
	}
	return sysobsdProgSysEnter, sysobsdProgSysExit
}

// keepOnly leaves in spec the programs this mode attaches: each program
// costs verification.
func keepOnly(spec *ebpf.CollectionSpec, latency bool, enter, exit string) {
	want := map[string]bool{exit: true, renameProgram: true}
	for _, name := range lifecyclePrograms {
		want[name] = true
	}
	if latency { // the entry times in_flight reports are sys_enter's
		want[enter] = true
		want[inFlightProgram] = true
	}
	for name := range spec.Programs {
		if !want[name] {
			delete(spec.Programs, name)
		}
	}
}

// newCollection loads the maps and programs. Where they fail to load, it
// tries again without the optional programs: task_rename and in_flight need
// bpf_task_pt_regs (Linux 5.15); the error named one of them, that one
// first.
func newCollection(spec *ebpf.CollectionSpec, kernelTypes *btf.Spec, log *zap.Logger) (*ebpf.Collection, error) {
	collOpts := ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernelTypes}}
	coll, err := ebpf.NewCollectionWithOptions(spec, collOpts)
	var dropped []string
	for _, optional := range optionalPrograms(spec, err) {
		delete(spec.Programs, optional)
		dropped = append(dropped, optional)
		var retryErr error
		if coll, retryErr = ebpf.NewCollectionWithOptions(spec, collOpts); retryErr == nil {
			for _, name := range dropped {
				log.Warn(optionalWarning[name], zap.Error(err))
			}
		}
		// Failing without it too, the cause is elsewhere (or in the other
		// optional program): report the later error.
		err = retryErr
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, describeLoadError(err)
	}
	return coll, nil
}

// optionalWarning is what a run without each optional program misses.
var optionalWarning = map[string]string{
	renameProgram:   "process renames by prctl are seen when the process exits only",
	inFlightProgram: "calls in flight are not reported (sysobsd_syscalls_in_flight, sysobsd ps)",
}

// optionalPrograms are the optional programs in spec to drop, in order,
// after a load error: the one the error names first.
func optionalPrograms(spec *ebpf.CollectionSpec, err error) []string {
	if err == nil {
		return nil
	}
	var names []string
	for _, name := range []string{renameProgram, inFlightProgram} {
		if spec.Programs[name] == nil {
			continue
		}
		if strings.Contains(err.Error(), "program "+name) {
			names = append([]string{name}, names...)
		} else {
			names = append(names, name)
		}
	}
	return names
}

// attachAll attaches the named programs of coll, keeping their links.
func (p *Probes) attachAll(coll *ebpf.Collection, mode string, names []string) error {
	for _, name := range names {
		l, err := attach(coll.Programs[name], mode, name)
		if err != nil {
			return err
		}
		p.keep(coll, name, l)
	}
	return nil
}

// attachOptional attaches an optional program if it loaded (task_rename,
// in_flight): a failure is its warning, not an error. It reports the link,
// nil if the program is not attached.
func (p *Probes) attachOptional(coll *ebpf.Collection, name string, log *zap.Logger,
	attach func(*ebpf.Program) (link.Link, error)) link.Link {
	prog := coll.Programs[name]
	if prog == nil {
		return nil
	}
	l, err := attach(prog)
	if err != nil {
		log.Warn(optionalWarning[name], zap.Error(err))
		return nil
	}
	p.keep(coll, name, l)
	return l
}

// attachRename attaches task_rename; without it, renames are seen at exit.
func (p *Probes) attachRename(coll *ebpf.Collection, log *zap.Logger) {
	l := p.attachOptional(coll, renameProgram, log, func(prog *ebpf.Program) (link.Link, error) {
		return link.AttachTracing(link.TracingOptions{Program: prog})
	})
	p.RenamesTracked = l != nil
}

// attachInFlight attaches the in_flight iterator that ReadInFlight runs.
func (p *Probes) attachInFlight(coll *ebpf.Collection, log *zap.Logger) {
	l := p.attachOptional(coll, inFlightProgram, log, func(prog *ebpf.Program) (link.Link, error) {
		return link.AttachIter(link.IterOptions{Program: prog})
	})
	if iter, ok := l.(*link.Iter); ok {
		p.Maps.inFlight = iter
		p.InFlightTracked = true
	}
}

// keep holds an attached program's link, and the program under its hook's
// name (the raw_tracepoint twins count as the same) for its run statistics.
func (p *Probes) keep(coll *ebpf.Collection, name string, l link.Link) {
	p.links = append(p.links, l)
	p.attached[hookName(name)] = coll.DetachProgram(name)
}

// hookName is a program's hook: the raw_tracepoint twins count as the same.
func hookName(program string) string { return strings.TrimSuffix(program, "_raw") }

func attach(prog *ebpf.Program, mode, name string) (link.Link, error) {
	var (
		l   link.Link
		err error
	)
	switch {
	case mode == "raw_tracepoint" && (name == "sys_enter_raw" || name == "sys_exit_raw"):
		tp := map[string]string{"sys_enter_raw": "sys_enter", "sys_exit_raw": "sys_exit"}[name]
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: prog})
	default:
		l, err = link.AttachTracing(link.TracingOptions{Program: prog})
	}
	if err != nil {
		if isPermission(err) {
			return nil, permissionError("attach "+name, err)
		}
		return nil, fmt.Errorf("attach %s (%s): %w", name, mode, err)
	}
	return l, nil
}

// VerifierRejection is a program the kernel's verifier refused; its message
// carries the whole log, which names the instruction refused.
type VerifierRejection struct {
	Err *ebpf.VerifierError
	// Context names the program: "program sys_exit: load program: ".
	Context string
}

func (v *VerifierRejection) Error() string {
	return fmt.Sprintf("load BPF: the kernel's verifier rejected a program; please report with this log: %s%+v", v.Context, v.Err)
}

func (v *VerifierRejection) Unwrap() error { return v.Err }

func describeLoadError(err error) error {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return &VerifierRejection{Err: verr, Context: strings.TrimSuffix(err.Error(), verr.Error())}
	}
	if isPermission(err) {
		return permissionError("load BPF", err)
	}
	return fmt.Errorf("load BPF: %w", err)
}

// SetSyscallHooks detaches the syscall hooks (sys_exit, and sys_enter with
// latency) or attaches them again; the maps and the other programs stay.
// While they are off no call is counted, and a call in flight across the
// switch may be counted without its duration or with a wrong one: this is
// for the in-place benchmark (bench/cmd/inplace), which times the same
// loaded programs on and off in turn, not for the daemon.
func (p *Probes) SetSyscallHooks(on bool) error {
	if !on {
		var errs []error
		// sys_enter first (the last attached): no new entry time is stamped
		// once sys_exit is gone.
		for i := len(p.syscallLinks) - 1; i >= 0; i-- {
			errs = append(errs, p.syscallLinks[i].Close())
		}
		p.syscallLinks = nil
		return errors.Join(errs...)
	}
	if p.syscallLinks != nil {
		return nil
	}
	for _, name := range p.syscallHooks {
		l, err := attach(p.attached[hookName(name)], p.AttachMode, name)
		if err != nil {
			return errors.Join(err, p.SetSyscallHooks(false))
		}
		p.syscallLinks = append(p.syscallLinks, l)
	}
	return nil
}

func (p *Probes) detach() {
	// No read of the calls in flight may use the iterator's link while it
	// closes (a scrape or /api/v1/in_flight still running).
	p.Maps.inFlightMu.Lock()
	p.Maps.inFlight = nil
	p.Maps.inFlightMu.Unlock()
	_ = p.SetSyscallHooks(false) // as the other links: closing is all detach can do
	for _, l := range p.links {
		l.Close()
	}
	p.links = nil
	for _, prog := range p.attached {
		prog.Close()
	}
	clear(p.attached)
}

// ProgramStats are an attached program's run statistics, kept by the kernel.
type ProgramStats struct {
	// Runs and Runtime count only while kernel.bpf_stats_enabled is 1 (the
	// kernel's accounting reads the clock twice per run, so it is off by
	// default): then Runtime/Runs is the program's own cost per run.
	Runs    uint64
	Runtime time.Duration
	// RecursionMisses are runs the kernel skipped because the program was
	// already running on that CPU (Linux 5.12; 0 before): for sys_exit a
	// call not counted, for a lifecycle program a record not sent.
	RecursionMisses uint64
}

// ProgramStats returns each attached program's run statistics.
func (p *Probes) ProgramStats() (map[string]ProgramStats, error) {
	out := make(map[string]ProgramStats, len(p.attached))
	for name, prog := range p.attached {
		stats, err := prog.Stats()
		if err != nil {
			return nil, fmt.Errorf("read %s's run statistics: %w", name, err)
		}
		out[name] = ProgramStats{Runs: stats.RunCount, Runtime: stats.Runtime, RecursionMisses: stats.RecursionMisses}
	}
	return out, nil
}

// Close detaches every program and frees the maps.
func (p *Probes) Close() error {
	p.detach()
	return p.Maps.Close()
}
