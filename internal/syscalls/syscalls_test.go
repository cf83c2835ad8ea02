package syscalls

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func mustTable(t testing.TB, goarch string) *Table {
	t.Helper()
	tab, err := ForArch(goarch)
	if err != nil {
		t.Fatalf("ForArch(%q): %v", goarch, err)
	}
	return tab
}

func TestName(t *testing.T) {
	tests := []struct {
		arch string
		abi  ABI
		nr   uint32
		want string
	}{
		// x86_64.
		{"amd64", Native, 0, "read"},
		{"amd64", Native, 1, "write"},
		{"amd64", Native, 2, "open"},
		{"amd64", Native, 4, "stat"},
		{"amd64", Native, 5, "fstat"},
		{"amd64", Native, 17, "pread64"},
		{"amd64", Native, 18, "pwrite64"},
		{"amd64", Native, 39, "getpid"},
		{"amd64", Native, 40, "sendfile"},
		{"amd64", Native, 59, "execve"},
		{"amd64", Native, 202, "futex"},
		{"amd64", Native, 221, "fadvise64"},
		{"amd64", Native, 231, "exit_group"},
		{"amd64", Native, 257, "openat"},
		{"amd64", Native, 262, "newfstatat"},
		{"amd64", Native, 335, "uretprobe"},
		{"amd64", Native, 336, "uprobe"},
		{"amd64", Native, 435, "clone3"},
		{"amd64", Native, 467, "open_tree_attr"},
		{"amd64", Native, 468, "file_getattr"},
		{"amd64", Native, 470, "listns"},
		{"amd64", Native, 471, "rseq_slice_yield"},
		// i386 on amd64.
		{"amd64", Compat, 3, "read"},
		{"amd64", Compat, 4, "write"},
		{"amd64", Compat, 5, "open"},
		{"amd64", Compat, 11, "execve"},
		{"amd64", Compat, 140, "_llseek"},
		{"amd64", Compat, 180, "pread64"},
		{"amd64", Compat, 192, "mmap2"},
		{"amd64", Compat, 240, "futex"},
		{"amd64", Compat, 295, "openat"},
		{"amd64", Compat, 300, "fstatat64"},
		{"amd64", Compat, 422, "futex_time64"},
		{"amd64", Compat, 469, "file_setattr"},
		// aarch64.
		{"arm64", Native, 56, "openat"},
		{"arm64", Native, 63, "read"},
		{"arm64", Native, 64, "write"},
		{"arm64", Native, 67, "pread64"},
		{"arm64", Native, 79, "newfstatat"},
		{"arm64", Native, 80, "fstat"},
		{"arm64", Native, 98, "futex"},
		{"arm64", Native, 221, "execve"},
		{"arm64", Native, 222, "mmap"},
		{"arm64", Native, 223, "fadvise64"},
		{"arm64", Native, 435, "clone3"},
		{"arm64", Native, 470, "listns"},
		// Not syscalls on aarch64.
		{"arm64", Native, 244, "unknown_244"},
		{"arm64", Native, 403, "unknown_403"},
		{"arm64", Native, 422, "unknown_422"},
		// arm (EABI) on arm64.
		{"arm64", Compat, 3, "read"},
		{"arm64", Compat, 11, "execve"},
		{"arm64", Compat, 240, "futex"},
		{"arm64", Compat, 322, "openat"},
		{"arm64", Compat, 327, "fstatat64"},
		{"arm64", Compat, 422, "futex_time64"},
		{"arm64", Compat, 0x0f0002, "cacheflush"},
		{"arm64", Compat, 0x0f0005, "set_tls"},
		{"arm64", Compat, 0x0f0007, "unknown_983047"},
		// Unknown numbers.
		{"amd64", Native, 99999, "unknown_99999"},
		{"amd64", Native, 1000, "unknown_1000"},
		{"amd64", Native, 1023, "unknown_1023"},
		{"amd64", Native, 1024, "unknown_1024"},
		{"amd64", Native, 4096, "unknown_4096"},
		{"amd64", Native, 0x40000000, "unknown_1073741824"},
		{"amd64", Native, 1<<32 - 1, "unknown_4294967295"},
		{"amd64", Compat, 99999, "unknown_99999"},
		{"amd64", ABI(2), 0, "unknown_0"},
		{"arm64", ABI(255), 63, "unknown_63"},
	}
	for _, tt := range tests {
		tab := mustTable(t, tt.arch)
		if got := tab.Name(tt.abi, tt.nr); got != tt.want {
			t.Errorf("%s ABI %d: Name(%d) = %q, want %q", tt.arch, tt.abi, tt.nr, got, tt.want)
		}
	}
}

func TestNumber(t *testing.T) {
	tests := []struct {
		arch   string
		abi    ABI
		name   string
		want   uint32
		wantOK bool
	}{
		{"amd64", Native, "futex", 202, true},
		{"amd64", Compat, "futex", 240, true},
		{"amd64", Compat, "futex_time64", 422, true},
		{"arm64", Native, "newfstatat", 79, true},
		{"arm64", Compat, "set_tls", 0x0f0005, true},
		{"amd64", Native, "futex_time64", 0, false},
		{"arm64", Native, "fstatat", 0, false},
		{"arm64", Native, "open", 0, false},
		{"amd64", Native, "unknown_5", 0, false},
		{"amd64", Native, "", 0, false},
		{"amd64", ABI(2), "read", 0, false},
	}
	for _, tt := range tests {
		tab := mustTable(t, tt.arch)
		got, ok := tab.Number(tt.abi, tt.name)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s ABI %d: Number(%q) = %d, %v; want %d, %v", tt.arch, tt.abi, tt.name, got, ok, tt.want, tt.wantOK)
		}
	}
}

// TestRoundTrip checks every table both ways: each known number's name maps
// back to that number (so no name is used twice), and each listed name maps to
// a number that carries it.
func TestRoundTrip(t *testing.T) {
	for _, goarch := range []string{"amd64", "arm64"} {
		tab := mustTable(t, goarch)
		for _, abi := range []ABI{Native, Compat} {
			a := &tab.abis[abi]
			known := 0
			check := func(nr uint32) {
				name := tab.Name(abi, nr)
				if strings.HasPrefix(name, "unknown_") {
					return
				}
				known++
				got, ok := tab.Number(abi, name)
				if !ok || got != nr {
					t.Errorf("%s ABI %d: Name(%d) = %q but Number(%q) = %d, %v", goarch, abi, nr, name, name, got, ok)
				}
			}
			for nr := range a.names {
				check(uint32(nr))
			}
			for nr := range a.sparse {
				check(nr)
			}

			names := tab.Names(abi)
			if len(names) != known {
				t.Errorf("%s ABI %d: Names has %d entries, tables name %d numbers", goarch, abi, len(names), known)
			}
			if len(names) < 300 {
				t.Errorf("%s ABI %d: only %d names", goarch, abi, len(names))
			}
			if !slices.IsSorted(names) {
				t.Errorf("%s ABI %d: Names not sorted", goarch, abi)
			}
			for _, name := range names {
				if name == "" || strings.HasPrefix(name, "unknown_") {
					t.Errorf("%s ABI %d: Names contains %q", goarch, abi, name)
					continue
				}
				nr, ok := tab.Number(abi, name)
				if !ok {
					t.Errorf("%s ABI %d: Number(%q) not found", goarch, abi, name)
					continue
				}
				if got := tab.Name(abi, nr); got != name {
					t.Errorf("%s ABI %d: Number(%q) = %d but Name(%d) = %q", goarch, abi, name, nr, nr, got)
				}
			}
		}
	}
}

func TestNamesIsACopy(t *testing.T) {
	tab := mustTable(t, "amd64")
	names := tab.Names(Native)
	names[0] = "clobbered"
	if got := tab.Names(Native)[0]; got == "clobbered" {
		t.Fatal("Names returned the table's own slice")
	}
}

func TestForArch(t *testing.T) {
	a, err := ForArch("amd64")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ForArch("amd64")
	if a != b {
		t.Error("ForArch(amd64) built the table twice")
	}
	for _, goarch := range []string{"riscv64", "386", "arm", "x86_64", "aarch64", ""} {
		tab, err := ForArch(goarch)
		if err == nil || tab != nil {
			t.Errorf("ForArch(%q) = %v, %v; want an error", goarch, tab, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "amd64") || !strings.Contains(msg, "arm64") {
			t.Errorf("ForArch(%q) error %q does not name the supported architectures", goarch, msg)
		}
	}
}

func TestHost(t *testing.T) {
	h := Host()
	if h == nil {
		t.Fatal("Host() = nil")
	}
	if got := h.Name(Native, 99999); got != "unknown_99999" {
		t.Errorf("Host().Name(Native, 99999) = %q", got)
	}
	if Host() != h {
		t.Error("Host() returned different tables")
	}
}

// TestUnsupportedTable checks the table Host returns on an architecture
// ForArch does not support.
func TestUnsupportedTable(t *testing.T) {
	tab := &Table{}
	for _, abi := range []ABI{Native, Compat} {
		for _, nr := range []uint32{0, 1, 202, 1000, 99999} {
			if got, want := tab.Name(abi, nr), "unknown_"+strconv.Itoa(int(nr)); got != want {
				t.Errorf("Name(%d, %d) = %q, want %q", abi, nr, got, want)
			}
		}
		if _, ok := tab.Number(abi, "read"); ok {
			t.Errorf("Number(%d, read) found", abi)
		}
		if names := tab.Names(abi); len(names) != 0 {
			t.Errorf("Names(%d) = %v", abi, names)
		}
	}
	var nilTable *Table
	if got := nilTable.Name(Native, 3); got != "unknown_3" {
		t.Errorf("nil Table Name = %q", got)
	}
}

func TestErrnoName(t *testing.T) {
	tests := []struct {
		errno uint32
		want  string
	}{
		{0, "errno_0"},
		{1, "EPERM"},
		{2, "ENOENT"},
		{4, "EINTR"},
		{11, "EAGAIN"},
		{13, "EACCES"},
		{22, "EINVAL"},
		{28, "ENOSPC"},
		{35, "EDEADLK"},
		{38, "ENOSYS"},
		{41, "errno_41"},
		{74, "EBADMSG"},
		{95, "EOPNOTSUPP"},
		{110, "ETIMEDOUT"},
		{117, "EUCLEAN"},
		{133, "EHWPOISON"},
		{512, "ERESTARTSYS"},
		{513, "ERESTARTNOINTR"},
		{514, "ERESTARTNOHAND"},
		{515, "ENOIOCTLCMD"},
		{516, "ERESTART_RESTARTBLOCK"},
		{517, "EPROBE_DEFER"},
		{518, "EOPENSTALE"},
		{519, "ENOPARAM"},
		{520, "errno_520"},
		{521, "EBADHANDLE"},
		{524, "ENOTSUPP"},
		{530, "ERECALLCONFLICT"},
		{531, "ENOGRACE"},
		{532, "errno_532"},
		{4095, "errno_4095"},
		{4096, "errno_4096"},
		{1<<32 - 1, "errno_4294967295"},
	}
	for _, tt := range tests {
		if got := ErrnoName(tt.errno); got != tt.want {
			t.Errorf("ErrnoName(%d) = %q, want %q", tt.errno, got, tt.want)
		}
	}
}

// TestErrnoNamesUnique checks that no two values below 4096 share a name.
func TestErrnoNamesUnique(t *testing.T) {
	seen := make(map[string]uint32)
	for i := uint32(0); i < errnoPrecomputed; i++ {
		name := ErrnoName(i)
		if prev, ok := seen[name]; ok {
			t.Errorf("ErrnoName(%d) = ErrnoName(%d) = %q", prev, i, name)
		}
		seen[name] = i
	}
}

func TestNoAllocs(t *testing.T) {
	amd64 := mustTable(t, "amd64")
	arm64 := mustTable(t, "arm64")
	var sink string
	cases := map[string]func(){
		"Name known":          func() { sink = amd64.Name(Native, 202) },
		"Name compat":         func() { sink = amd64.Name(Compat, 422) },
		"Name sparse":         func() { sink = arm64.Name(Compat, 0x0f0005) },
		"Name unknown 1000":   func() { sink = amd64.Name(Native, 1000) },
		"Name unknown 500":    func() { sink = arm64.Name(Native, 500) },
		"Name bad ABI":        func() { sink = amd64.Name(ABI(9), 7) },
		"ErrnoName ENOENT":    func() { sink = ErrnoName(2) },
		"ErrnoName internal":  func() { sink = ErrnoName(512) },
		"ErrnoName unknown":   func() { sink = ErrnoName(520) },
		"ErrnoName zero":      func() { sink = ErrnoName(0) },
		"ErrnoName 4095":      func() { sink = ErrnoName(4095) },
		"Number":              func() { _, _ = amd64.Number(Native, "futex") },
		"Host().Name":         func() { sink = Host().Name(Native, 1) },
		"unsupported Name":    func() { sink = (&Table{}).Name(Native, 1) },
		"Name unknown arm64":  func() { sink = arm64.Name(Native, 422) },
		"ErrnoName EAGAIN":    func() { sink = ErrnoName(11) },
		"Name arm64 compat":   func() { sink = arm64.Name(Compat, 240) },
		"Name amd64 unknown0": func() { sink = amd64.Name(Native, 999) },
	}
	for name, f := range cases {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
	_ = sink
}

var benchSink string

func BenchmarkName(b *testing.B) {
	tab := mustTable(b, "amd64")
	for _, bc := range []struct {
		name string
		nrs  []uint32
	}{
		{"known", []uint32{0, 1, 202, 262, 435}},
		{"unknown_below_1024", []uint32{500, 1000}},
		{"unknown_large", []uint32{99999}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				benchSink = tab.Name(Native, bc.nrs[i%len(bc.nrs)])
			}
		})
	}
}

func BenchmarkErrnoName(b *testing.B) {
	errnos := []uint32{2, 11, 13, 28, 512, 520}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		benchSink = ErrnoName(errnos[i%len(errnos)])
	}
}

func TestErrnoNumberReversesErrnoName(t *testing.T) {
	for _, tc := range []struct {
		name  string
		errno uint32
	}{{"EACCES", 13}, {"ENOSPC", 28}, {"EAGAIN", 11}, {"EWOULDBLOCK", 11}, {"ERESTARTSYS", 512}, {"ENOGRACE", 531}} {
		got, ok := ErrnoNumber(tc.name)
		if !ok || got != tc.errno {
			t.Errorf("ErrnoNumber(%q) = %d, %v; want %d", tc.name, got, ok, tc.errno)
		}
	}
	for _, bad := range []string{"EFOO", "errno_520", "", "eacces"} {
		if n, ok := ErrnoNumber(bad); ok {
			t.Errorf("ErrnoNumber(%q) = %d, want unknown", bad, n)
		}
	}
	for n := uint32(1); n < 4096; n++ {
		name := ErrnoName(n)
		if got, ok := ErrnoNumber(name); ok && got != n {
			t.Errorf("ErrnoNumber(ErrnoName(%d)=%q) = %d", n, name, got)
		}
	}
}

// bpf/headers/byte_calls.h is what ByteCallsHeader makes now: the kernel
// sums bytes for exactly the syscalls the daemon exports them for.
func TestByteCallsHeaderIsCurrent(t *testing.T) {
	want, err := ByteCallsHeader()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../bpf/headers/byte_calls.h")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Error("bpf/headers/byte_calls.h is stale: run make generate")
	}
	for _, name := range ByteCalls {
		if _, ok := forArch(t, "amd64").Number(Native, name); !ok && name != "send" && name != "recv" && name != "sendfile64" {
			t.Errorf("%s: no x86_64 number", name)
		}
	}
	if !MovesBytes("pwritev2") || MovesBytes("sendmmsg") || MovesBytes("openat") {
		t.Error("MovesBytes: pwritev2 moves bytes; sendmmsg (messages) and openat do not")
	}
}

func forArch(t *testing.T, goarch string) *Table {
	t.Helper()
	tb, err := ForArch(goarch)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}
