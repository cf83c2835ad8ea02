package loader

// Before loading, sysobsd asks the running kernel for each feature its
// programs and maps need, by creating a tiny map or program, not by
// comparing version numbers: distribution kernels (RHEL 9's 5.14) backport
// features. A kernel that lacks one fails with a single line naming all it
// lacks, instead of a verifier log or a misleading EPERM.

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// kernelFeature is one thing sysobsd needs from the kernel.
type kernelFeature struct {
	// name completes "kernel X lacks ...".
	name string
	// since is the mainline release that first had it.
	since string
	// probe returns nil if the kernel has it, an error wrapping
	// errFeatureMissing if it has not, and any other error when the probe
	// cannot tell (then loading goes on and reports what really fails).
	probe func() error
}

var errFeatureMissing = errors.New("kernel feature missing")

// kernelFeatures are in the order of the release that brought them; the
// last one's release is the minimum. BTF is checked before (kernelBTF), and
// task_rename's bpf_task_pt_regs (5.15) is optional.
var kernelFeatures = []kernelFeature{
	{"batch lookup on hash maps", "5.6", probeHashBatch},
	{"the BPF ring buffer", "5.8", func() error { return mapTypeMissing(features.HaveMapType(ebpf.RingBuf)) }},
	{"bpf_get_current_task_btf", "5.11", probeCurrentTaskBTF},
	{"task local storage in tracing programs", "5.12", probeTaskStorage},
	{"batch lookup on per-CPU arrays", "5.13", probePerCPUArrayBatch},
}

// UnsupportedKernelError is a kernel that lacks features sysobsd needs.
type UnsupportedKernelError struct {
	// Release is the running kernel's uname -r.
	Release string
	// Missing are the features it lacks, each with its first release:
	// "bpf_get_current_task_btf (Linux 5.11)".
	Missing []string
	// Minimum is the oldest mainline release that has everything.
	Minimum string
}

func (e *UnsupportedKernelError) Error() string {
	return fmt.Sprintf("load BPF: kernel %s lacks %s; sysobsd needs Linux ≥%s with BTF", e.Release, joinAnd(e.Missing), e.Minimum)
}

// Unwrap lets callers test for ebpf.ErrNotSupported.
func (e *UnsupportedKernelError) Unwrap() error { return ebpf.ErrNotSupported }

// requireKernelFeatures raises RLIMIT_MEMLOCK where the kernel needs it and
// fails with an UnsupportedKernelError if the kernel lacks any of
// kernelFeatures.
func requireKernelFeatures(log *zap.Logger) error {
	// Before 5.11, BPF memory is charged to RLIMIT_MEMLOCK, and a map that
	// exceeds it fails with EPERM, which reads like missing privileges.
	// RemoveMemlock does nothing where the memory cgroup is charged instead.
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Warn("cannot raise RLIMIT_MEMLOCK; on a kernel that charges BPF memory to it (before Linux 5.11), loading fails with EPERM", zap.Error(err))
	}
	return checkKernelFeatures(kernelRelease(), kernelFeatures, log)
}

func checkKernelFeatures(release string, want []kernelFeature, log *zap.Logger) error {
	var missing []string
	for _, f := range want {
		err := f.probe()
		switch {
		case err == nil:
		case errors.Is(err, errFeatureMissing):
			missing = append(missing, fmt.Sprintf("%s (Linux %s)", f.name, f.since))
		default:
			log.Debug("kernel feature probe cannot tell; loading anyway", zap.String("feature", f.name), zap.Error(err))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &UnsupportedKernelError{Release: release, Missing: missing, Minimum: want[len(want)-1].since}
}

// joinAnd lists "a", "a and b", "a, b and c".
func joinAnd(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "(unknown release)"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// mapTypeMissing turns a features probe's ErrNotSupported into errFeatureMissing.
func mapTypeMissing(err error) error {
	if errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("%w: %v", errFeatureMissing, err)
	}
	return err
}

func probeHashBatch() error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return err
	}
	defer m.Close()
	return batchMissing(m, make([]uint32, 1), make([]uint32, 1))
}

func probePerCPUArrayBatch() error {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return err
	}
	defer m.Close()
	return batchMissing(m, make([]uint32, 1), make([]uint64, cpus))
}

// batchMissing reads m in one batch: ENOTSUPP where the map type has no
// batch operations.
func batchMissing(m *ebpf.Map, keys, values any) error {
	var cursor ebpf.MapBatchCursor
	_, err := m.BatchLookup(&cursor, keys, values, nil)
	switch {
	case err == nil, errors.Is(err, ebpf.ErrKeyNotExist):
		return nil
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: %v", errFeatureMissing, err)
	}
	return err
}

func probeCurrentTaskBTF() error {
	return probeTracingHelper(asm.Instructions{
		asm.FnGetCurrentTaskBtf.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	})
}

// probeTaskStorage calls bpf_task_storage_get from a tp_btf program: the map
// type came in 5.11 for LSM programs, tracing programs may use it from 5.12.
func probeTaskStorage() error {
	if err := mapTypeMissing(features.HaveMapType(ebpf.TaskStorage)); err != nil {
		return err
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Type:      ebpf.TaskStorage,
		KeySize:   4,
		ValueSize: 8,
		Flags:     unix.BPF_F_NO_PREALLOC,
		Key:       &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed},
		Value:     &btf.Int{Name: "long long unsigned int", Size: 8},
	})
	if err != nil {
		return err
	}
	defer m.Close()
	return probeTracingHelper(asm.Instructions{
		// sched_process_fork's first argument: the parent task.
		asm.LoadMem(asm.R2, asm.R1, 0, asm.DWord),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Imm(asm.R3, 0),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnTaskStorageGet.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	})
}

// probeTracingHelper loads insns as a tp_btf program on sched_process_fork
// (one of sysobsd's own hooks). The verifier refuses a helper this program
// type may not call with "unknown func" (newer kernels: "program of this type
// cannot use helper"), and one it has never heard of with "invalid func".
func probeTracingHelper(insns asm.Instructions) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceRawTp,
		AttachTo:     "sched_process_fork",
		Instructions: insns,
		License:      "GPL",
	})
	if err == nil {
		return prog.Close()
	}
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		log := strings.Join(verr.Log, "\n")
		if strings.Contains(log, "unknown func") || strings.Contains(log, "invalid func") || strings.Contains(log, "cannot use helper") {
			return fmt.Errorf("%w: %v", errFeatureMissing, err)
		}
	}
	return err
}
