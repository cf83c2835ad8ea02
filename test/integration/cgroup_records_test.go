package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/lifecycle"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

// A cgroup2 cgroup's removal sends one record with its id; a cgroup v1
// hierarchy's does not, for v1 numbers its cgroups on its own and the id
// could name a living cgroup2 cgroup. Read straight from the ring buffer,
// with a named v1 hierarchy of the test's own (any kernel can mount one).
func TestCgroupRemovalRecordOnlyForCgroup2(t *testing.T) {
	testenv.RequireRoot(t)
	v2 := makeCgroup(t, fmt.Sprintf("sysobsd-rec%d.scope", rand.IntN(1000000)))
	v2ID := testenv.Inode(t, v2)
	v1 := t.TempDir()
	name := fmt.Sprintf("sysobsdtest%d", rand.IntN(1000000))
	if err := unix.Mount("cgroup", v1, "cgroup", 0, "none,name="+name); err != nil {
		t.Fatalf("mount a named cgroup v1 hierarchy: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(v1, 0); err != nil {
			t.Errorf("unmount the v1 hierarchy: %v", err)
		}
	})
	v1Dir := filepath.Join(v1, "gone")
	if err := os.Mkdir(v1Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v1ID := testenv.Inode(t, v1Dir)

	opts := loader.DefaultOptions()
	probes, err := loader.Load(opts, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer probes.Close()
	reader, err := lifecycle.NewReader(probes.Lifecycle())
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	// v1 first: once the cgroup2 record is in, the v1 one would be too.
	if err := os.Remove(v1Dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(v2); err != nil {
		t.Fatal(err)
	}
	var gone []uint64
	ok := testenv.Eventually(5*time.Second, func() bool {
		err := reader.ReadAvailable(func(ev lifecycle.Record, err error) {
			if err == nil && ev.Kind == lifecycle.CgroupGone {
				gone = append(gone, ev.CgroupID)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range gone {
			if id == v2ID {
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no removal record for cgroup2 cgroup %d; records: %v", v2ID, gone)
	}
	for _, id := range gone {
		if id == v1ID && v1ID != v2ID {
			t.Errorf("a removal record for the v1 cgroup %d: v1 ids are another numbering", v1ID)
		}
	}
}
