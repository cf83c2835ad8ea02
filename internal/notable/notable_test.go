package notable

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/syscalls"
)

// rawNotable builds a raw ring-buffer sample from loader.NotableEvent, the
// bpf2go mirror of struct notable_event, in native byte order.
func rawNotable(t testing.TB, ev loader.NotableEvent) []byte {
	t.Helper()
	raw, err := binary.Append(nil, binary.NativeEndian, &ev)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// withPath stores path as bpf_probe_read_user_str does: cut to pathMax-1 bytes,
// NUL-terminated, PathLen counting the NUL.
func withPath(ev loader.NotableEvent, path string, pathMax int) loader.NotableEvent {
	n := min(len(path), pathMax-1)
	for i := range n {
		ev.Path[i] = int8(path[i])
	}
	ev.Path[n] = 0
	ev.PathLen = int32(n + 1)
	return ev
}

func commOf(s string) [16]int8 {
	var c [16]int8
	for i := range min(len(s), len(c)-1) {
		c[i] = int8(s[i])
	}
	return c
}

func amd64Table(t testing.TB) *syscalls.Table {
	t.Helper()
	table, err := syscalls.ForArch("amd64")
	if err != nil {
		t.Fatal(err)
	}
	return table
}

func TestNotableSampleSize(t *testing.T) {
	// struct notable_event: 8*3 + 8*6 + 8 + 4*3 + 2*2 + 4*2 + 16 + 512.
	if notableSize != 632 {
		t.Errorf("notableSize = %d, want 632", notableSize)
	}
}

func TestDecodeNotable(t *testing.T) {
	const pathMax = 16
	eaccess := -int64(unix.EACCES)
	tests := []struct {
		name string
		ev   loader.NotableEvent
		want Event // Time is checked apart
	}{
		{
			name: "native openat failing with a path",
			ev: withPath(loader.NotableEvent{Tgid: 1234, Tid: 1240, Comm: commOf("nginx"), Nr: 257, Abi: uint16(syscalls.Native),
				Args: [6]uint64{uint64(0xffffffffffffff9c), 0x7ffc0000, 0, 0, 0, 0}, Ret: eaccess, DurationNs: 12000, CgroupId: 77}, "/etc/x.conf", pathMax),
			want: Event{PID: 1234, TID: 1240, Comm: "nginx", Syscall: "openat", Args: [6]uint64{0xffffffffffffff9c, 0x7ffc0000},
				Ret: eaccess, Errno: "EACCES", Duration: 12 * time.Microsecond, Path: "/etc/x.conf", CgroupID: 77, NR: 257},
		},
		{
			name: "compat openat",
			ev:   withPath(loader.NotableEvent{Tgid: 5, Tid: 5, Comm: commOf("app32"), Nr: 295, Abi: uint16(syscalls.Compat), Ret: -2}, "/x", pathMax),
			want: Event{PID: 5, TID: 5, Comm: "app32", Syscall: "openat", Compat: true, Ret: -2, Errno: "ENOENT", Path: "/x", NR: 295},
		},
		{
			name: "number 5 is fstat natively",
			ev:   loader.NotableEvent{Tgid: 5, Nr: 5, Abi: uint16(syscalls.Native), Ret: -9},
			want: Event{PID: 5, Syscall: "fstat", Ret: -9, Errno: "EBADF", NR: 5},
		},
		{
			name: "number 5 is open for a 32-bit task",
			ev:   loader.NotableEvent{Tgid: 5, Nr: 5, Abi: uint16(syscalls.Compat), Ret: -13},
			want: Event{PID: 5, Syscall: "open", Compat: true, Ret: -13, Errno: "EACCES", NR: 5},
		},
		{
			name: "unknown number",
			ev:   loader.NotableEvent{Tgid: 5, Nr: 999, Ret: -38},
			want: Event{PID: 5, Syscall: "unknown_999", Ret: -38, Errno: "ENOSYS", NR: 999},
		},
		{
			name: "kernel-internal errno",
			ev:   loader.NotableEvent{Tgid: 5, Nr: 232, Ret: -512, DurationNs: 2e9},
			want: Event{PID: 5, Syscall: "epoll_wait", Ret: -512, Errno: "ERESTARTSYS", Duration: 2 * time.Second, NR: 232},
		},
		{
			name: "slow success has no errno",
			ev:   loader.NotableEvent{Tgid: 5, Nr: 74, Ret: 0, DurationNs: 1.5e9},
			want: Event{PID: 5, Syscall: "fsync", Duration: 1500 * time.Millisecond, NR: 74},
		},
		{
			name: "a return below -4095 is not an errno",
			ev:   loader.NotableEvent{Tgid: 5, Nr: 8, Ret: -4096},
			want: Event{PID: 5, Syscall: "lseek", Ret: -4096, NR: 8},
		},
		{
			name: "-4095 is an errno",
			ev:   loader.NotableEvent{Tgid: 5, Nr: 8, Ret: -4095},
			want: Event{PID: 5, Syscall: "lseek", Ret: -4095, Errno: "errno_4095", NR: 8},
		},
		{
			name: "path that fills path_max was cut",
			ev:   withPath(loader.NotableEvent{Tgid: 5, Nr: 257, Ret: -2}, "/var/lib/abcdefghijkl", pathMax),
			want: Event{PID: 5, Syscall: "openat", Ret: -2, Errno: "ENOENT", Path: "/var/lib/abcdef...", NR: 257},
		},
		{
			name: "path one short of path_max is whole",
			ev:   withPath(loader.NotableEvent{Tgid: 5, Nr: 257, Ret: -2}, "/var/lib/abcde", pathMax),
			want: Event{PID: 5, Syscall: "openat", Ret: -2, Errno: "ENOENT", Path: "/var/lib/abcde", NR: 257},
		},
		{
			name: "no path when PathLen is 0",
			ev:   loader.NotableEvent{Tgid: 5, Nr: 257, Ret: -2, Path: [512]int8{'/', 'x'}},
			want: Event{PID: 5, Syscall: "openat", Ret: -2, Errno: "ENOENT", NR: 257},
		},
		{
			name: "no path when the read failed",
			ev:   loader.NotableEvent{Tgid: 5, Nr: 257, Ret: -14, PathLen: -14, Path: [512]int8{'/', 'x'}},
			want: Event{PID: 5, Syscall: "openat", Ret: -14, Errno: "EFAULT", NR: 257},
		},
		{
			name: "PathLen beyond the buffer stays in it",
			ev:   loader.NotableEvent{Tgid: 5, Nr: 257, Ret: -2, PathLen: 100000, Path: [512]int8{'/', 'y'}},
			want: Event{PID: 5, Syscall: "openat", Ret: -2, Errno: "ENOENT", Path: "/y...", NR: 257},
		},
		{
			name: "invalid UTF-8 in comm and path",
			ev:   withPath(loader.NotableEvent{Tgid: 5, Nr: 257, Ret: -2, Comm: commOf("a\xffb")}, "/caf\xe9", pathMax),
			want: Event{PID: 5, Comm: "a?b", Syscall: "openat", Ret: -2, Errno: "ENOENT", Path: "/caf?", NR: 257},
		},
		{
			name: "a 16-byte comm without NUL",
			ev:   loader.NotableEvent{Tgid: 5, Nr: 0, Comm: [16]int8{'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p'}, DurationNs: 1},
			want: Event{PID: 5, Comm: "abcdefghijklmnop", Syscall: "read", Duration: 1},
		},
	}
	d := NewDecoder(amd64Table(t), "", pathMax)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.Decode(rawNotable(t, tt.ev))
			if err != nil {
				t.Fatal(err)
			}
			got.Time = time.Time{}
			if got != tt.want {
				t.Errorf("Decode:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeNotableShortSample(t *testing.T) {
	d := NewDecoder(amd64Table(t), "", 16)
	full := rawNotable(t, loader.NotableEvent{Tgid: 1})
	for _, raw := range [][]byte{nil, {}, full[:8], full[:len(full)-1]} {
		_, err := d.Decode(raw)
		if err == nil {
			t.Errorf("%d bytes: no error", len(raw))
			continue
		}
		if want := "notable event too short"; !strings.Contains(err.Error(), want) {
			t.Errorf("%d bytes: error %q does not say %q", len(raw), err, want)
		}
	}
	// A longer sample (ring buffer records are 8-byte aligned) decodes.
	if n, err := d.Decode(append(full, 0, 0, 0, 0, 0, 0, 0, 0)); err != nil || n.PID != 1 {
		t.Errorf("longer sample: %+v, %v", n, err)
	}
}

// fakeFD makes <root>/<pid>/fd/<fd> a link to target, as /proc shows an
// open file.
func fakeFD(t *testing.T, root string, pid, fd, target string) {
	t.Helper()
	dir := filepath.Join(root, pid, "fd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, fd)); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeNotableResolvesFDPath(t *testing.T) {
	root := t.TempDir()
	fakeFD(t, root, "4321", "7", "/var/log/app.log")
	fakeFD(t, root, "4321", "1", "pipe:[12345]")
	tests := []struct {
		name     string
		procRoot string
		nr       uint16
		tgid     uint32
		args     [6]uint64
		want     string
	}{
		{"write to a file", root, 1, 4321, [6]uint64{7, 0x5600, 512}, "/var/log/app.log"},
		{"write to a pipe", root, 1, 4321, [6]uint64{1}, "pipe:[12345]"},
		{"fd in the low 32 bits", root, 1, 4321, [6]uint64{0xdead00000007}, "/var/log/app.log"},
		{"sendfile's fd is its second argument", root, 40, 4321, [6]uint64{99, 7}, "/var/log/app.log"},
		{"fd no longer open", root, 1, 4321, [6]uint64{8}, ""},
		{"process gone", root, 1, 999, [6]uint64{7}, ""},
		{"negative fd", root, 1, 4321, [6]uint64{uint64(0xffffffffffffffff)}, ""},
		{"a call without an fd argument", root, 87, 4321, [6]uint64{7}, ""},
		{"no procRoot", "", 1, 4321, [6]uint64{7}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(amd64Table(t), tt.procRoot, 16)
			// The thread id differs: /proc/<pid>/fd is the thread group's.
			got, err := d.Decode(rawNotable(t, loader.NotableEvent{Tgid: tt.tgid, Tid: tt.tgid + 1, Nr: tt.nr, Args: tt.args, Ret: -28}))
			if err != nil {
				t.Fatal(err)
			}
			if got.FDPath != tt.want {
				t.Errorf("FDPath = %q, want %q", got.FDPath, tt.want)
			}
		})
	}
}

func TestDecodeNotableWallClockTime(t *testing.T) {
	d := NewDecoder(amd64Table(t), "", 16)
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	now := uint64(ts.Nano())
	first, err := d.Decode(rawNotable(t, loader.NotableEvent{TsNs: now}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := time.Since(first.Time); diff < -time.Second || diff > time.Second {
		t.Errorf("Time = %v, %v from now", first.Time, diff)
	}
	later, err := d.Decode(rawNotable(t, loader.NotableEvent{TsNs: now + 1_500_000_001}))
	if err != nil {
		t.Fatal(err)
	}
	if got := later.Time.Sub(first.Time); got != 1_500_000_001*time.Nanosecond {
		t.Errorf("1.500000001s later in monotonic time is %v later in wall time", got)
	}
}

// FuzzDecodeNotable checks that any sample decodes or fails without
// panicking, and that what decodes is valid UTF-8 from the sample's fields.
func FuzzDecodeNotable(f *testing.F) {
	f.Add(rawNotable(f, withPath(loader.NotableEvent{Tgid: 1, Nr: 257, Ret: -2, Comm: commOf("cat")}, "/nonexistent", 64)))
	f.Add(rawNotable(f, loader.NotableEvent{Tgid: 1, Nr: 1, Abi: 1, Ret: -4095, PathLen: 1 << 30}))
	f.Add(rawNotable(f, loader.NotableEvent{Tgid: 1, Nr: 0xffff, Abi: 0xffff, Ret: -1 << 63, PathLen: -1 << 31}))
	f.Add(rawNotable(f, loader.NotableEvent{Nr: 1, Args: [6]uint64{1 << 31}})) // fd -2^31
	f.Add([]byte("short"))
	root := f.TempDir()
	d := NewDecoder(amd64Table(f), root, 64)
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := d.Decode(raw)
		if len(raw) < notableSize {
			if err == nil {
				t.Fatalf("%d bytes decoded", len(raw))
			}
			return
		}
		if err != nil {
			t.Fatalf("%d bytes: %v", len(raw), err)
		}
		if n.PID != binary.NativeEndian.Uint32(raw[80:]) || n.TID != binary.NativeEndian.Uint32(raw[84:]) {
			t.Fatalf("decoded %+v from %x", n, raw[80:88])
		}
		for _, s := range []string{n.Comm, n.Path, n.Syscall} {
			if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
				t.Fatalf("%q is not a clean string", s)
			}
		}
		if n.Syscall == "" || len(n.Comm) > 16*3 || len(n.Path) > 512*3+len("...") {
			t.Fatalf("decoded %+v", n)
		}
		if (n.Errno != "") != (n.Ret < 0 && n.Ret >= -4095) {
			t.Fatalf("ret %d, errno %q", n.Ret, n.Errno)
		}
	})
}

func numbered(pids ...uint32) []Event {
	out := make([]Event, len(pids))
	for i, pid := range pids {
		out[i] = Event{PID: pid}
	}
	return out
}

func pidsOf(events []Event) []uint32 {
	out := []uint32{}
	for _, n := range events {
		out = append(out, n.PID)
	}
	return out
}

func TestRecent(t *testing.T) {
	even := func(n Event) bool { return n.PID%2 == 0 }
	tests := []struct {
		name     string
		capacity int
		added    []Event
		match    func(Event) bool
		limit    int
		want     []uint32
	}{
		{"empty", 3, nil, nil, 0, []uint32{}},
		{"not full", 3, numbered(1, 2), nil, 0, []uint32{1, 2}},
		{"exactly full", 3, numbered(1, 2, 3), nil, 0, []uint32{1, 2, 3}},
		{"oldest dropped first", 3, numbered(1, 2, 3, 4, 5), nil, 0, []uint32{3, 4, 5}},
		{"wrapped twice", 3, numbered(1, 2, 3, 4, 5, 6, 7), nil, 0, []uint32{5, 6, 7}},
		{"capacity 0 keeps nothing", 0, numbered(1, 2), nil, 0, []uint32{}},
		{"negative capacity keeps nothing", -1, numbered(1, 2), nil, 0, []uint32{}},
		{"filter", 10, numbered(1, 2, 3, 4, 5, 6, 7, 8), even, 0, []uint32{2, 4, 6, 8}},
		{"filter then newest n, oldest first", 10, numbered(1, 2, 3, 4, 5, 6, 7, 8), even, 2, []uint32{6, 8}},
		{"limit above the matches", 10, numbered(1, 2, 3), nil, 5, []uint32{1, 2, 3}},
		{"limit on a wrapped ring", 4, numbered(1, 2, 3, 4, 5, 6), nil, 3, []uint32{4, 5, 6}},
		{"nothing matches", 4, numbered(1, 3), even, 1, []uint32{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecent(tt.capacity)
			for _, n := range tt.added {
				r.Add(n)
			}
			got := pidsOf(r.Query(tt.match, tt.limit))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Query = %v, want %v", got, tt.want)
			}
			if r.Total() != uint64(len(tt.added)) {
				t.Errorf("Total = %d, want %d", r.Total(), len(tt.added))
			}
		})
	}
}

// Writers add numbered events while readers query: every query sees each
// writer's events in order, and nothing is lost from the count.
func TestRecentConcurrentAddQuery(t *testing.T) {
	const writers, perWriter, capacity = 4, 2000, 64
	r := NewRecent(capacity)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				r.Add(Event{TID: uint32(w), PID: uint32(i)})
			}
		})
	}
	done := make(chan struct{})
	errs := make(chan string, 1)
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				last := map[uint32]uint32{}
				got := r.Query(nil, 0)
				if len(got) > capacity {
					select {
					case errs <- "query returned more than the capacity":
					default:
					}
				}
				for _, n := range got {
					if prev, ok := last[n.TID]; ok && n.PID <= prev {
						select {
						case errs <- "a writer's events out of order":
						default:
						}
					}
					last[n.TID] = n.PID
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	select {
	case e := <-errs:
		t.Error(e)
	default:
	}
	if got := r.Total(); got != writers*perWriter {
		t.Errorf("Total = %d, want %d", got, writers*perWriter)
	}
	if got := len(r.Query(nil, 0)); got != capacity {
		t.Errorf("kept %d, want %d", got, capacity)
	}
}
