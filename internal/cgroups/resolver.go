package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// defaultMinRewalk bounds how often unknown ids make the Resolver walk the whole tree.
const defaultMinRewalk = time.Second

// Resolver maps cgroup ids to paths relative to the mount ("/system.slice/nginx.service";
// the root is "/"). A cgroup's id is the inode number of its directory in cgroup2fs, which
// on 64-bit kernels equals the kernel's cgroup id (kernfs node id); on 32-bit kernels the
// two differ and no id resolves. Safe for concurrent use.
type Resolver struct {
	mount     string
	minRewalk time.Duration // tests shorten or lengthen it

	walkMu sync.Mutex // one walk at a time; taken before mu, so lookups that hit never wait for a walk

	mu       sync.RWMutex
	paths    map[uint64]string
	lastWalk time.Time
	// goneAtLastPrune holds the cached ids Prune found removed: the next
	// Prune forgets them.
	goneAtLastPrune map[uint64]struct{}
}

// NewResolver returns a Resolver for the cgroup2 hierarchy mounted at mount (see
// FindMount). It walks the tree on the first Path call that misses.
func NewResolver(mount string) *Resolver {
	return &Resolver{
		mount:     filepath.Clean(mount),
		minRewalk: defaultMinRewalk,
		paths:     make(map[uint64]string),
	}
}

// Path returns the cgroup's path. On a cache miss it re-walks the tree, at most once per
// minRewalk (1 s): ids the kernel reports for cgroups that never resolve (already removed,
// or outside the mount) would otherwise cost a walk each; further misses within that time
// return false. Ids whose cgroup was removed stay cached until Prune, so counts taken just
// before the removal still get their path.
func (r *Resolver) Path(id uint64) (string, bool) {
	if p, ok := r.cached(id); ok {
		return p, true
	}

	r.walkMu.Lock()
	defer r.walkMu.Unlock()
	// Another caller may have walked while this one waited.
	r.mu.RLock()
	p, ok := r.paths[id]
	last := r.lastWalk
	r.mu.RUnlock()
	if ok {
		return p, true
	}
	if !last.IsZero() && time.Since(last) < r.minRewalk {
		return "", false
	}

	p, ok = r.walkLocked()[id]
	return p, ok
}

// Learn caches a cgroup's path as its creation record gave it (from the hierarchy's root),
// so that a cgroup removed before any walk still resolves. The record's path is taken only
// where it leads to that cgroup, or, the cgroup gone already, where its parent is: a path
// from another cgroup namespace's root (a runtime in a container) would name the wrong
// cgroup. A path a walk found wins.
func (r *Resolver) Learn(id uint64, path string) {
	if !strings.HasPrefix(path, "/") {
		return
	}
	if _, ok := r.cached(id); ok {
		return
	}
	path = filepath.Clean(path)
	fi, err := os.Stat(filepath.Join(r.mount, path))
	switch {
	case err == nil:
		if !fi.IsDir() || inode(fi) != id {
			return
		}
	case errors.Is(err, fs.ErrNotExist):
		parent, err := os.Stat(filepath.Join(r.mount, filepath.Dir(path)))
		if err != nil || !parent.IsDir() {
			return
		}
	default:
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.paths[id]; !ok {
		r.paths[id] = path
	}
}

// Removed returns those of ids whose cgroup was removed: its cached path leads nowhere, or
// to another cgroup (cgroup2 cannot rename, so a cgroup never moves). An id not cached is
// not reported (and not looked for: no walk), for it may be a cgroup outside the mount.
func (r *Resolver) Removed(ids []uint64) map[uint64]struct{} {
	gone := make(map[uint64]struct{})
	for _, id := range ids {
		if p, ok := r.cached(id); ok && removed(r.mount, p, id) {
			gone[id] = struct{}{}
		}
	}
	return gone
}

// removed reports whether path no longer leads to the cgroup id: nothing is there, or another
// cgroup is. Other errors (permissions) tell nothing.
func removed(mount, path string, id uint64) bool {
	fi, err := os.Stat(filepath.Join(mount, path))
	if err != nil {
		return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
	}
	return !fi.IsDir() || inode(fi) != id
}

// refresh walks the tree and caches what it finds, keeping the ids it does not find; it
// returns what it found.
func (r *Resolver) refresh() map[uint64]string {
	r.walkMu.Lock()
	defer r.walkMu.Unlock()
	return r.walkLocked()
}

// walkLocked is refresh with walkMu held.
func (r *Resolver) walkLocked() map[uint64]string {
	found := walk(r.mount)
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, p := range found {
		r.paths[id] = p
	}
	r.lastWalk = time.Now()
	return found
}

func (r *Resolver) cached(id uint64) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.paths[id]
	return p, ok
}

// ID stats a path (relative to the mount, or absolute under it) and returns its id.
func (r *Resolver) ID(path string) (uint64, error) {
	abs := path
	if abs != r.mount && !strings.HasPrefix(abs, r.mount+"/") {
		abs = filepath.Join(r.mount, path)
	}
	abs = filepath.Clean(abs)
	rel, ok := relative(r.mount, abs)
	if !ok {
		return 0, fmt.Errorf("cgroup %q: not under the cgroup2 mount %s", path, r.mount)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return 0, fmt.Errorf("cgroup %q: %w", path, err)
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("cgroup %q: %s is not a directory, so not a cgroup", path, abs)
	}
	id := inode(fi)

	r.mu.Lock()
	r.paths[id] = rel
	r.mu.Unlock()
	return id, nil
}

// Prune forgets the cgroups that were already gone at the last Prune, and returns how
// many ids it forgot. A removed cgroup keeps its path for one interval more, for the counts
// taken just before its removal; without pruning, a host whose containers come and go would
// grow the cache for ever. It walks the tree once. The daemon prunes every PruneInterval.
func (r *Resolver) Prune() int {
	found := r.refresh()
	if len(found) == 0 {
		return 0 // the mount itself unreadable: nothing can be told gone
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	gone := make(map[uint64]struct{})
	forgot := 0
	for id := range r.paths {
		if _, ok := found[id]; ok {
			continue
		}
		if _, before := r.goneAtLastPrune[id]; before {
			delete(r.paths, id)
			forgot++
		} else {
			gone[id] = struct{}{}
		}
	}
	r.goneAtLastPrune = gone
	return forgot
}

// PruneInterval is how often the daemon prunes: a removed cgroup is forgotten 10 to 20
// minutes after, long after the scrapes that count its last calls.
const PruneInterval = 10 * time.Minute

// walk maps the id of every cgroup under mount to its path. Cgroups come and go during
// the walk; one that vanishes (ENOENT) or cannot be read is skipped with its subtree, so
// one bad directory does not cost all the others.
func walk(mount string) map[uint64]string {
	found := make(map[uint64]string)
	// The callback returns no errors, so neither does WalkDir.
	_ = filepath.WalkDir(mount, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return skip(d)
		}
		fi, err := d.Info()
		if err != nil {
			return fs.SkipDir
		}
		if rel, ok := relative(mount, path); ok {
			found[inode(fi)] = rel
		}
		return nil
	})
	return found
}

// skip leaves out a directory's subtree, and nothing for files (cgroupfs's interface files)
// or the unreadable mount itself (d nil).
func skip(d fs.DirEntry) error {
	if d != nil && d.IsDir() {
		return fs.SkipDir
	}
	return nil
}

// relative turns a path under mount into a cgroup path: "/" for the mount itself.
func relative(mount, path string) (string, bool) {
	rel, err := filepath.Rel(mount, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	if rel == "." {
		return "/", true
	}
	return "/" + filepath.ToSlash(rel), true
}

func inode(fi fs.FileInfo) uint64 {
	return fi.Sys().(*syscall.Stat_t).Ino
}
