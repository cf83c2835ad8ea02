package filter

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sysobsd/sysobsd/internal/cgroups"
	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

// amd64 is the syscall table the tests name syscalls with: futex is 202
// (x86_64) and 240 (i386), read 0 and 3; accept is x86_64 only, socketcall
// i386 only.
func amd64(t *testing.T) *syscalls.Table {
	t.Helper()
	tbl, err := syscalls.ForArch("amd64")
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func compile(t *testing.T, f config.Filters) *Filter {
	t.Helper()
	out, err := Compile(f, config.Events{}, amd64(t), nil)
	if err != nil {
		t.Fatalf("Compile(%+v) = %v", f, err)
	}
	return out
}

func slot(abi syscalls.ABI, nr int) int { return int(abi)*loader.NRSlots + nr }

func TestCompileSettings(t *testing.T) {
	const off, only, except = loader.FilterOff, loader.FilterOnlyListed, loader.FilterExceptListed
	tests := []struct {
		name          string
		filters       config.Filters
		mode          uint32
		includeMask   uint32
		syscallFilter uint32
	}{
		{"no filters", config.Filters{}, off, 0, 0},
		{"include pids", config.Filters{Include: config.Match{PIDs: []uint32{1}}}, only, loader.DimPID, 0},
		{"include comms", config.Filters{Include: config.Match{Comms: []string{"nginx"}}}, only, loader.DimComm, 0},
		{"include cgroups", config.Filters{Include: config.Match{Cgroups: []string{"/a"}}}, only, loader.DimCgroup, 0},
		{"include units", config.Filters{Include: config.Match{Units: []string{"nginx.service"}}}, only, loader.DimCgroup, 0},
		{"include cgroups and units are one dimension",
			config.Filters{Include: config.Match{Cgroups: []string{"/a"}, Units: []string{"b.service"}}}, only, loader.DimCgroup, 0},
		{"include every dimension", config.Filters{Include: config.Match{
			PIDs: []uint32{1}, Comms: []string{"a"}, Cgroups: []string{"/a"}, Units: []string{"u.service"}}},
			only, loader.DimPID | loader.DimComm | loader.DimCgroup, 0},
		{"exclude pids only", config.Filters{Exclude: config.Match{PIDs: []uint32{1}}}, except, 0, 0},
		{"exclude comms only", config.Filters{Exclude: config.Match{Comms: []string{"sshd"}}}, except, 0, 0},
		{"exclude cgroups only", config.Filters{Exclude: config.Match{Cgroups: []string{"/a"}}}, except, 0, 0},
		{"exclude units only", config.Filters{Exclude: config.Match{Units: []string{"u.service"}}}, except, 0, 0},
		{"include and exclude lists: only listed", config.Filters{
			Include: config.Match{Comms: []string{"nginx"}}, Exclude: config.Match{PIDs: []uint32{7}}}, only, loader.DimComm, 0},
		{"include syscalls only: no process filter", config.Filters{Include: config.Match{Syscalls: []string{"futex"}}}, off, 0, 1},
		{"exclude syscalls only: no process filter", config.Filters{Exclude: config.Match{Syscalls: []string{"futex"}}}, off, 0, 1},
		{"include syscalls and exclude comms", config.Filters{
			Include: config.Match{Syscalls: []string{"read"}}, Exclude: config.Match{Comms: []string{"sshd"}}}, except, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := compile(t, tt.filters)
			s := f.Kernel().Settings
			if s.ProcessFilter != tt.mode || s.IncludeMask != tt.includeMask || s.SyscallFilter != tt.syscallFilter {
				t.Errorf("settings = {ProcessFilter: %d, IncludeMask: %d, SyscallFilter: %d}, want {%d, %d, %d}",
					s.ProcessFilter, s.IncludeMask, s.SyscallFilter, tt.mode, tt.includeMask, tt.syscallFilter)
			}
			if got, want := f.Active(), tt.mode != off; got != want {
				t.Errorf("Active() = %v, want %v", got, want)
			}
			if tt.syscallFilter == 0 && f.Kernel().SyscallAllowed != nil {
				t.Errorf("SyscallAllowed set without a syscall filter")
			}
		})
	}
}

// Dims names every dimension a list uses, include or exclude, so that the
// kernel judges a process again at a rename only with a comm list, at a move
// only with a cgroup or unit list.
func TestCompileDims(t *testing.T) {
	for _, tt := range []struct {
		name    string
		filters config.Filters
		want    uint32
	}{
		{"none", config.Filters{}, 0},
		{"syscalls only", config.Filters{Include: config.Match{Syscalls: []string{"read"}}}, 0},
		{"include comms", config.Filters{Include: config.Match{Comms: []string{"a"}}}, loader.DimComm},
		{"exclude units", config.Filters{Exclude: config.Match{Units: []string{"u.service"}}}, loader.DimCgroup},
		{"include pids, exclude cgroups and comms", config.Filters{
			Include: config.Match{PIDs: []uint32{1}}, Exclude: config.Match{Cgroups: []string{"/a"}, Comms: []string{"b"}}},
			loader.DimPID | loader.DimCgroup | loader.DimComm},
	} {
		if got := compile(t, tt.filters).Kernel().Settings.Dims; got != tt.want {
			t.Errorf("%s: Dims = %b, want %b", tt.name, got, tt.want)
		}
	}
}

func TestCompileMatchBits(t *testing.T) {
	const in, ex, both = loader.MatchInclude, loader.MatchExclude, loader.MatchInclude | loader.MatchExclude
	f := compile(t, config.Filters{
		Include: config.Match{
			PIDs:    []uint32{1, 2},
			Comms:   []string{"nginx", "bash"},
			Units:   []string{"nginx.service", "user.slice"},
			Cgroups: []string{"/a/b"},
		},
		Exclude: config.Match{
			PIDs:    []uint32{2, 3},
			Comms:   []string{"bash", "sshd"},
			Units:   []string{"user.slice", "docker.service"},
			Cgroups: []string{"/a/b", "/c"},
		},
	})
	k := f.Kernel()
	if want := map[uint32]uint8{1: in, 2: both, 3: ex}; !maps.Equal(k.PIDs, want) {
		t.Errorf("PIDs = %v, want %v", k.PIDs, want)
	}
	if want := map[string]uint8{"nginx": in, "bash": both, "sshd": ex}; !maps.Equal(k.Comms, want) {
		t.Errorf("Comms = %v, want %v", k.Comms, want)
	}
	if want := map[string]uint8{"nginx.service": in, "user.slice": both, "docker.service": ex}; !maps.Equal(k.CgroupNames, want) {
		t.Errorf("CgroupNames = %v, want %v", k.CgroupNames, want)
	}
	// No resolver: no ids, every path unresolved (in config order).
	if len(k.CgroupIDs) != 0 {
		t.Errorf("CgroupIDs = %v without a resolver, want none", k.CgroupIDs)
	}
	if want := []string{"/a/b", "/a/b", "/c"}; !slices.Equal(f.Unresolved, want) {
		t.Errorf("Unresolved = %q, want %q", f.Unresolved, want)
	}
}

func TestCompileResolvesCgroupPathsToIDs(t *testing.T) {
	mount := t.TempDir()
	for _, dir := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(mount, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(mount, "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Compile(config.Filters{
		Include: config.Match{Cgroups: []string{"/a/b", "/gone"}},
		Exclude: config.Match{Cgroups: []string{"/a/b", "/c/", "/cgroup.procs"}},
	}, config.Events{}, amd64(t), cgroups.NewResolver(mount))
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]uint8{
		testenv.Inode(t, filepath.Join(mount, "a/b")): loader.MatchInclude | loader.MatchExclude,
		testenv.Inode(t, filepath.Join(mount, "c")):   loader.MatchExclude,
	}
	if got := f.Kernel().CgroupIDs; !maps.Equal(got, want) {
		t.Errorf("CgroupIDs = %v, want %v", got, want)
	}
	// A missing directory and a file are not cgroups.
	if want := []string{"/gone", "/cgroup.procs"}; !slices.Equal(f.Unresolved, want) {
		t.Errorf("Unresolved = %q, want %q", f.Unresolved, want)
	}
}

func TestCompileSyscallAllowed(t *testing.T) {
	const futex64, futex32, read64, read32 = 202, 240, 0, 3
	const accept64, socketcall32 = 43, 102
	tests := []struct {
		name    string
		filters config.Filters
		// allowed lists the allowed slots, or, with allowAll, the denied ones.
		allowAll bool
		slots    []int
	}{
		{"include futex: both ABIs' numbers", config.Filters{Include: config.Match{Syscalls: []string{"futex"}}},
			false, []int{slot(syscalls.Native, futex64), slot(syscalls.Compat, futex32)}},
		{"include one ABI's syscalls", config.Filters{Include: config.Match{Syscalls: []string{"accept", "socketcall"}}},
			false, []int{slot(syscalls.Native, accept64), slot(syscalls.Compat, socketcall32)}},
		{"exclude futex: all but both ABIs' numbers", config.Filters{Exclude: config.Match{Syscalls: []string{"futex"}}},
			true, []int{slot(syscalls.Native, futex64), slot(syscalls.Compat, futex32)}},
		{"include less exclude", config.Filters{
			Include: config.Match{Syscalls: []string{"futex", "read"}},
			Exclude: config.Match{Syscalls: []string{"read"}},
		}, false, []int{slot(syscalls.Native, futex64), slot(syscalls.Compat, futex32)}},
		{"exclude of a syscall not included", config.Filters{
			Include: config.Match{Syscalls: []string{"read"}},
			Exclude: config.Match{Syscalls: []string{"futex"}},
		}, false, []int{slot(syscalls.Native, read64), slot(syscalls.Compat, read32)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allowed := compile(t, tt.filters).Kernel().SyscallAllowed
			if len(allowed) != loader.ABIs*loader.NRSlots {
				t.Fatalf("len(SyscallAllowed) = %d, want %d", len(allowed), loader.ABIs*loader.NRSlots)
			}
			var odd []int // slots whose value differs from the default
			for i, ok := range allowed {
				if ok != tt.allowAll {
					odd = append(odd, i)
				}
			}
			if !slices.Equal(odd, tt.slots) {
				verb := "allowed"
				if tt.allowAll {
					verb = "denied"
				}
				t.Errorf("%s slots %v, want %v", verb, odd, tt.slots)
			}
		})
	}
}

func TestCompileUnknownSyscallFails(t *testing.T) {
	for _, f := range []config.Filters{
		{Include: config.Match{Syscalls: []string{"futex", "no_such_call"}}},
		{Exclude: config.Match{Syscalls: []string{"no_such_call"}}},
	} {
		out, err := Compile(f, config.Events{}, amd64(t), nil)
		if err == nil || !strings.Contains(err.Error(), `"no_such_call"`) {
			t.Errorf("Compile(%+v) = %v, %v; want an error naming no_such_call", f, out, err)
		}
	}
}

// deep is a cgroup path whose first component is top, n levels deep.
func deep(top string, n int) string {
	parts := []string{"", top}
	for i := 2; i <= n; i++ {
		parts = append(parts, "l"+string(rune('0'+i)))
	}
	return strings.Join(parts, "/")
}

// TestCountedMirrorsKernel judges processes as evaluate_process in
// bpf/sysobsd.bpf.c does.
func TestCountedMirrorsKernel(t *testing.T) {
	type proc struct {
		tgid   uint32
		comm   string
		cgroup string
		want   bool
	}
	long63 := strings.Repeat("x", 60) + ".sl" // a 63-byte unit name
	tests := []struct {
		name    string
		filters config.Filters
		procs   []proc
	}{
		{"no filters count everything", config.Filters{}, []proc{
			{1, "init", "/", true},
			{500, "bash", "/user.slice/user-1000.slice/session-2.scope", true},
		}},
		{"include comm", config.Filters{Include: config.Match{Comms: []string{"nginx"}}}, []proc{
			{10, "nginx", "/system.slice/nginx.service", true},
			{11, "bash", "/system.slice/nginx.service", false},
			{12, "nginx2", "/", false},
		}},
		{"exclude comm", config.Filters{Exclude: config.Match{Comms: []string{"sshd"}}}, []proc{
			{10, "sshd", "/system.slice/ssh.service", false},
			{11, "bash", "/system.slice/ssh.service", true},
		}},
		{"include and exclude the same comm", config.Filters{
			Include: config.Match{Comms: []string{"nginx"}},
			Exclude: config.Match{Comms: []string{"nginx"}},
		}, []proc{
			{10, "nginx", "/", false},
			{11, "bash", "/", false},
		}},
		{"include pids", config.Filters{Include: config.Match{PIDs: []uint32{42, 43}}}, []proc{
			{42, "a", "/", true},
			{43, "b", "/x", true},
			{44, "a", "/", false},
		}},
		{"exclude pid beats included comm", config.Filters{
			Include: config.Match{Comms: []string{"nginx"}},
			Exclude: config.Match{PIDs: []uint32{42}},
		}, []proc{
			{42, "nginx", "/", false},
			{43, "nginx", "/", true},
		}},
		{"include pid and comm: both must match", config.Filters{
			Include: config.Match{PIDs: []uint32{42}, Comms: []string{"nginx"}},
		}, []proc{
			{42, "nginx", "/", true},
			{42, "bash", "/", false},
			{43, "nginx", "/", false},
		}},
		{"include comm and unit: both must match", config.Filters{
			Include: config.Match{Comms: []string{"nginx"}, Units: []string{"nginx.service"}},
		}, []proc{
			{10, "nginx", "/system.slice/nginx.service", true},
			{11, "nginx", "/system.slice/other.service", false},
			{12, "bash", "/system.slice/nginx.service", false},
		}},
		{"comm longer than 15 bytes is cut like the kernel's", config.Filters{
			Include: config.Match{Comms: []string{"kworker-longnam"}}, // 15 bytes
		}, []proc{
			{10, "kworker-longname", "/", true},
			{11, "kworker-longname-and-more", "/", true},
			{12, "kworker-longna", "/", false},
		}},
		{"exclude comm longer than 15 bytes", config.Filters{
			Exclude: config.Match{Comms: []string{"0123456789abcde"}},
		}, []proc{
			{10, "0123456789abcdef", "/", false},
			{11, "0123456789abcd", "/", true},
		}},
		{"unit by name at depth 1", config.Filters{Include: config.Match{Units: []string{"system.slice"}}}, []proc{
			{10, "a", "/system.slice", true},
			{11, "a", "/user.slice", false},
			{12, "a", "/", false},
		}},
		{"unit by name at depth 3", config.Filters{Include: config.Match{Units: []string{"system.slice"}}}, []proc{
			{10, "a", "/system.slice/nginx.service/worker", true},
			{11, "a", "/user.slice/system.slice2/worker", false},
		}},
		{"unit by name on the cgroup itself, whole names only", config.Filters{
			Include: config.Match{Units: []string{"nginx.service"}},
		}, []proc{
			{10, "a", "/other.slice/nginx.service", true},
			{11, "a", "/other.slice/nginx.service2", false},
			{12, "a", "/other.slice/x/nginx.servic", false},
			{13, "a", "/nginx.service.d/x", false},
		}},
		{"unit up to 8 levels deep, not beyond", config.Filters{Include: config.Match{Units: []string{"top.slice"}}}, []proc{
			{10, "a", deep("top.slice", 7), true},
			{11, "a", deep("top.slice", 8), true},
			{12, "a", deep("top.slice", 9), false},
		}},
		{"unit name longer than the kernel keeps is cut to 63 bytes", config.Filters{
			Include: config.Match{Units: []string{long63}},
		}, []proc{
			{10, "a", "/" + long63 + "ice", true},
			{11, "a", "/" + long63, true},
		}},
		{"excluded unit", config.Filters{Exclude: config.Match{Units: []string{"docker.service"}}}, []proc{
			{10, "dockerd", "/system.slice/docker.service", false},
			{11, "dockerd", "/system.slice/docker.service/sub", false},
			{12, "dockerd", "/system.slice/containerd.service", true},
		}},
		{"cgroup path matches itself and descendants", config.Filters{Include: config.Match{Cgroups: []string{"/a/b"}}}, []proc{
			{10, "a", "/a/b", true},
			{11, "a", "/a/b/c/d", true},
			{12, "a", "/a", false},
			{13, "a", "/", false},
		}},
		{"cgroup path is not a string prefix", config.Filters{Include: config.Match{Cgroups: []string{"/a/b"}}}, []proc{
			{10, "a", "/a/bc", false},
			{11, "a", "/a/bc/b", false},
			{12, "a", "/x/a/b", false},
		}},
		{"cgroup paths as written: trailing and double slashes", config.Filters{
			Include: config.Match{Cgroups: []string{"/a/b/", "/x//y"}},
		}, []proc{
			{10, "a", "/a/b/c", true},
			{11, "a", "/a/bc", false},
			{12, "a", "/x/y", true},
		}},
		{"root cgroup path matches everything within 8 levels", config.Filters{Include: config.Match{Cgroups: []string{"/"}}}, []proc{
			{10, "a", "/", true},
			{11, "a", "/system.slice/nginx.service", true},
			{12, "a", deep("x", 7), true},
			{13, "a", deep("x", 8), false}, // the root is the 9th level
		}},
		{"cgroup path up to 8 levels up, not beyond", config.Filters{Include: config.Match{Cgroups: []string{"/top"}}}, []proc{
			{10, "a", deep("top", 8), true},
			{11, "a", deep("top", 9), false},
		}},
		{"excluded cgroup path", config.Filters{Exclude: config.Match{Cgroups: []string{"/a"}}}, []proc{
			{10, "a", "/a", false},
			{11, "a", "/a/b", false},
			{12, "a", "/ab", true},
		}},
		{"paths and units are one dimension: either matches", config.Filters{
			Include: config.Match{Cgroups: []string{"/a"}, Units: []string{"b.service"}},
		}, []proc{
			{10, "a", "/a/x", true},
			{11, "a", "/z/b.service", true},
			{12, "a", "/z", false},
		}},
		{"include comm, exclude cgroup", config.Filters{
			Include: config.Match{Comms: []string{"nginx"}},
			Exclude: config.Match{Cgroups: []string{"/test"}},
		}, []proc{
			{10, "nginx", "/test/x", false},
			{11, "nginx", "/prod/x", true},
			{12, "bash", "/prod/x", false},
		}},
		{"include cgroup, exclude unit inside it", config.Filters{
			Include: config.Match{Cgroups: []string{"/system.slice"}},
			Exclude: config.Match{Units: []string{"sshd.service"}},
		}, []proc{
			{10, "a", "/system.slice/nginx.service", true},
			{11, "a", "/system.slice/sshd.service", false},
			{12, "a", "/user.slice", false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := compile(t, tt.filters)
			for _, p := range tt.procs {
				if got := f.Counted(p.tgid, p.comm, p.cgroup); got != p.want {
					t.Errorf("Counted(%d, %q, %q) = %v, want %v", p.tgid, p.comm, p.cgroup, got, p.want)
				}
			}
		})
	}
}

type fakeVerdicts struct {
	listed map[uint32]bool
	writes int
}

func (v *fakeVerdicts) SetProcessListed(tgid uint32, listed bool) error {
	v.listed[tgid] = listed
	v.writes++
	return nil
}

// A process renamed while it is judged (read, then renamed, its hook writing
// the new verdict, then this write) ends with the verdict of its new name:
// judge reads it again after writing, and writes again if it changed.
func TestJudgeFollowsARenameDuringTheScan(t *testing.T) {
	f := compile(t, config.Filters{Exclude: config.Match{Comms: []string{"secret"}}})
	seen := []process{{comm: "worker"}, {comm: "secret"}, {comm: "secret"}}
	reads := 0
	identify := func(uint32) (process, bool) {
		p := seen[min(reads, len(seen)-1)]
		reads++
		return p, true
	}
	out := &fakeVerdicts{listed: make(map[uint32]bool)}
	if err := f.judge(out, 42, false, identify); err != nil {
		t.Fatal(err)
	}
	if !out.listed[42] || out.writes != 2 {
		t.Errorf("listed = %v after %d writes; want true (excluded: its new name) after 2", out.listed[42], out.writes)
	}

	// A process that keeps changing is judged at most judgeTries times;
	// one gone is not judged at all.
	flip := 0
	restless := func(uint32) (process, bool) {
		flip++
		return process{comm: []string{"a", "b"}[flip%2]}, true
	}
	out = &fakeVerdicts{listed: make(map[uint32]bool)}
	if err := f.judge(out, 7, false, restless); err != nil || out.writes != judgeTries {
		t.Errorf("restless: %d writes, err %v; want %d", out.writes, err, judgeTries)
	}
	out = &fakeVerdicts{listed: make(map[uint32]bool)}
	if err := f.judge(out, 8, false, func(uint32) (process, bool) { return process{}, false }); err != nil || out.writes != 0 {
		t.Errorf("gone: %d writes, err %v; want none", out.writes, err)
	}
}
