package loader

import (
	"os"
	"runtime"
	"testing"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// A syscall filter set while the hooks run takes effect, and so does its
// removal: the start slots tell the hooks when to read the settings, and
// when they need not (every filter off).
func TestFiltersSetWhileAttachedTakeEffectBothWays(t *testing.T) {
	testenv.RequireRoot(t)
	for _, latency := range []bool{true, false} {
		t.Run(map[bool]string{true: "latency", false: "no latency"}[latency], func(t *testing.T) { filterWhileAttached(t, latency) })
	}
}

func filterWhileAttached(t *testing.T, latency bool) {
	opts := DefaultOptions()
	opts.ExcludeTGID = 0 // the calls are this process's own
	opts.Latency = latency
	probes, err := Load(opts, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer probes.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid := uint32(os.Getpid())
	counted := func(nr uint16) (n uint64) {
		t.Helper()
		if err := probes.Stats().Read(func(k SyscallKey, c Counts) {
			if k.Tgid == pid && k.Nr == nr && k.Abi == 0 {
				n += c.Calls
			}
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	set := func(f KernelFilters) {
		t.Helper()
		if err := probes.SetFilters(f); err != nil {
			t.Fatal(err)
		}
		want := uint32(boolByte(settingsOn(f.Settings)))
		for i, s := range probes.startSlots {
			if s.FiltersOn != want {
				t.Fatalf("start slot %d: filters_on %d, want %d", i, s.FiltersOn, want)
			}
		}
	}
	onlyGetuid := KernelFilters{Settings: FilterSettings{SyscallFilter: 1}, SyscallAllowed: make([]bool, ABIs*NRSlots)}
	onlyGetuid.SyscallAllowed[unix.SYS_GETUID] = true

	set(onlyGetuid)
	for range 10 {
		unix.Getppid()
		unix.Getuid()
	}
	if p, u := counted(unix.SYS_GETPPID), counted(unix.SYS_GETUID); p != 0 || u != 10 {
		t.Errorf("latency %v, only getuid counted: %d getppid, %d getuid; want 0, 10", latency, p, u)
	}
	set(KernelFilters{})
	for range 7 {
		unix.Getppid()
	}
	if p := counted(unix.SYS_GETPPID); p != 7 {
		t.Errorf("latency %v, filter off again: %d getppid, want 7", latency, p)
	}
}
