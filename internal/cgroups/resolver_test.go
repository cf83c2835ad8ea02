package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTree makes cgroup-like directories (and an interface file in each, as cgroupfs
// has) under a temp dir; their inode numbers stand in for cgroup ids.
func fakeTree(t *testing.T, dirs ...string) string {
	t.Helper()
	mount := t.TempDir()
	for _, d := range dirs {
		mkdir(t, mount, d)
	}
	if err := os.WriteFile(filepath.Join(mount, "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return mount
}

// forgetAll empties the cache, so that the next lookups walk again.
func forgetAll(r *Resolver) {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.paths)
}

func mkdir(t *testing.T, mount, dir string) uint64 {
	t.Helper()
	p := filepath.Join(mount, dir)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return inodeOf(t, p)
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return inode(fi)
}

var fakeCgroups = []string{
	"/system.slice",
	"/system.slice/nginx.service",
	"/system.slice/nginx.service/worker",
	"/system.slice/with space.service",
	"/user.slice/user-1000.slice/session-2.scope",
	"/kubepods/burstable/pod" + podUID + "/" + ctr,
}

func TestPathOfEveryCgroup(t *testing.T) {
	mount := fakeTree(t, fakeCgroups...)
	r := NewResolver(mount)
	want := map[uint64]string{inodeOf(t, mount): "/"}
	for _, d := range fakeCgroups {
		want[inodeOf(t, filepath.Join(mount, d))] = d
	}
	want[inodeOf(t, filepath.Join(mount, "user.slice"))] = "/user.slice"
	want[inodeOf(t, filepath.Join(mount, "user.slice/user-1000.slice"))] = "/user.slice/user-1000.slice"

	for id, path := range want {
		got, ok := r.Path(id)
		if !ok || got != path {
			t.Errorf("Path(%d) = %q, %v; want %q", id, got, ok, path)
		}
	}
	// Interface files are not cgroups.
	file := inodeOf(t, filepath.Join(mount, "system.slice/cgroup.procs"))
	if got, ok := r.Path(file); ok {
		t.Errorf("Path(inode of cgroup.procs) = %q; files are not cgroups", got)
	}
}

func TestNewCgroupFoundOnNextMissAfterMinRewalk(t *testing.T) {
	mount := fakeTree(t, "/system.slice")
	r := NewResolver(mount)
	r.minRewalk = time.Hour
	if _, ok := r.Path(inodeOf(t, filepath.Join(mount, "system.slice"))); !ok {
		t.Fatal("first walk missed /system.slice")
	}

	id := mkdir(t, mount, "/system.slice/late.service")
	if got, ok := r.Path(id); ok {
		t.Fatalf("Path(new) = %q within minRewalk of the last walk; want a miss without a walk", got)
	}
	r.minRewalk = 0
	if got, ok := r.Path(id); !ok || got != "/system.slice/late.service" {
		t.Errorf("Path(new) = %q, %v after minRewalk; want /system.slice/late.service", got, ok)
	}
}

func TestFirstMissWalksEvenWithLongMinRewalk(t *testing.T) {
	mount := fakeTree(t, "/a.service")
	r := NewResolver(mount)
	r.minRewalk = time.Hour
	if got, ok := r.Path(inodeOf(t, filepath.Join(mount, "a.service"))); !ok || got != "/a.service" {
		t.Errorf("Path = %q, %v; want /a.service", got, ok)
	}
}

func TestRemovedCgroupForgottenAtTheSecondPruneAfter(t *testing.T) {
	mount := fakeTree(t, "/system.slice/gone.service", "/system.slice/stays.service")
	r := NewResolver(mount)
	r.minRewalk = 0
	id := inodeOf(t, filepath.Join(mount, "system.slice/gone.service"))
	stays := inodeOf(t, filepath.Join(mount, "system.slice/stays.service"))
	if _, ok := r.Path(id); !ok {
		t.Fatal("Path missed a cgroup that exists")
	}
	if n := r.Prune(); n != 0 {
		t.Errorf("Prune forgot %d ids with every cgroup there", n)
	}
	if err := os.RemoveAll(filepath.Join(mount, "system.slice/gone.service")); err != nil {
		t.Fatal(err)
	}
	r.Path(1 << 62) // a miss: re-walks the tree, which no longer has gone.service
	if got, ok := r.Path(id); !ok || got != "/system.slice/gone.service" {
		t.Errorf("Path(removed) = %q, %v; want it cached for counts taken before the removal", got, ok)
	}
	if n := r.Prune(); n != 0 {
		t.Errorf("the first Prune after the removal forgot %d ids, want 0", n)
	}
	if got, ok := r.Path(id); !ok || got != "/system.slice/gone.service" {
		t.Errorf("Path(removed) = %q, %v after one Prune; want it still cached", got, ok)
	}
	if n := r.Prune(); n != 1 {
		t.Errorf("the second Prune after the removal forgot %d ids, want 1", n)
	}
	if got, ok := r.Path(id); ok {
		t.Errorf("Path(removed) = %q after two Prunes; want a miss", got)
	}
	if got, ok := r.Path(stays); !ok || got != "/system.slice/stays.service" {
		t.Errorf("Path(stays) = %q, %v; want it kept", got, ok)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.paths[id]; ok || len(r.goneAtLastPrune) != 0 {
		t.Errorf("cache still holds the removed id (%v) or remembers it as gone (%v)", ok, r.goneAtLastPrune)
	}
}

func TestRemovedOnlyWhenNoLongerAtItsPath(t *testing.T) {
	mount := fakeTree(t, "/system.slice/gone.service", "/system.slice/replaced.service", "/system.slice/stays.service")
	r := NewResolver(mount)
	id := func(d string) uint64 { return inodeOf(t, filepath.Join(mount, d)) }
	gone, replaced, stays := id("system.slice/gone.service"), id("system.slice/replaced.service"), id("system.slice/stays.service")
	all := []uint64{gone, replaced, stays, 1 << 62}
	if got := r.Removed(all); len(got) != 0 {
		t.Errorf("Removed = %v with every cgroup there", got)
	}
	r.Path(stays) // a walk: caches every cgroup's path, which Removed checks
	// A new cgroup at an old path is another cgroup (another id); made
	// before any directory is removed, so that it cannot reuse an inode
	// (cgroupfs never reuses an id; the file systems of this test may).
	mkdir(t, mount, "system.slice/replaced.new")
	for _, d := range []string{"system.slice/gone.service", "system.slice/replaced.service"} {
		if err := os.RemoveAll(filepath.Join(mount, d)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(filepath.Join(mount, "system.slice/replaced.new"), filepath.Join(mount, "system.slice/replaced.service")); err != nil {
		t.Fatal(err)
	}
	got := r.Removed(all)
	want := map[uint64]struct{}{gone: {}, replaced: {}}
	if len(got) != len(want) {
		t.Errorf("Removed = %v, want %v (gone and replaced; not stays, nor an id that never resolved)", got, want)
	}
	for id := range want {
		if _, ok := got[id]; !ok {
			t.Errorf("Removed = %v, want %d in it", got, id)
		}
	}
	if p, ok := r.Path(gone); !ok || p != "/system.slice/gone.service" {
		t.Errorf("Path(removed) = %q, %v; want it cached for counts taken before the removal", p, ok)
	}
}

// A creation record's path is taken where it leads to that cgroup, or,
// the cgroup gone already, where its parent is; not where it names another
// cgroup (a path from another cgroup namespace's root) or leads nowhere at
// all; and never over a path already known.
func TestLearnTakesOnlyPathsThatFit(t *testing.T) {
	mount := fakeTree(t, "/system.slice/here.service", "/system.slice/other.service", "/walked.slice")
	r := NewResolver(mount)
	here := inodeOf(t, filepath.Join(mount, "system.slice/here.service"))
	walked := inodeOf(t, filepath.Join(mount, "walked.slice"))
	r.Learn(walked, "/walked.slice")

	const goneID, elsewhereID, orphanID, wrongID = 1 << 60, 1<<60 + 1, 1<<60 + 2, 1<<60 + 3
	r.Learn(goneID, "/system.slice/brief.service")   // gone already: its parent is there
	r.Learn(elsewhereID, "/kubepods/pod1/ctr.scope") // no such parent: another namespace's path
	r.Learn(orphanID, "relative/path")               // not from a root
	r.Learn(wrongID, "/system.slice/other.service")  // there, but another cgroup
	r.Learn(walked, "/somewhere/else")               // a cached path stays
	r.Learn(here, "/system.slice//here.service/")    // there, this cgroup: cleaned
	for _, c := range []struct {
		id   uint64
		want string // "" for not cached
	}{
		{goneID, "/system.slice/brief.service"},
		{elsewhereID, ""},
		{orphanID, ""},
		{wrongID, ""},
		{walked, "/walked.slice"},
		{here, "/system.slice/here.service"},
	} {
		got, ok := r.cached(c.id)
		if c.want == "" && ok {
			t.Errorf("Learn cached %d as %q; want it not taken", c.id, got)
		}
		if c.want != "" && (!ok || got != c.want) {
			t.Errorf("cached(%d) = %q, %v; want %q", c.id, got, ok, c.want)
		}
	}
}

func TestIDOfRelativeAndAbsolutePaths(t *testing.T) {
	mount := fakeTree(t, "/system.slice/nginx.service")
	r := NewResolver(mount)
	want := inodeOf(t, filepath.Join(mount, "system.slice/nginx.service"))
	for _, path := range []string{
		"/system.slice/nginx.service",
		"system.slice/nginx.service",
		"/system.slice/nginx.service/",
		filepath.Join(mount, "system.slice/nginx.service"),
	} {
		got, err := r.ID(path)
		if err != nil || got != want {
			t.Errorf("ID(%q) = %d, %v; want %d", path, got, err, want)
		}
	}
	if got, err := r.ID("/"); err != nil || got != inodeOf(t, mount) {
		t.Errorf("ID(/) = %d, %v; want the mount's inode %d", got, err, inodeOf(t, mount))
	}
	// ID fills the cache: no walk needed.
	r.minRewalk = time.Hour
	r.lastWalk = time.Now()
	if got, ok := r.Path(want); !ok || got != "/system.slice/nginx.service" {
		t.Errorf("Path(ID(...)) = %q, %v; want /system.slice/nginx.service from the cache", got, ok)
	}
}

func TestIDErrorsNameThePath(t *testing.T) {
	mount := fakeTree(t, "/system.slice")
	r := NewResolver(mount)
	tests := []struct {
		path     string
		notExist bool
	}{
		{"/system.slice/missing.service", true},
		{"/system.slice/cgroup.procs", false}, // a file, not a cgroup
		{"/../outside", false},
		{"../../etc", false},
	}
	for _, tt := range tests {
		_, err := r.ID(tt.path)
		if err == nil {
			t.Errorf("ID(%q) succeeded", tt.path)
			continue
		}
		if !strings.Contains(err.Error(), tt.path) {
			t.Errorf("ID(%q): error %q does not name the path", tt.path, err)
		}
		if errors.Is(err, fs.ErrNotExist) != tt.notExist {
			t.Errorf("ID(%q): errors.Is(%v, fs.ErrNotExist) = %v, want %v", tt.path, err, !tt.notExist, tt.notExist)
		}
	}
}

// TestConcurrentPathWhileCgroupsComeAndGo runs lookups, walks, ID, Prune and forgetting together
// under -race, while cgroups appear and vanish mid-walk.
func TestConcurrentPathWhileCgroupsComeAndGo(t *testing.T) {
	mount := fakeTree(t, fakeCgroups...)
	r := NewResolver(mount)
	r.minRewalk = 0
	stable := map[uint64]string{}
	for _, d := range fakeCgroups {
		stable[inodeOf(t, filepath.Join(mount, d))] = d
	}

	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Add(1)
	go func() {
		defer churn.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			dir := filepath.Join(mount, "churn.slice", fmt.Sprintf("c%d.scope", i%8), "sub")
			os.MkdirAll(dir, 0o755)
			os.RemoveAll(filepath.Dir(dir))
		}
	}()

	var lookups sync.WaitGroup
	for g := 0; g < 8; g++ {
		lookups.Add(1)
		go func() {
			defer lookups.Done()
			for i := 0; i < 100; i++ {
				switch {
				case g == 0 && i%10 == 0:
					forgetAll(r) // the next lookups walk again
				case g == 0 && i%10 == 5:
					r.Prune()
				case g == 1:
					if _, err := r.ID("/system.slice/nginx.service"); err != nil {
						t.Error(err)
						return
					}
				default:
					r.Path(uint64(1<<40 + i)) // unknown: walks
				}
				for id, want := range stable {
					if got, ok := r.Path(id); !ok || got != want {
						t.Errorf("Path(%d) = %q, %v during churn; want %q", id, got, ok, want)
						return
					}
				}
			}
		}()
	}
	lookups.Wait()
	close(stop)
	churn.Wait()
}

func TestMissingMountResolvesNothing(t *testing.T) {
	r := NewResolver(filepath.Join(t.TempDir(), "no-such-mount"))
	if got, ok := r.Path(1); ok {
		t.Errorf("Path(1) = %q on a missing mount; want a miss", got)
	}
}
