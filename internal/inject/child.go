package inject

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/syscalls"
)

// Env carries a plan's expressions (JSON) to sysobsd's child, which
// installs the filter and execs the command.
const Env = "SYSOBSD_INJECT"

// EnvValue is the value of Env for the plan.
func (p *Plan) EnvValue() string {
	b, _ := json.Marshal(p.Exprs) // a []string always marshals
	return string(b)
}

// ExecChild runs in sysobsd's child: it installs the plan's filter on this
// thread only and execs path. Without SECCOMP_FILTER_FLAG_TSYNC the other
// threads of the child's Go runtime stay unfiltered; the exec'ing thread is
// then the process's only one, and every thread and child the command makes
// inherits the filter, as strace -f follows them. It returns only on error.
func ExecChild(path string, argv, env []string) error {
	runtime.LockOSThread() // the filter is this thread's; so must the execve be
	var exprs []string
	if err := json.Unmarshal([]byte(os.Getenv(Env)), &exprs); err != nil {
		return fmt.Errorf("inject: %s: %w", Env, err)
	}
	plan, err := Parse(exprs, syscalls.Host())
	if err != nil {
		return err
	}
	notify := plan.Notify()
	filter, err := plan.program(notify)
	if err != nil {
		return err
	}
	// No GC cycle between the filter and execve: fewer runtime calls there.
	debug.SetGCPercent(-1)
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("inject: prctl(PR_SET_NO_NEW_PRIVS): %w; a seccomp filter needs no_new_privs (or CAP_SYS_ADMIN)", e)
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	flags := uintptr(0)
	if notify {
		// WAIT_KILLABLE_RECV: once the supervisor holds a call, only a fatal
		// signal interrupts it, so signal= does not restart the call.
		flags = unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
	}
	_, _, e := syscall.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog)))
	if e == unix.EINVAL && notify { // before Linux 5.19
		flags &^= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
		_, _, e = syscall.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog)))
	}
	runtime.KeepAlive(filter)
	if e != 0 {
		return fmt.Errorf("inject: install the seccomp filter: %w; needs Linux with CONFIG_SECCOMP_FILTER (user notification: Linux ≥5.5)", e)
	}
	// The listener fd, if any, is close-on-exec: the supervisor takes its
	// own copy (pidfd_getfd) while execve waits for its answer.
	err = syscall.Exec(path, argv, env)
	return fmt.Errorf("exec %s: %w", path, err)
}

// CheckTarget refuses a program that no_new_privs would run without the
// privileges its file grants (set-user-ID, set-group-ID, file capabilities):
// it would not be the program the user meant to test.
func CheckTarget(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("inject: %s: %w", path, err)
	}
	why := ""
	switch {
	case st.Mode&unix.S_ISUID != 0 && int(st.Uid) != os.Geteuid():
		why = "set-user-ID"
	case st.Mode&unix.S_ISGID != 0 && int(st.Gid) != os.Getegid():
		why = "set-group-ID"
	case os.Geteuid() != 0 && hasFileCaps(path):
		why = "given file capabilities"
	}
	if why != "" {
		return fmt.Errorf("inject: %s is %s; under no_new_privs, which a seccomp filter needs, it would run without those privileges; run sysobsd inject as the user it runs as", path, why)
	}
	return nil
}

func hasFileCaps(path string) bool {
	n, err := unix.Getxattr(path, "security.capability", nil)
	return err == nil && n > 0
}
