package counting

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/filter"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/tally"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

// Every command sizes the kernel's maps from the config: top and trace used
// to take the loader's defaults whatever the config said.
func TestLoaderOptionsTakeTheConfigsMaps(t *testing.T) {
	cfg := config.Default()
	cfg.Latency = config.LatencyOff
	cfg.Maps.StatsEntries, cfg.Maps.ErrorsEntries = 1234, 567
	cfg.Maps.GroupStatsEntries, cfg.Maps.GroupErrorsEntries = 89, 10
	cfg.Maps.RingBufferBytes, cfg.Events.RingBufferBytes = 1<<16, 1<<17
	o := LoaderOptions(cfg, "raw_tracepoint", "/tmp/btf")
	if o.Latency || o.StatsEntries != 1234 || o.ErrorsEntries != 567 || o.GroupStatsEntries != 89 ||
		o.GroupErrorsEntries != 10 || o.RingBufferBytes != 1<<16 || o.EventsRingBufferBytes != 1<<17 ||
		o.Attach != "raw_tracepoint" || o.KernelBTF != "/tmp/btf" {
		t.Errorf("LoaderOptions = %+v, not the config's", o)
	}
	if o := LoaderOptions(cfg, "auto", ""); o.Attach != "" || o.KernelBTF == "" {
		t.Errorf("auto and no BTF path: Attach %q, KernelBTF %q; want both tried, the kernel's BTF", o.Attach, o.KernelBTF)
	}
}

func TestLoaderOptionsSampleOnlyWithSampledLatency(t *testing.T) {
	cfg := config.Default()
	cfg.LatencySampleEvery = 64
	for _, tt := range []struct {
		mode  config.LatencyMode
		on    bool
		every uint32
	}{{config.LatencyEvery, true, 0}, {config.LatencySampled, true, 64}, {config.LatencyOff, false, 0}} {
		cfg.Latency = tt.mode
		if o := LoaderOptions(cfg, "auto", ""); o.Latency != tt.on || o.LatencySampleEvery != tt.every {
			t.Errorf("latency: %v: Latency %v, LatencySampleEvery %d; want %v, %d", tt.mode, o.Latency, o.LatencySampleEvery, tt.on, tt.every)
		}
	}
}

func TestStartWithoutAFilterIsRefused(t *testing.T) {
	if _, err := Start(Options{Config: config.Default()}, zap.NewNop()); err == nil {
		t.Fatal("Start without a filter: no error")
	}
}

// Start counts a process exactly through its engine, and Close stops the
// engine and detaches, once, however often it is called.
func TestStartCountsAndCloseDetaches(t *testing.T) {
	testenv.RequireRoot(t)
	workload := testenv.BuildWorkload(t, t.TempDir())
	cfg := config.Default()
	f, err := filter.Compile(config.Filters{Include: config.Match{Syscalls: []string{"getppid"}}}, config.Events{}, syscalls.Host(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(Options{Config: cfg, Filter: f, Engine: true, Labels: tally.LabelSet(tally.LabelComm)}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	comm := "cnt" + time.Now().Format("150405")
	link := t.TempDir() + "/" + comm
	if err := os.Symlink(workload, link); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(link, "getppid-only", "321").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var got uint64
	ok := testenv.Eventually(3*time.Second, func() bool {
		snap, err := c.Engine.Snapshot(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		got = 0
		for k, v := range snap.Calls {
			if k.Comm == comm {
				got += v.Calls
			}
		}
		return got == 321
	})
	if !ok {
		t.Fatalf("%s: %d getppid counted, want 321", comm, got)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-c.Stopped():
	default:
		t.Fatal("engine still running after Close")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
