package syscalls

import (
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// errnoPrecomputed is how many errno names are built ahead of time: every
// value a syscall can return (the kernel's MAX_ERRNO is 4095).
const errnoPrecomputed = 4096

// kernelErrnos are the kernel-internal codes of include/linux/errno.h, which
// user space never sees but a tracer at syscall exit can (notably the
// ERESTART* family on interrupted calls). 520 is unassigned.
var kernelErrnos = [...]struct {
	errno uint32
	name  string
}{
	{512, "ERESTARTSYS"},
	{513, "ERESTARTNOINTR"},
	{514, "ERESTARTNOHAND"},
	{515, "ENOIOCTLCMD"},
	{516, "ERESTART_RESTARTBLOCK"},
	{517, "EPROBE_DEFER"},
	{518, "EOPENSTALE"},
	{519, "ENOPARAM"},
	// Defined for the NFSv3 protocol.
	{521, "EBADHANDLE"},
	{522, "ENOTSYNC"},
	{523, "EBADCOOKIE"},
	{524, "ENOTSUPP"},
	{525, "ETOOSMALL"},
	{526, "ESERVERFAULT"},
	{527, "EBADTYPE"},
	{528, "EJUKEBOX"},
	{529, "EIOCBQUEUED"},
	{530, "ERECALLCONFLICT"},
	{531, "ENOGRACE"},
}

// preferredErrnos picks, for values with several names, the kernel's primary
// uapi name. They are keyed by x/sys/unix constants, so each applies to the
// number the value has on the build architecture. Where x/sys already agrees
// the entry only pins the choice.
var preferredErrnos = [...]struct {
	errno syscall.Errno
	name  string
}{
	{unix.EAGAIN, "EAGAIN"},   // not EWOULDBLOCK
	{unix.EDEADLK, "EDEADLK"}, // not EDEADLOCK (where they share a number)
	// x/sys says ENOTSUP, a libc alias the kernel does not define; the
	// kernel's name is EOPNOTSUPP. Using it also keeps 95 apart from the
	// kernel-internal ENOTSUPP (524), one letter away.
	{unix.EOPNOTSUPP, "EOPNOTSUPP"},
	// x/sys says EFSCORRUPTED, which the kernel defines as an alias of
	// EUCLEAN ("Structure needs cleaning").
	{unix.EUCLEAN, "EUCLEAN"},
	{unix.EBADMSG, "EBADMSG"}, // not its alias EFSBADCRC
}

// errnoNames[n] is the name of errno n, or "errno_<n>".
var errnoNames = func() []string {
	names := numbered("errno_", errnoPrecomputed)
	for i := range names {
		if name := unix.ErrnoName(syscall.Errno(i)); name != "" {
			names[i] = name
		}
	}
	for _, e := range kernelErrnos {
		names[e.errno] = e.name
	}
	for _, e := range preferredErrnos {
		if int(e.errno) < len(names) {
			names[e.errno] = e.name
		}
	}
	return names
}()

func formatErrno(errno uint32) string {
	var buf [len("errno_") + 10]byte
	return string(strconv.AppendUint(append(buf[:0], "errno_"...), uint64(errno), 10))
}

// ErrnoName returns the symbolic name of a positive errno value: "ENOENT",
// "ENOSPC". It knows every name golang.org/x/sys/unix.ErrnoName knows plus
// the kernel-internal codes 512–531 of include/linux/errno.h (ERESTARTSYS …
// ENOGRACE). Where a value has several names it returns the kernel's primary
// one: EAGAIN (not EWOULDBLOCK), EDEADLK (not EDEADLOCK), EOPNOTSUPP (not
// ENOTSUP, which x/sys returns for 95), EUCLEAN (not EFSCORRUPTED, which x/sys
// returns for 117), EBADMSG (not EFSBADCRC). Any other value, including 0,
// yields "errno_<n>" (decimal). ErrnoName does not allocate for values below
// 4096.
func ErrnoName(errno uint32) string {
	if errno < uint32(len(errnoNames)) {
		return errnoNames[errno]
	}
	return formatErrno(errno)
}

// errnoNumbers reverses errnoNames, plus the aliases users may write.
var errnoNumbers = func() map[string]uint32 {
	m := make(map[string]uint32, errnoPrecomputed)
	for n, name := range errnoNames {
		if _, ok := m[name]; !ok && name != formatErrno(uint32(n)) {
			m[name] = uint32(n)
		}
	}
	for _, alias := range []struct {
		name  string
		errno syscall.Errno
	}{{"EWOULDBLOCK", unix.EWOULDBLOCK}, {"EDEADLOCK", unix.EDEADLK}, {"ENOTSUP", unix.ENOTSUP}} {
		m[alias.name] = uint32(alias.errno)
	}
	return m
}()

// ErrnoNumber returns the value of a symbolic errno name ("EACCES"), and
// false for names it does not know.
func ErrnoNumber(name string) (uint32, bool) {
	n, ok := errnoNumbers[name]
	return n, ok
}
