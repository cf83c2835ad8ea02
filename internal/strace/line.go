package strace

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/notable"
)

// argKind says how to show one argument.
type argKind uint8

const (
	argInt     argKind = iota // signed decimal, a C int
	argOff                    // signed decimal, a 64-bit off_t/loff_t
	argUint                   // unsigned decimal (sizes, counts)
	argHex                    // pointers and opaque values
	argFD                     // a file descriptor
	argDirFD                  // a directory fd: AT_FDCWD
	argPath                   // a path: the captured string
	argOpen                   // open flags: O_RDONLY|O_CLOEXEC
	argMode                   // a file mode, octal
	argAtFlags                // AT_* flags
)

// signatures of the calls SREs meet most; others show six hex arguments.
var signatures = map[string][]argKind{
	"read": {argFD, argHex, argUint}, "write": {argFD, argHex, argUint},
	"pread64": {argFD, argHex, argUint, argOff}, "pwrite64": {argFD, argHex, argUint, argOff},
	"open": {argPath, argOpen, argMode}, "openat": {argDirFD, argPath, argOpen, argMode},
	"openat2": {argDirFD, argPath, argHex, argUint}, "creat": {argPath, argMode},
	"close": {argFD}, "stat": {argPath, argHex}, "lstat": {argPath, argHex}, "fstat": {argFD, argHex},
	"newfstatat": {argDirFD, argPath, argHex, argAtFlags}, "statx": {argDirFD, argPath, argAtFlags, argHex, argHex},
	"access": {argPath, argMode}, "faccessat": {argDirFD, argPath, argMode}, "faccessat2": {argDirFD, argPath, argMode, argAtFlags},
	"execve": {argPath, argHex, argHex}, "execveat": {argDirFD, argPath, argHex, argHex, argAtFlags},
	"unlink": {argPath}, "unlinkat": {argDirFD, argPath, argAtFlags}, "rmdir": {argPath},
	"mkdir": {argPath, argMode}, "mkdirat": {argDirFD, argPath, argMode},
	"rename": {argPath, argHex}, "renameat": {argDirFD, argPath, argDirFD, argHex}, "renameat2": {argDirFD, argPath, argDirFD, argHex, argUint},
	"chdir": {argPath}, "fchdir": {argFD}, "readlink": {argPath, argHex, argUint}, "readlinkat": {argDirFD, argPath, argHex, argUint},
	"chmod": {argPath, argMode}, "fchmod": {argFD, argMode}, "fchmodat": {argDirFD, argPath, argMode},
	"chown": {argPath, argInt, argInt}, "fchown": {argFD, argInt, argInt}, "fchownat": {argDirFD, argPath, argInt, argInt, argAtFlags},
	"truncate": {argPath, argOff}, "ftruncate": {argFD, argOff}, "fsync": {argFD}, "fdatasync": {argFD},
	"lseek": {argFD, argOff, argInt}, "dup": {argFD}, "dup2": {argFD, argFD}, "dup3": {argFD, argFD, argHex},
	"ioctl": {argFD, argHex, argHex}, "fcntl": {argFD, argInt, argHex}, "flock": {argFD, argInt},
	"connect": {argFD, argHex, argUint}, "accept": {argFD, argHex, argHex}, "accept4": {argFD, argHex, argHex, argHex},
	"bind": {argFD, argHex, argUint}, "listen": {argFD, argInt}, "sendto": {argFD, argHex, argUint, argHex, argHex, argUint},
	"recvfrom": {argFD, argHex, argUint, argHex, argHex, argHex}, "sendmsg": {argFD, argHex, argHex}, "recvmsg": {argFD, argHex, argHex},
	"futex": {argHex, argInt, argInt, argHex, argHex, argInt}, "nanosleep": {argHex, argHex},
	"clock_nanosleep": {argInt, argInt, argHex, argHex}, "epoll_wait": {argFD, argHex, argInt, argInt},
	"epoll_pwait": {argFD, argHex, argInt, argInt, argHex, argUint}, "poll": {argHex, argUint, argInt},
	"ppoll": {argHex, argUint, argHex, argHex, argUint}, "select": {argInt, argHex, argHex, argHex, argHex},
	"wait4": {argInt, argHex, argHex, argHex}, "kill": {argInt, argInt}, "getdents64": {argFD, argHex, argUint},
	"mmap": {argHex, argUint, argHex, argHex, argFD, argHex}, "munmap": {argHex, argUint},
	"fallocate": {argFD, argInt, argOff, argOff}, "sendfile": {argFD, argFD, argHex, argUint},
}

// largeFile is the kernel's O_LARGEFILE. x/sys says 0 on amd64, as the C
// library does for 64-bit code, but the bit is 0x8000 and 32-bit tasks set it.
var largeFile = cmp.Or(uint64(unix.O_LARGEFILE), 0x8000)

// openFlags in strace's order. Each entry matches only when all its bits are
// set and takes them, so O_SYNC (which includes O_DSYNC) and O_TMPFILE (which
// includes O_DIRECTORY) come before their parts.
var openFlags = []struct {
	bit  uint64
	name string
}{
	{unix.O_CREAT, "O_CREAT"}, {unix.O_EXCL, "O_EXCL"}, {unix.O_NOCTTY, "O_NOCTTY"}, {unix.O_TRUNC, "O_TRUNC"},
	{unix.O_APPEND, "O_APPEND"}, {unix.O_NONBLOCK, "O_NONBLOCK"}, {unix.O_SYNC, "O_SYNC"}, {unix.O_DSYNC, "O_DSYNC"},
	{unix.O_DIRECT, "O_DIRECT"}, {largeFile, "O_LARGEFILE"},
	{unix.O_NOFOLLOW, "O_NOFOLLOW"}, {unix.O_NOATIME, "O_NOATIME"}, {unix.O_CLOEXEC, "O_CLOEXEC"},
	{unix.O_PATH, "O_PATH"}, {unix.O_TMPFILE, "O_TMPFILE"}, {unix.O_TMPFILE &^ unix.O_DIRECTORY, "__O_TMPFILE"},
	{unix.O_DIRECTORY, "O_DIRECTORY"}, {unix.O_ASYNC, "FASYNC"},
}

func formatOpenFlags(v uint64) string {
	parts := []string{[]string{"O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"}[v&unix.O_ACCMODE]}
	rest := v &^ unix.O_ACCMODE
	for _, f := range openFlags {
		if rest&f.bit == f.bit && f.bit != 0 {
			parts = append(parts, f.name)
			rest &^= f.bit
		}
	}
	if rest != 0 {
		parts = append(parts, "0x"+strconv.FormatUint(rest, 16))
	}
	return strings.Join(parts, "|")
}

func formatAtFlags(v uint64) string {
	if v == 0 {
		return "0"
	}
	var parts []string
	for _, f := range []struct {
		bit  uint64
		name string
	}{{unix.AT_SYMLINK_NOFOLLOW, "AT_SYMLINK_NOFOLLOW"}, {unix.AT_REMOVEDIR, "AT_REMOVEDIR"},
		{unix.AT_SYMLINK_FOLLOW, "AT_SYMLINK_FOLLOW"}, {unix.AT_NO_AUTOMOUNT, "AT_NO_AUTOMOUNT"},
		{unix.AT_EMPTY_PATH, "AT_EMPTY_PATH"}, {unix.AT_STATX_FORCE_SYNC, "AT_STATX_FORCE_SYNC"},
		{unix.AT_STATX_DONT_SYNC, "AT_STATX_DONT_SYNC"}} {
		if v&f.bit != 0 {
			parts = append(parts, f.name)
			v &^= f.bit
		}
	}
	if v != 0 {
		parts = append(parts, "0x"+strconv.FormatUint(v, 16))
	}
	return strings.Join(parts, "|")
}

// quote shows a path as strace does, with a cut marked: "abc"...
func quote(path string) string {
	if s, cut := strings.CutSuffix(path, "..."); cut {
		return strconv.Quote(s) + "..."
	}
	return strconv.Quote(path)
}

// Line renders one event as strace -f does, prefixed with pid and name:
// 1234 nginx openat(AT_FDCWD, "/etc/nginx/x.conf", O_RDONLY) = -1 EACCES (Permission denied) <0.000012>
func Line(n notable.Event, strlen int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s %s(", n.PID, n.Comm, n.Syscall)
	sig, known := signatures[n.Syscall]
	if !known {
		sig = []argKind{argHex, argHex, argHex, argHex, argHex, argHex}
	}
	if (n.Syscall == "open" || n.Syscall == "openat") && !createsFile(n) {
		sig = sig[:len(sig)-1] // strace shows the mode only when a file may be created
	}
	for i, kind := range sig {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(formatArg(kind, n.Args[i], n, strlen))
	}
	b.WriteString(") = ")
	if n.Errno != "" {
		fmt.Fprintf(&b, "-1 %s (%s)", n.Errno, describeErrno(-n.Ret))
	} else {
		b.WriteString(strconv.FormatInt(n.Ret, 10))
	}
	if n.FDPath != "" {
		fmt.Fprintf(&b, " [fd: %s]", n.FDPath)
	}
	fmt.Fprintf(&b, " <%.6f>", n.Duration.Seconds())
	return b.String()
}

// InFlightLine is a call still inside the kernel, as strace -p shows one it
// attached during (its return still to come), with how long it has been
// inside and the thread's state:
//
//	1234 cat read(0, 0x7ffc..., 131072) = ? <unfinished: 6.120 s, sleeping> [fd: pipe:[99]]
func InFlightLine(n notable.Event, state string, seconds float64, strlen int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", n.PID)
	if n.TID != n.PID {
		fmt.Fprintf(&b, "/%d", n.TID)
	}
	fmt.Fprintf(&b, " %s %s(", n.Comm, n.Syscall)
	sig, known := signatures[n.Syscall]
	if !known {
		sig = []argKind{argHex, argHex, argHex, argHex, argHex, argHex}
	}
	if (n.Syscall == "open" || n.Syscall == "openat") && !createsFile(n) {
		sig = sig[:len(sig)-1]
	}
	for i, kind := range sig {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(formatArg(kind, n.Args[i], n, strlen))
	}
	fmt.Fprintf(&b, ") = ? <unfinished: %.3f s, %s>", seconds, state)
	if n.FDPath != "" {
		fmt.Fprintf(&b, " [fd: %s]", n.FDPath)
	}
	return b.String()
}

func formatArg(kind argKind, v uint64, n notable.Event, strlen int) string {
	switch kind {
	case argInt, argFD:
		return strconv.FormatInt(int64(int32(v)), 10)
	case argOff:
		if n.Compat {
			return strconv.FormatInt(int64(int32(v)), 10) // a 32-bit task's off_t
		}
		return strconv.FormatInt(int64(v), 10)
	case argUint:
		return strconv.FormatUint(v, 10)
	case argDirFD:
		if int32(v) == unix.AT_FDCWD {
			return "AT_FDCWD"
		}
		return strconv.FormatInt(int64(int32(v)), 10)
	case argPath:
		if n.Path == "" {
			return "0x" + strconv.FormatUint(v, 16)
		}
		p := n.Path
		if strlen > 0 && len(strings.TrimSuffix(p, "...")) > strlen {
			p = p[:strlen] + "..."
		}
		return quote(p)
	case argOpen:
		return formatOpenFlags(v)
	case argMode:
		return fmt.Sprintf("%#03o", v&0o7777) // strace: 0644, and 000 for none
	case argAtFlags:
		return formatAtFlags(v)
	}
	return "0x" + strconv.FormatUint(v, 16)
}

func createsFile(n notable.Event) bool {
	flags := n.Args[1]
	if n.Syscall == "openat" {
		flags = n.Args[2]
	}
	return flags&(unix.O_CREAT|unix.O_TMPFILE&^unix.O_DIRECTORY) != 0 // as strace: O_CREAT or __O_TMPFILE
}

// describeErrno is strerror's text: "Permission denied".
func describeErrno(errno int64) string {
	if errno >= 512 && errno <= 531 {
		return "kernel-internal"
	}
	msg := syscall.Errno(errno).Error()
	r := []rune(msg)
	if len(r) > 0 {
		r[0] = unicode.ToUpper(r[0])
	}
	return string(r)
}
