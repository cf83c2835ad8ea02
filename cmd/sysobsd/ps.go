package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/counting"
	"github.com/sysobsd/sysobsd/internal/inflight"
	"github.com/sysobsd/sysobsd/internal/notable"
	"github.com/sysobsd/sysobsd/internal/strace"
	"github.com/sysobsd/sysobsd/internal/syscalls"
)

type psOptions struct {
	daemon string
	pids   []uint32
	comms  []string
	state  string
	minAge time.Duration
	strlen int
}

func addPsCommand(app *kingpin.Application, o *psOptions) {
	cmd := app.Command("ps", "What each thread inside a syscall is doing now, one line per thread, like strace -p on a frozen process but without stopping it: the call and its arguments, the file, the state and how long it has been inside. Asks the running daemon, which saw the calls begin; reads arguments from /proc (as root).")
	cmd.Flag("daemon", "The running daemon (host:port or URL).").Default("127.0.0.1" + defaultListenAddress).StringVar(&o.daemon)
	cmd.Flag("pid", "Only this process (repeatable).").Short('p').Uint32ListVar(&o.pids)
	cmd.Flag("comm", "Only processes of this name (repeatable).").StringsVar(&o.comms)
	cmd.Flag("state", "Only threads in this state: running, sleeping, uninterruptible, stopped.").StringVar(&o.state)
	cmd.Flag("min-age", "Only calls inside for at least this long, e.g. 2s.").DurationVar(&o.minAge)
	cmd.Flag("strlen", "Longest string argument shown, as strace -s.").Default("32").IntVar(&o.strlen)
}

func runPs(opts options, _ config.Config, stdout io.Writer, _ *zap.Logger) error {
	o := opts.ps
	if o.state != "" {
		if err := oneOf("state", o.state, "running", "sleeping", "uninterruptible", "stopped"); err != nil {
			return err
		}
	}
	threads, err := fetchInFlight(o.daemon)
	if err != nil {
		return err
	}
	for _, t := range threads {
		if !psWanted(o, t) {
			continue
		}
		ev, ok := describeInFlight(counting.ProcRoot, t)
		if !ok { // it returned meanwhile
			continue
		}
		if _, err := fmt.Fprintln(stdout, strace.InFlightLine(ev, t.State, t.Seconds, o.strlen)); err != nil {
			return fmt.Errorf("ps: write: %w", err)
		}
	}
	return nil
}

func psWanted(o psOptions, t inflight.Thread) bool {
	if len(o.pids) > 0 && !slices.Contains(o.pids, t.PID) {
		return false
	}
	if len(o.comms) > 0 && !slices.Contains(o.comms, processComm(counting.ProcRoot, t.PID, t.Comm)) {
		return false
	}
	return (o.state == "" || t.State == o.state) && t.Seconds >= o.minAge.Seconds()
}

// fetchInFlight asks the daemon which threads are inside a call now.
func fetchInFlight(addr string) ([]inflight.Thread, error) {
	body, err := newDaemonEndpoint(addr, "/api/v1/in_flight").get(&http.Client{Timeout: 10 * time.Second},
		"ps", " (sysobsd ps asks the daemon: it saw the calls begin)")
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return inflight.Decode(body)
}

// describeInFlight fills in what the daemon does not send: the process's
// name, the call's arguments (from /proc/PID/task/TID/syscall, while the
// thread is still inside that call), a path argument and an fd's file. false
// if the thread is no longer inside the call.
func describeInFlight(procRoot string, t inflight.Thread) (notable.Event, bool) {
	ev := notable.Event{PID: t.PID, TID: t.TID, Comm: processComm(procRoot, t.PID, t.Comm), Syscall: t.Syscall, Compat: t.Compat, NR: t.NR}
	task := filepath.Join(procRoot, strconv.Itoa(int(t.PID)), "task", strconv.Itoa(int(t.TID)))
	raw, err := os.ReadFile(filepath.Join(task, "syscall"))
	if err != nil {
		return ev, !os.IsNotExist(err) // gone: skip; no access: show without arguments
	}
	fields := strings.Fields(string(raw))
	if len(fields) < 7 || fields[0] != strconv.Itoa(int(t.NR)) {
		// "running", or another call: only a thread blocked in this very
		// call still shows its arguments; a running one is shown without.
		return ev, len(fields) > 0 && (fields[0] == "running" || fields[0] == strconv.Itoa(int(t.NR)))
	}
	for i := range ev.Args {
		v, err := strconv.ParseUint(strings.TrimPrefix(fields[i+1], "0x"), 16, 64)
		if err == nil {
			ev.Args[i] = v
		}
	}
	if t.Compat {
		return ev, true // i386 arguments are not decoded
	}
	if i, ok := syscalls.PathArg(t.Syscall); ok {
		ev.Path = readUserString(procRoot, t.PID, ev.Args[i], 4096)
	}
	if i, ok := syscalls.FDArg(t.Syscall); ok {
		if target, err := os.Readlink(filepath.Join(procRoot, strconv.Itoa(int(t.PID)), "fd", strconv.Itoa(int(int32(ev.Args[i]))))); err == nil {
			ev.FDPath = target
		}
	}
	return ev, true
}

// processComm is the process's name (its leader's), or the thread's.
func processComm(procRoot string, pid uint32, threadComm string) string {
	raw, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(int(pid)), "comm"))
	if err != nil {
		return threadComm
	}
	return strings.TrimSuffix(string(raw), "\n")
}

// readUserString reads a NUL-terminated string at addr in the process's
// memory ("" where it may not be read).
func readUserString(procRoot string, pid uint32, addr uint64, max int) string {
	f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(int(pid)), "mem"))
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, max)
	n, _ := f.ReadAt(buf, int64(addr))
	if i := bytes.IndexByte(buf[:n], 0); i >= 0 {
		return string(buf[:i])
	}
	if n == max {
		return string(buf[:n]) + "..."
	}
	return ""
}
