package loader

import (
	"os"
	"testing"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// SetSyscallHooks(false) stops the counting and SetSyscallHooks(true)
// resumes it into the same maps: getppid calls made while the hooks are off
// are not counted, the others are, exactly; switching twice the same way
// changes nothing (a second attach would count every call twice). In both
// attach modes, with and without sys_enter.
func TestSetSyscallHooksStopsAndResumesCounting(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range []struct {
		mode    string
		latency bool
	}{{"tp_btf", true}, {"tp_btf", false}, {"raw_tracepoint", true}} {
		latency := c.latency
		t.Run(c.mode+map[bool]string{true: ", latency", false: ", no latency"}[latency], func(t *testing.T) {
			opts := DefaultOptions()
			opts.ExcludeTGID = 0 // the calls are this process's own
			opts.Latency = latency
			opts.Attach = c.mode
			probes, err := Load(opts, zaptest.NewLogger(t))
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			defer probes.Close()
			if probes.AttachMode != c.mode {
				t.Fatalf("attached as %s, want %s", probes.AttachMode, c.mode)
			}
			pid := uint32(os.Getpid())
			counted := func() (calls, ns uint64) {
				t.Helper()
				err := probes.Stats().Read(func(k SyscallKey, c Counts) {
					if k.Tgid == pid && k.Nr == unix.SYS_GETPPID && k.Abi == 0 {
						calls += c.Calls
						ns += c.NS
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				return calls, ns
			}
			getppid := func(n int) {
				for range n {
					unix.Getppid() // the Go runtime never calls getppid itself
				}
			}
			set := func(on bool) {
				t.Helper()
				if err := probes.SetSyscallHooks(on); err != nil {
					t.Fatalf("SetSyscallHooks(%v): %v", on, err)
				}
			}
			want := func(what string, calls uint64) {
				t.Helper()
				if got, _ := counted(); got != calls {
					t.Errorf("%s: %d getppid calls counted, want %d", what, got, calls)
				}
			}

			getppid(100)
			want("attached by Load", 100)
			set(false)
			set(false)
			getppid(50)
			want("hooks off", 100)
			set(true)
			set(true)
			getppid(25)
			want("hooks on again", 125)
			if _, ns := counted(); latency != (ns > 0) {
				t.Errorf("latency %v: %d ns counted", latency, ns)
			}
		})
	}
}
