package tally

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

// A scrape asked for while the engine is busy serving another request is
// served after a drain of its own: a process that exited just before the
// scrape was asked for is counted under its name. Before, the scrape was
// served from the drain that preceded the busy request, which had none of
// the process's records: its calls were left out, or exported under a stale
// name (seen in the 6.1 VM when a slow fold ran while a test's processes
// exited).
func TestScrapeQueuedBehindABusyRequestSeesRecordsSentBeforeIt(t *testing.T) {
	_, engine, ctx := runEngine(t, loader.DefaultOptions())

	// Hold the engine in a request, as a slow fold would.
	busy, release := make(chan struct{}), make(chan struct{})
	go engine.do(ctx, request{change: func(*Tally) { close(busy); <-release }})
	<-busy

	// A process runs and exits: its records are in the ring buffer, not
	// applied (the engine is busy).
	comm := fmt.Sprintf("sobsq%d", time.Now().UnixNano()%1_000_000_000)
	link := filepath.Join(t.TempDir(), comm)
	if err := os.Symlink("/bin/true", link); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(link).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", link, err, out)
	}

	// The scrape is queued behind the busy request, then the engine goes on.
	got := make(chan *Snapshot, 1)
	go func() {
		snap, err := engine.Snapshot(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- snap
	}()
	if !testenv.Eventually(5*time.Second, func() bool { return len(engine.requests) > 0 }) {
		t.Fatal("the scrape was not queued")
	}
	close(release)
	snap := <-got
	if snap == nil {
		t.FailNow()
	}
	// execve returns once in the new program, under its name.
	nr, _ := syscalls.Host().Number(syscalls.Native, "execve")
	key := SeriesKey{Labels: Labels{Comm: comm}, Syscall: Syscall{ABI: 0, NR: uint16(nr)}}
	if c := snap.Calls[key]; c.Calls != 1 {
		t.Errorf("%s's execve = %d calls in the scrape, want 1", comm, c.Calls)
	}
}

// Records lost while the engine runs (held in a request here, as a daemon
// starved of CPU would be) are found by the engine's own folds: no scrape
// asks, and no exit record comes to prompt a fold. CI's churn lost 10% of
// its records this way and left processes' entries in the kernel until the
// 30 s sweep.
func TestEngineFoldsForLostRecordsWithoutAScrape(t *testing.T) {
	opts := loader.DefaultOptions()
	opts.RingBufferBytes = uint32(os.Getpagesize())
	probes, engine, ctx := runEngine(t, opts) // its first sync starts the sweep's clock

	busy, release := make(chan struct{}), make(chan struct{})
	go engine.do(ctx, request{change: func(*Tally) { close(busy); <-release }})
	<-busy
	// Fill the ring buffer nobody reads with records that end no process
	// (a shell renaming itself; more than a page of them whatever the page
	// size), then run processes whose every record is lost.
	renames := os.Getpagesize() / 16
	fill := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do printf x$i >/proc/self/comm; i=$((i+1)); done`, renames)
	if out, err := exec.Command("sh", "-c", fill).CombinedOutput(); err != nil {
		t.Fatalf("sh: %v: %s", err, out)
	}
	lostBefore := lifecycleLost(t, probes)
	churned := make(map[uint32]bool)
	for range 100 {
		cmd := exec.Command("/bin/true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		churned[uint32(cmd.Process.Pid)] = true
	}
	if lost := lifecycleLost(t, probes) - lostBefore; lost < 3*100 {
		t.Fatalf("%d lifecycle records lost for 100 processes, want every fork, exec and exit (the ring buffer was to be full)", lost)
	}
	close(release)

	var left int
	freed := testenv.Eventually(10*time.Second, func() bool {
		left = 0
		err := probes.ReadProcessKeys(func(k loader.ErrnoKey) {
			if churned[k.Tgid] {
				left++
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return left == 0
	})
	if !freed {
		t.Errorf("%d kernel entries of processes whose every record was lost left 10 s after, with no scrape; want 0", left)
	}
}

func lifecycleLost(t *testing.T, probes *loader.Probes) uint64 {
	t.Helper()
	drops, err := probes.ReadDrops()
	if err != nil {
		t.Fatal(err)
	}
	return drops[loader.DropLifecycleRecord]
}

// runEngine loads the programs with opts and runs an engine over them until
// the test ends; it returns once the engine has served a first snapshot.
func runEngine(t *testing.T, opts loader.Options) (*loader.Probes, *Engine, context.Context) {
	t.Helper()
	testenv.RequireRoot(t)
	log := zaptest.NewLogger(t)
	probes, err := loader.Load(opts, log)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { probes.Close() })
	engine, err := NewEngine(&probes.Maps, "/proc", EngineOptions{Labels: LabelSet(LabelComm), Limits: DefaultLimits}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- engine.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine: %v", err)
		}
	})
	if _, err := engine.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	return probes, engine, ctx
}
