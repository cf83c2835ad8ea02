package cgroups

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// TestRealCgroupResolvesBothWays makes a real cgroup, moves a process into it, and checks
// that every way in agrees: the process's /proc/<pid>/cgroup, Resolver.ID, the kernel's
// own cgroup id (the file handle cgroupfs gives, which is what bpf_get_current_cgroup_id
// returns), and Resolver.Path.
func TestRealCgroupResolvesBothWays(t *testing.T) {
	const name = "demo-sysobsd-test.service"
	mount, dir := realCgroup(t, name)
	t.Cleanup(func() {
		// A reaped process leaves its cgroup a moment later; until then rmdir is EBUSY.
		var err error
		testenv.Eventually(2*time.Second, func() bool { err = os.Remove(dir); return err == nil })
		if err != nil {
			t.Errorf("remove the test cgroup: %v", err)
		}
	})

	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	pid := sleeper.Process.Pid
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatal(err)
	}

	path, err := ForPID("/proc", pid)
	if err != nil {
		t.Fatal(err)
	}
	if path != "/"+name {
		t.Fatalf("ForPID(sleeper) = %q, want /%s (does the test run in a cgroup namespace not rooted at %s?)", path, name, mount)
	}
	if got := Classify(path); got.Unit != name || got.Container != "" {
		t.Errorf("Classify(%q) = %+v, want Unit %s", path, got, name)
	}

	r := NewResolver(mount)
	id, err := r.ID(path)
	if err != nil {
		t.Fatal(err)
	}
	handle, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil {
		t.Fatalf("name_to_handle_at %s: %v", dir, err)
	}
	if b := handle.Bytes(); len(b) != 8 || binary.NativeEndian.Uint64(b) != id {
		t.Errorf("kernel cgroup id (file handle %x) != inode %d", b, id)
	}

	forgetAll(r) // resolve by walking, not from ID's entry
	if got, ok := r.Path(id); !ok || got != path {
		t.Errorf("Path(%d) = %q, %v; want %q", id, got, ok, path)
	}
	if got, ok := r.Path(1); !ok || got != "/" {
		t.Errorf("Path(1) = %q, %v; want the root cgroup /", got, ok)
	}
}

// TestRealCgroupNeverMovesAndIsRemoved checks what Removed relies on: cgroup2 refuses to
// rename a cgroup, so a cgroup's path is its for life, and once it is removed Removed says
// so.
func TestRealCgroupNeverMovesAndIsRemoved(t *testing.T) {
	mount, dir := realCgroup(t, "demo-sysobsd-removed.service")
	other := filepath.Join(mount, "demo-sysobsd-renamed.service")
	t.Cleanup(func() { os.Remove(dir); os.Remove(other) })
	r := NewResolver(mount)
	id, err := r.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, other); err == nil {
		t.Fatal("cgroup2 renamed a cgroup: Removed would take a renamed cgroup for a removed one")
	}
	if got := r.Removed([]uint64{id}); len(got) != 0 {
		t.Errorf("Removed = %v for a cgroup that exists, want none", got)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Removed([]uint64{id})[id]; !ok {
		t.Error("Removed does not have a removed cgroup")
	}
}

// realCgroup makes a cgroup named name under the cgroup2 mount, or skips the test where it
// cannot; it returns the mount and the cgroup's directory.
func realCgroup(t *testing.T, name string) (mount, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to create a cgroup (run `sudo make test`)")
	}
	mount, err := FindMount("/proc/self/mountinfo")
	if err != nil {
		testenv.Skip(t, "needs a cgroup2 mount: "+err.Error())
	}
	dir = filepath.Join(mount, name)
	os.Remove(dir) // left over from an interrupted run
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, syscall.EROFS) {
			testenv.Skip(t, "needs a writable cgroup2 mount: "+err.Error())
		}
		t.Fatal(err)
	}
	return mount, dir
}
