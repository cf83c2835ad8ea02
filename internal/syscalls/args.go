package syscalls

// pathArgs gives the argument (0-based) that is a path, for the calls whose
// failures SREs read paths from; the kernel copies that string into a
// notable event.
var pathArgs = map[string]int{
	"open": 0, "openat": 1, "openat2": 1, "creat": 0,
	"stat": 0, "lstat": 0, "newfstatat": 1, "fstatat64": 1, "statx": 1, "stat64": 0, "lstat64": 0,
	"statfs": 0, "statfs64": 0,
	"access": 0, "faccessat": 1, "faccessat2": 1,
	"execve": 0, "execveat": 1,
	"unlink": 0, "unlinkat": 1, "rmdir": 0,
	"mkdir": 0, "mkdirat": 1, "mknod": 0, "mknodat": 1,
	"rename": 0, "renameat": 1, "renameat2": 1,
	"link": 0, "linkat": 1, "symlink": 1, "symlinkat": 2,
	"chdir": 0, "chroot": 0,
	"readlink": 0, "readlinkat": 1,
	"chmod": 0, "fchmodat": 1, "fchmodat2": 1,
	"chown": 0, "lchown": 0, "fchownat": 1, "chown32": 0, "lchown32": 0,
	"truncate": 0, "truncate64": 0,
	"utimensat": 1, "utimes": 0, "utime": 0, "futimesat": 1,
	"getxattr": 0, "lgetxattr": 0, "setxattr": 0, "lsetxattr": 0, "listxattr": 0, "removexattr": 0,
	"inotify_add_watch": 1, "mount": 1, "umount2": 0, "swapon": 0, "swapoff": 0,
	"open_tree": 1, "fspick": 1, "name_to_handle_at": 1,
}

// fdArgs gives the argument that is a file descriptor, for calls whose
// events the daemon annotates with the fd's path from /proc.
var fdArgs = map[string]int{
	"read": 0, "write": 0, "pread64": 0, "pwrite64": 0, "readv": 0, "writev": 0, "preadv": 0, "pwritev": 0,
	"preadv2": 0, "pwritev2": 0, "fsync": 0, "fdatasync": 0, "ftruncate": 0, "fallocate": 0,
	"fstat": 0, "fstatfs": 0, "fchmod": 0, "fchown": 0, "flock": 0, "fcntl": 0, "ioctl": 0,
	"lseek": 0, "getdents64": 0, "sendfile": 1, "splice": 0, "sync_file_range": 0,
	"sendto": 0, "recvfrom": 0, "sendmsg": 0, "recvmsg": 0, "connect": 0, "accept": 0, "accept4": 0,
	"bind": 0, "listen": 0, "shutdown": 0, "getsockopt": 0, "setsockopt": 0, "close": 0, "dup": 0,
	"mmap": 4, "fgetxattr": 0, "fsetxattr": 0, "syncfs": 0, "fadvise64": 0, "copy_file_range": 0,
}

// PathArg returns the index of a syscall's path argument.
func PathArg(name string) (int, bool) {
	i, ok := pathArgs[name]
	return i, ok
}

// FDArg returns the index of a syscall's file-descriptor argument.
func FDArg(name string) (int, bool) {
	i, ok := fdArgs[name]
	return i, ok
}
