package inject

import (
	"fmt"
	"runtime"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/syscalls"
)

// goRuntimeCalls are the calls the Go runtime of sysobsd's child may make on
// its thread between installing the filter and execve (syscall.Exec restores
// RLIMIT_NOFILE; an allocation may map memory or wake a GC worker; a signal
// returns by rt_sigreturn). A plain SECCOMP_RET_ERRNO filter on one of them
// could fail the child before it runs the command, so a plan naming one is
// carried out by user notification, which lets every call before execve
// through.
var goRuntimeCalls = []string{
	"execve", "execveat", "prlimit64", "setrlimit", "getrlimit", "rt_sigreturn",
	"rt_sigprocmask", "rt_sigaction", "sigaltstack", "futex", "sched_yield",
	"nanosleep", "clock_nanosleep", "exit", "exit_group", "mmap", "munmap",
	"madvise", "mprotect", "tgkill", "tkill", "getpid", "gettid", "clone", "clone3",
}

// Notify reports whether the plan needs a supervisor answering seccomp user
// notifications (when=, retval=, signal=, delays, or a call the child's Go
// runtime makes before exec); otherwise the filter alone does the job.
func (p *Plan) Notify() bool {
	host := syscalls.Host()
	runtimeCall := map[uint32]bool{}
	for _, name := range goRuntimeCalls {
		if nr, ok := host.Number(syscalls.Native, name); ok {
			runtimeCall[nr] = true
		}
	}
	for nr, r := range p.Rules {
		if !r.everyCall() || runtimeCall[nr] {
			return true
		}
	}
	return false
}

// auditArch is the seccomp_data.arch of the native ABI: a call of another
// ABI (i386 by int 0x80, x32) is let through, not injected.
func auditArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, nil
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, nil
	}
	return 0, fmt.Errorf("inject: no seccomp architecture for %s", runtime.GOARCH)
}

// x32Bit marks x32 calls on x86_64 (__X32_SYSCALL_BIT).
const x32Bit = 0x40000000

// program assembles the seccomp filter: for each syscall of the plan, return
// SECCOMP_RET_ERRNO with its errno, or SECCOMP_RET_USER_NOTIF when notify
// (then execve too, so the supervisor sees the command start); allow the
// rest. Two instructions per syscall, so no jump is ever long.
func (p *Plan) program(notify bool) ([]unix.SockFilter, error) {
	arch, err := auditArch()
	if err != nil {
		return nil, err
	}
	allow := bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW}
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: arch, SkipTrue: 1},
		allow,
		bpf.LoadAbsolute{Off: 0, Size: 4}, // seccomp_data.nr
	}
	if runtime.GOARCH == "amd64" {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32Bit, SkipFalse: 1}, allow)
	}
	actions := map[uint32]uint32{}
	for nr, r := range p.Rules {
		if notify {
			actions[nr] = unix.SECCOMP_RET_USER_NOTIF
		} else {
			actions[nr] = unix.SECCOMP_RET_ERRNO | uint32(r.Errno)
		}
	}
	if notify {
		if nr, ok := syscalls.Host().Number(syscalls.Native, "execve"); ok {
			actions[nr] = unix.SECCOMP_RET_USER_NOTIF
		}
	}
	for nr, action := range actions {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: 1},
			bpf.RetConstant{Val: action})
	}
	prog = append(prog, allow)
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("inject: assemble the seccomp filter: %w", err)
	}
	if len(raw) > 4096 { // BPF_MAXINSNS
		return nil, fmt.Errorf("inject: the seccomp filter has %d instructions, more than the kernel's 4096", len(raw))
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	return filter, nil
}
