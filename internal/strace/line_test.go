package strace

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/notable"
)

// negative is v in two's complement, as a 64-bit register holds it.
func negative(v int64) uint64 { return uint64(v) }

// atFDCWD is AT_FDCWD (-100) as the kernel hands it over.
var atFDCWD = negative(unix.AT_FDCWD)

// The expected lines follow strace 6.1's output for the same calls (strace
// -T -e trace=openat,newfstatat,lseek …), prefixed with pid and name.
func TestLineLikeStrace(t *testing.T) {
	tests := []struct {
		name   string
		ev     notable.Event
		strlen int
		want   string
	}{
		{
			name: "openat EACCES without mode",
			ev: notable.Event{PID: 1234, Comm: "nginx", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x7ffc0000, unix.O_RDONLY, 0o777},
				Ret: -int64(unix.EACCES), Errno: "EACCES", Path: "/etc/x.conf", Duration: 12 * time.Microsecond},
			strlen: 256,
			want:   `1234 nginx openat(AT_FDCWD, "/etc/x.conf", O_RDONLY) = -1 EACCES (Permission denied) <0.000012>`,
		},
		{
			name: "openat O_CREAT shows the mode",
			ev: notable.Event{PID: 1, Comm: "app", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x1000, unix.O_CREAT | unix.O_WRONLY | unix.O_CLOEXEC, 0o644},
				Ret: -int64(unix.EROFS), Errno: "EROFS", Path: "/tmp/new", Duration: 3 * time.Microsecond},
			want: `1 app openat(AT_FDCWD, "/tmp/new", O_WRONLY|O_CREAT|O_CLOEXEC, 0644) = -1 EROFS (Read-only file system) <0.000003>`,
		},
		{
			name: "openat mode 0 as strace prints it",
			ev: notable.Event{PID: 1, Comm: "app", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x1000, unix.O_CREAT | unix.O_WRONLY | unix.O_CLOEXEC, 0},
				Ret: 5, Path: "/tmp/xx", Duration: time.Second},
			want: `1 app openat(AT_FDCWD, "/tmp/xx", O_WRONLY|O_CREAT|O_CLOEXEC, 000) = 5 <1.000000>`,
		},
		{
			name: "openat O_TMPFILE is named alone and shows the mode",
			ev: notable.Event{PID: 1, Comm: "app", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x1000, unix.O_TMPFILE | unix.O_RDWR | unix.O_CLOEXEC, 0o600},
				Ret: -int64(unix.EOPNOTSUPP), Errno: "EOPNOTSUPP", Path: "/tmp"},
			want: `1 app openat(AT_FDCWD, "/tmp", O_RDWR|O_CLOEXEC|O_TMPFILE, 0600) = -1 EOPNOTSUPP (Operation not supported) <0.000000>`,
		},
		{
			name: "openat __O_TMPFILE without O_DIRECTORY shows the mode too",
			ev: notable.Event{PID: 1, Comm: "python3", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x1000, unix.O_TMPFILE&^unix.O_DIRECTORY | unix.O_RDWR | unix.O_CLOEXEC, 0},
				Ret: -int64(unix.EINVAL), Errno: "EINVAL", Path: "/tmp"},
			want: `1 python3 openat(AT_FDCWD, "/tmp", O_RDWR|O_CLOEXEC|__O_TMPFILE, 000) = -1 EINVAL (Invalid argument) <0.000000>`,
		},
		{
			name: "openat with a directory fd and strace's flag order",
			ev: notable.Event{PID: 9, Comm: "ls", Syscall: "openat", Args: [6]uint64{3, 0x1000, unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_DIRECTORY},
				Ret: -int64(unix.ENOTDIR), Errno: "ENOTDIR", Path: "sub"},
			want: `9 ls openat(3, "sub", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY) = -1 ENOTDIR (Not a directory) <0.000000>`,
		},
		{
			name: "openat O_SYNC in strace's place",
			ev: notable.Event{PID: 9, Comm: "db", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x1000, unix.O_WRONLY | unix.O_SYNC | unix.O_NONBLOCK | unix.O_DIRECT | unix.O_CLOEXEC},
				Ret: -int64(unix.EINVAL), Errno: "EINVAL", Path: "/data/wal"},
			want: `9 db openat(AT_FDCWD, "/data/wal", O_WRONLY|O_NONBLOCK|O_SYNC|O_DIRECT|O_CLOEXEC) = -1 EINVAL (Invalid argument) <0.000000>`,
		},
		{
			name: "openat O_LARGEFILE from a 32-bit task",
			ev: notable.Event{PID: 9, Comm: "app32", Syscall: "openat", Compat: true, Args: [6]uint64{uint64(uint32(0xffffff9c)), 0x1000, 0x8000 | unix.O_RDONLY},
				Ret: -int64(unix.ENOENT), Errno: "ENOENT", Path: "/x"},
			want: `9 app32 openat(AT_FDCWD, "/x", O_RDONLY|O_LARGEFILE) = -1 ENOENT (No such file or directory) <0.000000>`,
		},
		{
			name: "openat unknown flag bits in hex",
			ev: notable.Event{PID: 9, Comm: "app", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x1000, unix.O_RDWR | 0x80000000},
				Ret: -int64(unix.EINVAL), Errno: "EINVAL", Path: "/x"},
			want: `9 app openat(AT_FDCWD, "/x", O_RDWR|0x80000000) = -1 EINVAL (Invalid argument) <0.000000>`,
		},
		{
			name: "open with O_CREAT",
			ev: notable.Event{PID: 2, Comm: "sh", Syscall: "open", Args: [6]uint64{0x1000, unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC, 0o666},
				Ret: -int64(unix.EACCES), Errno: "EACCES", Path: "/etc/motd"},
			want: `2 sh open("/etc/motd", O_WRONLY|O_CREAT|O_TRUNC, 0666) = -1 EACCES (Permission denied) <0.000000>`,
		},
		{
			name: "open without O_CREAT hides the mode",
			ev: notable.Event{PID: 2, Comm: "sh", Syscall: "open", Args: [6]uint64{0x1000, unix.O_RDONLY, 0o666},
				Ret: -int64(unix.ENOENT), Errno: "ENOENT", Path: "/etc/motd"},
			want: `2 sh open("/etc/motd", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000000>`,
		},
		{
			name: "path the kernel cut",
			ev: notable.Event{PID: 5, Comm: "java", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x1000, unix.O_RDONLY},
				Ret: -int64(unix.ENOENT), Errno: "ENOENT", Path: "abc..."},
			strlen: 256,
			want:   `5 java openat(AT_FDCWD, "abc"..., O_RDONLY) = -1 ENOENT (No such file or directory) <0.000000>`,
		},
		{
			name: "path longer than -s",
			ev: notable.Event{PID: 5, Comm: "java", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x1000, unix.O_RDONLY},
				Ret: -int64(unix.ENOENT), Errno: "ENOENT", Path: "/etc/nginx/nginx.conf"},
			strlen: 10,
			want:   `5 java openat(AT_FDCWD, "/etc/nginx"..., O_RDONLY) = -1 ENOENT (No such file or directory) <0.000000>`,
		},
		{
			name: "path of exactly -s bytes is whole",
			ev: notable.Event{PID: 5, Comm: "java", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x1000, unix.O_RDONLY},
				Ret: -int64(unix.ENOENT), Errno: "ENOENT", Path: "/etc/nginx"},
			strlen: 10,
			want:   `5 java openat(AT_FDCWD, "/etc/nginx", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000000>`,
		},
		{
			name: "cut path cut again by a shorter -s",
			ev: notable.Event{PID: 5, Comm: "java", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x1000, unix.O_RDONLY},
				Ret: -int64(unix.ENOENT), Errno: "ENOENT", Path: "/var/lib/abc..."},
			strlen: 4,
			want:   `5 java openat(AT_FDCWD, "/var"..., O_RDONLY) = -1 ENOENT (No such file or directory) <0.000000>`,
		},
		{
			name: "no -s limit",
			ev: notable.Event{PID: 5, Comm: "java", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x1000, unix.O_RDONLY},
				Ret: -int64(unix.ENOENT), Errno: "ENOENT", Path: "/etc/nginx/nginx.conf"},
			want: `5 java openat(AT_FDCWD, "/etc/nginx/nginx.conf", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000000>`,
		},
		{
			name: "path quoted with escapes",
			ev: notable.Event{PID: 5, Comm: "sh", Syscall: "unlink", Args: [6]uint64{0x1000},
				Ret: -int64(unix.ENOENT), Errno: "ENOENT", Path: "a\"b\\c\td"},
			want: `5 sh unlink("a\"b\\c\td") = -1 ENOENT (No such file or directory) <0.000000>`,
		},
		{
			name: "path not captured shows the pointer",
			ev: notable.Event{PID: 5, Comm: "java", Syscall: "openat", Args: [6]uint64{atFDCWD, 0x7ffc1d47ee40, unix.O_RDONLY},
				Ret: -int64(unix.EFAULT), Errno: "EFAULT"},
			want: `5 java openat(AT_FDCWD, 0x7ffc1d47ee40, O_RDONLY) = -1 EFAULT (Bad address) <0.000000>`,
		},
		{
			name: "slow successful call",
			ev:   notable.Event{PID: 77, Comm: "postgres", Syscall: "fsync", Args: [6]uint64{12}, Ret: 0, Duration: 1500 * time.Millisecond},
			want: `77 postgres fsync(12) = 0 <1.500000>`,
		},
		{
			name: "fd path annotation",
			ev: notable.Event{PID: 77, Comm: "app", Syscall: "write", Args: [6]uint64{7, 0x5600, 512},
				Ret: -int64(unix.ENOSPC), Errno: "ENOSPC", FDPath: "/var/log/app.log", Duration: 3 * time.Microsecond},
			want: `77 app write(7, 0x5600, 512) = -1 ENOSPC (No space left on device) [fd: /var/log/app.log] <0.000003>`,
		},
		{
			name: "unknown syscall shows six hex arguments",
			ev: notable.Event{PID: 3, Comm: "x", Syscall: "unknown_999", Args: [6]uint64{1, 2, 3, 0xff, 0, negative(-1)},
				Ret: -int64(unix.ENOSYS), Errno: "ENOSYS"},
			want: `3 x unknown_999(0x1, 0x2, 0x3, 0xff, 0x0, 0xffffffffffffffff) = -1 ENOSYS (Function not implemented) <0.000000>`,
		},
		{
			name: "newfstatat with AT_SYMLINK_NOFOLLOW",
			ev: notable.Event{PID: 4, Comm: "python3", Syscall: "newfstatat", Args: [6]uint64{atFDCWD, 0x1000, 0x7ffc1d47ee40, unix.AT_SYMLINK_NOFOLLOW},
				Ret: -int64(unix.ENOENT), Errno: "ENOENT", Path: "/nonexistent/abcdefghijklmnop", Duration: 7 * time.Microsecond},
			want: `4 python3 newfstatat(AT_FDCWD, "/nonexistent/abcdefghijklmnop", 0x7ffc1d47ee40, AT_SYMLINK_NOFOLLOW) = -1 ENOENT (No such file or directory) <0.000007>`,
		},
		{
			name: "unlinkat with AT_REMOVEDIR and unknown AT bits",
			ev: notable.Event{PID: 4, Comm: "rm", Syscall: "unlinkat", Args: [6]uint64{5, 0x1000, unix.AT_REMOVEDIR | 0x10000000},
				Ret: -int64(unix.ENOTEMPTY), Errno: "ENOTEMPTY", Path: "d"},
			want: `4 rm unlinkat(5, "d", AT_REMOVEDIR|0x10000000) = -1 ENOTEMPTY (Directory not empty) <0.000000>`,
		},
		{
			name: "no AT flags",
			ev: notable.Event{PID: 4, Comm: "rm", Syscall: "unlinkat", Args: [6]uint64{atFDCWD, 0x1000, 0},
				Ret: -int64(unix.EISDIR), Errno: "EISDIR", Path: "d"},
			want: `4 rm unlinkat(AT_FDCWD, "d", 0) = -1 EISDIR (Is a directory) <0.000000>`,
		},
		{
			name: "kernel-internal errno",
			ev: notable.Event{PID: 8, Comm: "nginx", Syscall: "epoll_wait", Args: [6]uint64{4, 0x7ffd0000, 64, negative(-1)},
				Ret: -512, Errno: "ERESTARTSYS", Duration: 2 * time.Second},
			want: `8 nginx epoll_wait(4, 0x7ffd0000, 64, -1) = -1 ERESTARTSYS (kernel-internal) <2.000000>`,
		},
		{
			name: "int arguments use only the low 32 bits",
			ev: notable.Event{PID: 8, Comm: "sh", Syscall: "kill", Args: [6]uint64{0xffffffff, 0x10000000f},
				Ret: -int64(unix.ESRCH), Errno: "ESRCH"},
			want: `8 sh kill(-1, 15) = -1 ESRCH (No such process) <0.000000>`,
		},
		{
			name: "64-bit offsets are not cut to 32 bits",
			ev: notable.Event{PID: 8, Comm: "db", Syscall: "pread64", Args: [6]uint64{3, 0x7f00, 4096, 5368709120},
				Ret: -int64(unix.EIO), Errno: "EIO"},
			want: `8 db pread64(3, 0x7f00, 4096, 5368709120) = -1 EIO (Input/output error) <0.000000>`,
		},
		{
			name: "lseek to a 5 GiB offset",
			ev:   notable.Event{PID: 8, Comm: "db", Syscall: "lseek", Args: [6]uint64{3, 5368709120, 0}, Ret: 5368709120, Duration: time.Second},
			want: `8 db lseek(3, 5368709120, 0) = 5368709120 <1.000000>`,
		},
		{
			name: "negative 64-bit offset",
			ev: notable.Event{PID: 8, Comm: "db", Syscall: "lseek", Args: [6]uint64{3, negative(-5368709120), 1},
				Ret: -int64(unix.EINVAL), Errno: "EINVAL"},
			want: `8 db lseek(3, -5368709120, 1) = -1 EINVAL (Invalid argument) <0.000000>`,
		},
		{
			name: "a 32-bit task's off_t",
			ev: notable.Event{PID: 8, Comm: "app32", Compat: true, Syscall: "lseek", Args: [6]uint64{3, 0xffffffff, 1},
				Ret: -int64(unix.EINVAL), Errno: "EINVAL"},
			want: `8 app32 lseek(3, -1, 1) = -1 EINVAL (Invalid argument) <0.000000>`,
		},
		{
			name: "sub-microsecond duration rounds",
			ev:   notable.Event{PID: 1, Comm: "a", Syscall: "close", Args: [6]uint64{negative(-1)}, Ret: -int64(unix.EBADF), Errno: "EBADF", Duration: 1600 * time.Nanosecond},
			want: `1 a close(-1) = -1 EBADF (Bad file descriptor) <0.000002>`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Line(tt.ev, tt.strlen); got != tt.want {
				t.Errorf("Line:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestFormatOpenFlags(t *testing.T) {
	tests := []struct {
		flags uint64
		want  string
	}{
		{unix.O_RDONLY, "O_RDONLY"},
		{unix.O_WRONLY, "O_WRONLY"},
		{unix.O_RDWR, "O_RDWR"},
		{unix.O_ACCMODE | unix.O_CLOEXEC, "O_ACCMODE|O_CLOEXEC"},
		{unix.O_DSYNC, "O_RDONLY|O_DSYNC"},
		{unix.O_SYNC, "O_RDONLY|O_SYNC"},
		{unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, "O_RDONLY|O_CLOEXEC|O_PATH|O_DIRECTORY"},
		{unix.O_TMPFILE&^unix.O_DIRECTORY | unix.O_RDWR, "O_RDWR|__O_TMPFILE"},
		{unix.O_ASYNC | unix.O_DIRECTORY, "O_RDONLY|O_DIRECTORY|FASYNC"},
	}
	for _, tt := range tests {
		if got := formatOpenFlags(tt.flags); got != tt.want {
			t.Errorf("formatOpenFlags(%#x) = %s, want %s", tt.flags, got, tt.want)
		}
	}
}

func TestDescribeErrno(t *testing.T) {
	tests := []struct {
		errno int64
		want  string
	}{
		{int64(unix.EACCES), "Permission denied"},
		{int64(unix.EAGAIN), "Resource temporarily unavailable"},
		{511, "Errno 511"},
		{512, "kernel-internal"},
		{531, "kernel-internal"},
		{532, "Errno 532"},
	}
	for _, tt := range tests {
		if got := describeErrno(tt.errno); got != tt.want {
			t.Errorf("describeErrno(%d) = %q, want %q", tt.errno, got, tt.want)
		}
	}
}
