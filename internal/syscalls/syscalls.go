// Package syscalls names system calls and errno values the way the kernel does.
//
// Syscall names come from the kernel's own syscall tables
// (arch/x86/entry/syscalls/syscall_{64,32}.tbl, arch/arm/tools/syscall.tbl and
// include/uapi/asm-generic/unistd.h) as generated into
// github.com/elastic/go-seccomp-bpf/arch (Linux v6.15), with the few
// corrections and later additions listed in overrides.go. They are the names
// the kernel uses for its syscall tracepoints (sys_enter_<name>): x86_64 202 is
// "futex", i386 422 is "futex_time64", x86_64 17 is "pread64".
//
// Every lookup is a slice index or a map read over tables built once, so the
// hot path (naming a counter's labels) does not allocate.
package syscalls

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
)

// ABI is the syscall table a task used when it made a call.
type ABI uint8

const (
	// Native is the kernel's own table: x86_64 on amd64, aarch64 on arm64.
	// (x32 calls on amd64 arrive as native numbers with bit 30 set; they are
	// not decoded and are named unknown_<n>.)
	Native ABI = 0
	// Compat is the table of 32-bit tasks on a 64-bit kernel: i386 on amd64,
	// arm (EABI) on arm64.
	Compat ABI = 1
)

// numABIs is the number of ABIs a Table knows.
const numABIs = 2

// denseMax bounds the numbers kept in the dense, index-addressed slice of an
// ABI table; known numbers at or above it (the ARM private calls at 0x0f0000+)
// live in a small map instead.
const denseMax = 4096

// unknownPrecomputed is how many unknown_<n> names are built ahead of time, so
// that naming an unknown number below it does not allocate.
const unknownPrecomputed = 1024

// unknownNames[n] is "unknown_<n>".
var unknownNames = numbered("unknown_", unknownPrecomputed)

// numbered returns prefix+"<n>" for n from 0 to count-1, all sliced from one
// string so that building them costs a handful of allocations.
func numbered(prefix string, count int) []string {
	buf := make([]byte, 0, count*(len(prefix)+len(strconv.Itoa(count))))
	ends := make([]int, count)
	for i := range ends {
		buf = append(buf, prefix...)
		buf = strconv.AppendUint(buf, uint64(i), 10)
		ends[i] = len(buf)
	}
	all := string(buf)
	names := make([]string, count)
	start := 0
	for i, end := range ends {
		names[i] = all[start:end]
		start = end
	}
	return names
}

func formatUnknown(nr uint32) string {
	var buf [len("unknown_") + 10]byte
	return string(strconv.AppendUint(append(buf[:0], "unknown_"...), uint64(nr), 10))
}

// unknownName returns "unknown_<nr>", without allocating for nr below
// unknownPrecomputed.
func unknownName(nr uint32) string {
	if nr < uint32(len(unknownNames)) {
		return unknownNames[nr]
	}
	return formatUnknown(nr)
}

// abiTable names the syscalls of one ABI.
type abiTable struct {
	// names is indexed by syscall number; numbers the kernel does not name
	// hold "unknown_<n>". Its length is at least unknownPrecomputed.
	names []string
	// sparse holds known numbers at or above denseMax.
	sparse map[uint32]string
	// numbers maps each known name back to its number.
	numbers map[string]uint32
	// sorted holds every known name, sorted.
	sorted []string
}

// newABITable builds the lookup structures for one ABI from a number→name map.
// If a name appears under several numbers, Number returns the lowest.
func newABITable(m map[int]string) abiTable {
	size := unknownPrecomputed
	for nr := range m {
		if nr >= 0 && nr < denseMax && nr+1 > size {
			size = nr + 1
		}
	}
	t := abiTable{
		names:   make([]string, size),
		numbers: make(map[string]uint32, len(m)),
		sorted:  make([]string, 0, len(m)),
	}
	for i := range t.names {
		t.names[i] = unknownName(uint32(i))
	}
	for nr, name := range m {
		if nr < 0 || name == "" {
			continue
		}
		n := uint32(nr)
		if nr < denseMax {
			t.names[n] = name
		} else {
			if t.sparse == nil {
				t.sparse = make(map[uint32]string)
			}
			t.sparse[n] = name
		}
		if prev, ok := t.numbers[name]; !ok || n < prev {
			if !ok {
				t.sorted = append(t.sorted, name)
			}
			t.numbers[name] = n
		}
	}
	slices.Sort(t.sorted)
	return t
}

// Table names the syscalls of one architecture. A Table is immutable and safe
// for concurrent use.
type Table struct {
	abis [numABIs]abiTable
}

// tables builds each supported architecture's Table once, on first use.
var tables = map[string]func() *Table{
	"amd64": sync.OnceValue(func() *Table {
		return &Table{abis: [numABIs]abiTable{
			Native: newABITable(amd64Native()),
			Compat: newABITable(amd64Compat()),
		}}
	}),
	"arm64": sync.OnceValue(func() *Table {
		return &Table{abis: [numABIs]abiTable{
			Native: newABITable(arm64Native()),
			Compat: newABITable(arm64Compat()),
		}}
	}),
}

// ForArch returns the syscall table of a GOARCH: "amd64" or "arm64".
func ForArch(goarch string) (*Table, error) {
	build, ok := tables[goarch]
	if !ok {
		return nil, fmt.Errorf("syscalls: unsupported architecture %q (supported: amd64, arm64)", goarch)
	}
	return build(), nil
}

var hostTable = sync.OnceValue(func() *Table {
	if t, err := ForArch(runtime.GOARCH); err == nil {
		return t
	}
	// Unsupported architecture: every number is unknown_<n>.
	return &Table{}
})

// Host returns the table of the architecture the program runs on,
// ForArch(runtime.GOARCH). On an unsupported architecture it returns a table
// that names every number unknown_<n> and knows no names.
func Host() *Table {
	return hostTable()
}

// abi returns the ABI's table, or nil for an ABI the Table does not know.
func (t *Table) abi(abi ABI) *abiTable {
	if t == nil || int(abi) >= numABIs {
		return nil
	}
	return &t.abis[abi]
}

// Name returns the kernel's name of syscall nr in the given ABI, such as
// "futex". A number the ABI does not name yields "unknown_<nr>" (decimal);
// the result is never empty. Name does not allocate for known numbers nor for
// unknown numbers below 1024.
func (t *Table) Name(abi ABI, nr uint32) string {
	if a := t.abi(abi); a != nil {
		if uint64(nr) < uint64(len(a.names)) {
			return a.names[nr]
		}
		if name, ok := a.sparse[nr]; ok {
			return name
		}
	}
	return unknownName(nr)
}

// Number returns the number of the syscall the ABI calls name, and whether
// there is one. It knows only the kernel's names, not "unknown_<n>".
func (t *Table) Number(abi ABI, name string) (uint32, bool) {
	a := t.abi(abi)
	if a == nil {
		return 0, false
	}
	nr, ok := a.numbers[name]
	return nr, ok
}

// Names returns every syscall name the ABI knows, sorted. The caller owns the
// returned slice.
func (t *Table) Names(abi ABI) []string {
	a := t.abi(abi)
	if a == nil {
		return nil
	}
	return slices.Clone(a.sorted)
}
