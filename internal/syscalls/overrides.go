package syscalls

import (
	"maps"

	"github.com/elastic/go-seccomp-bpf/arch"
)

// The tables of github.com/elastic/go-seccomp-bpf/arch v1.6.0 are generated
// from Linux v6.15: x86_64 and i386 from arch/x86/entry/syscalls/syscall_*.tbl,
// arm from arch/arm/tools/syscall.tbl (EABI rows plus the ARM private calls at
// 0x0f0000+), and aarch64 from include/uapi/asm-generic/unistd.h. The x86 and
// arm names are the kernel's verbatim. The functions below copy those maps and
// apply the few differences from what the kernel names today; the library's
// maps themselves are never modified.

// newerSyscalls were added to the generic numbering, shared by every table
// here, after v6.15 (see scripts/syscall.tbl, syscall_{32,64}.tbl and
// arch/arm/tools/syscall.tbl upstream).
var newerSyscalls = map[int]string{
	468: "file_getattr",
	469: "file_setattr",
	470: "listns",
	471: "rseq_slice_yield",
}

// withNewer returns a copy of base with newerSyscalls added.
func withNewer(base map[int]string) map[int]string {
	m := maps.Clone(base)
	maps.Copy(m, newerSyscalls)
	return m
}

// amd64Native is the x86_64 table (the "common" and "64" rows of
// syscall_64.tbl; x32-only rows excluded).
func amd64Native() map[int]string {
	m := withNewer(arch.X86_64.SyscallNumbers)
	// uprobe was added to syscall_64.tbl after v6.15 (x86_64 only).
	m[336] = "uprobe"
	return m
}

// amd64Compat is the i386 table (syscall_32.tbl).
func amd64Compat() map[int]string {
	return withNewer(arch.I386.SyscallNumbers)
}

// arm64Native is the aarch64 table. The library reads it from
// asm-generic/unistd.h, which serves 32- and 64-bit ABIs alike, so three
// fixes are needed to match the kernel's 64-bit table (scripts/syscall.tbl,
// ABIs common/64/renameat/rlimit/memfd_secret, and the 64-bit branch of
// asm-generic/unistd.h).
func arm64Native() map[int]string {
	m := withNewer(arch.AARCH64.SyscallNumbers)
	// 79 is __NR3264_fstatat; the generator strips the 3264 prefix and
	// yields "fstatat", which no kernel table uses. For 64-bit ABIs the
	// kernel names it newfstatat (__NR_newfstatat, sys_newfstatat,
	// tracepoint sys_enter_newfstatat), as x86_64 262 is.
	m[79] = "newfstatat"
	// 244 is __NR_arch_specific_syscall, the first number of the range
	// 244–259 reserved for architecture-private calls; it is a marker, not
	// a syscall, and arm64 defines no calls in that range.
	delete(m, 244)
	// 403–423 are the *_time64 calls (clock_gettime64 … futex_time64) that
	// exist only for 32-bit ABIs ("32" rows of scripts/syscall.tbl, guarded
	// by __BITS_PER_LONG == 32 in unistd.h); aarch64 tasks get ENOSYS there.
	for nr := 403; nr <= 423; nr++ {
		delete(m, nr)
	}
	return m
}

// arm64Compat is the arm (EABI) table, used by 32-bit tasks on arm64.
func arm64Compat() map[int]string {
	return withNewer(arch.ARM.SyscallNumbers)
}
