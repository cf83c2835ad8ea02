package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/counting"
	"github.com/sysobsd/sysobsd/internal/filter"
	"github.com/sysobsd/sysobsd/internal/inject"
	"github.com/sysobsd/sysobsd/internal/strace"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/tally"
)

type statOptions struct {
	pid     int
	output  string
	inject  []string
	bytes   bool
	command []string
}

func addStatCommand(app *kingpin.Application, o *statOptions) {
	cmd := app.Command("stat", "Run a command (or watch a pid) with its threads and children, then print strace -c's table: % time, seconds, usecs/call, calls, errors per syscall.")
	cmd.Flag("pid", "Watch this running process (and the children it starts) until it exits or Ctrl-C.").Short('p').IntVar(&o.pid)
	cmd.Flag("output", "Write the table to this file instead of stderr.").Short('o').StringVar(&o.output)
	cmd.Flag("bytes", "Add the bytes each read, write, send, recv (...) moved, and bytes per call, to the table: how the program buffers.").BoolVar(&o.bytes)
	cmd.Flag("expr", "Fault injection as strace's -e inject=SET:error=ERRNO|retval=N[:when=EXPR]...: the table counts injected calls as strace -c does. Repeatable; see sysobsd inject.").Short('e').PlaceHolder("inject=...").StringsVar(&o.inject)
	cmd.Arg("command", "The command to run, after --.").StringsVar(&o.command)
}

// gateEnv marks sysobsd stat's child: it blocks on fd 3 until the programs
// watch its pid, then execs the command, which is counted from its execve on.
const gateEnv = "SYSOBSD_STAT_GATE"

func gate() int {
	gate := os.NewFile(3, "gate")
	var b [1]byte
	if n, _ := gate.Read(b[:]); n != 1 {
		return 127 // the parent went away
	}
	gate.Close()
	path := os.Getenv(gateEnv)
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, gateEnv+"=") && !strings.HasPrefix(kv, inject.Env+"=") {
			env = append(env, kv)
		}
	}
	if os.Getenv(inject.Env) != "" {
		// fd 4 reports why the filter or the exec failed; closed by a
		// successful exec, it tells the parent nothing went wrong.
		report := os.NewFile(4, "report")
		syscall.CloseOnExec(4)
		err := inject.ExecChild(path, os.Args, env)
		_, _ = report.WriteString(err.Error())
		return 127
	}
	err := syscall.Exec(path, os.Args, env)
	fmt.Fprintf(os.Stderr, "sysobsd stat: exec %s: %v\n", path, err)
	return 127
}

// gatedCommand is stat's command, started stopped at a gate (a pipe) until
// the programs watch it, then let through to exec; with a fault injection
// plan, through the plan's seccomp filter.
type gatedCommand struct {
	cmd     *exec.Cmd
	release *os.File
	report  *os.File           // the child's error, with a plan
	inject  *inject.Supervisor // with a plan that needs one
}

// startGated starts command at the gate; on error, the exit status to give.
// verb names the subcommand in errors.
func startGated(verb string, command []string, plan *inject.Plan) (*gatedCommand, int, error) {
	path, err := exec.LookPath(command[0])
	if err != nil {
		return nil, 127, fmt.Errorf("%s: %w", verb, err)
	}
	if plan != nil {
		if err := inject.CheckTarget(path); err != nil {
			return nil, 1, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, 1, fmt.Errorf("%s: %w", verb, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, 1, fmt.Errorf("%s: %w", verb, err)
	}
	defer r.Close()
	cmd := exec.Command(self)
	cmd.Args = command
	cmd.Env = append(os.Environ(), gateEnv+"="+path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{r}
	g := &gatedCommand{cmd: cmd, release: w}
	var reportW *os.File
	if plan != nil {
		if g.report, reportW, err = os.Pipe(); err != nil {
			w.Close()
			return nil, 1, fmt.Errorf("%s: %w", verb, err)
		}
		defer reportW.Close()
		cmd.Env = append(cmd.Env, inject.Env+"="+plan.EnvValue())
		cmd.ExtraFiles = append(cmd.ExtraFiles, reportW)
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		if g.report != nil {
			g.report.Close()
		}
		return nil, 1, fmt.Errorf("%s: start %s: %w", verb, command[0], err)
	}
	if plan != nil && plan.Notify() {
		g.inject = inject.Supervise(cmd.Process.Pid, plan)
	}
	return g, 0, nil
}

// run lets the command through the gate and returns its exit status; with
// a plan, an error if the filter could not be installed or the exec failed
// (the command never ran), once every process holding the filter is gone.
func (g *gatedCommand) run() (int, error) {
	// A failed write closes the gate all the same: the command then ends
	// (its read fails) and its status says so.
	_, _ = g.release.Write([]byte{1})
	g.release.Close()
	g.release = nil
	code := exitCode(g.cmd.Wait())
	return code, g.finish()
}

func (g *gatedCommand) finish() error {
	var errs []error
	if g.inject != nil {
		errs = append(errs, g.inject.Finish())
		g.inject = nil
	}
	if g.report != nil {
		msg, _ := io.ReadAll(g.report)
		g.report.Close()
		g.report = nil
		if len(msg) > 0 {
			errs = append(errs, errors.New(string(msg)))
		}
	}
	return errors.Join(errs...)
}

// abandon ends a command never let through: it must not stay blocked.
func (g *gatedCommand) abandon() {
	if g.release != nil {
		g.release.Close()
		_ = g.cmd.Wait() // it ends at the closed gate; its status is not asked for
		_ = g.finish()
	}
}

// runStat returns the command's exit status (0 with -p).
func runStat(opts options, cfg config.Config, stdout, stderr io.Writer, log *zap.Logger) (int, error) {
	o := opts.stat
	plan, code, err := statPlan(o, stderr)
	if err != nil || code != 0 { // a usage error was printed: code 2, no error
		return code, err
	}
	out := stderr
	if o.output != "" {
		f, err := os.Create(o.output)
		if err != nil {
			return 1, fmt.Errorf("stat: -o %s: %w", o.output, err)
		}
		defer f.Close()
		out = f
	}

	root := o.pid
	var gated *gatedCommand
	if len(o.command) > 0 {
		var code int
		var err error
		if gated, code, err = startGated("stat", o.command, plan); err != nil {
			return code, err
		}
		defer gated.abandon()
		root = gated.cmd.Process.Pid
	} else if err := unix.Kill(root, 0); errors.Is(err, unix.ESRCH) {
		return 1, fmt.Errorf("stat: -p %d: no such process", root)
	}

	c, err := startStatCounting(opts, cfg, root, gated != nil, log)
	if err != nil {
		return 1, err
	}
	defer c.Close()

	// Ctrl-C reaches the command (same process group); sysobsd waits for
	// it to end and prints the table, as strace -c does.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)

	code = 0
	if gated != nil {
		if code, err = gated.run(); err != nil {
			return 1, fmt.Errorf("stat: %w", err)
		}
	} else {
		waitGone(root, signals)
	}

	snap, err := c.Engine.Snapshot(context.Background())
	if err != nil {
		return 1, err
	}
	if err := c.Close(); err != nil {
		return 1, err
	}
	write := strace.WriteTable
	if o.bytes {
		write = strace.WriteTableWithBytes
	}
	if err := write(out, statRows(snap)); err != nil {
		return 1, err
	}
	return code, nil
}

// statPlan checks stat's arguments and parses its -e inject= (nil
// without); otherwise the exit status to give (2 after a usage error it
// printed itself, with a nil error).
func statPlan(o statOptions, stderr io.Writer) (*inject.Plan, int, error) {
	if (o.pid == 0) == (len(o.command) == 0) {
		return nil, 2, errors.New("stat: give a command after -- or -p PID, not both; e.g. sysobsd stat -- ls /")
	}
	if len(o.inject) == 0 {
		return nil, 0, nil
	}
	if o.pid != 0 {
		code, err := usageError(stderr, errors.New("stat: -e inject= needs a command after --, not -p: the seccomp filter is installed before the command starts"))
		return nil, code, err
	}
	plan, err := inject.Parse(o.inject, syscalls.Host())
	if err != nil {
		code, err := usageError(stderr, fmt.Errorf("stat: %w", err))
		return nil, code, err
	}
	return plan, 0, nil
}

// startStatCounting counts root and the processes it starts. A command
// started here (gated) is not listed yet: its exec lists it, so the gate's
// own calls stay out. Latency on whatever the config says: the table has
// strace -c's time columns.
func startStatCounting(opts options, cfg config.Config, root int, gated bool, log *zap.Logger) (*counting.Counting, error) {
	f, err := filter.Compile(config.Filters{Include: config.Match{PIDs: []uint32{uint32(root)}}}, config.Events{}, syscalls.Host(), nil)
	if err != nil {
		return nil, err
	}
	f.Follow()
	return counting.Start(counting.Options{
		Config: cfg, ForceLatency: true, Filter: f, NewProcessesOnly: gated,
		KernelBTF: opts.kernelBTF, Attach: opts.attachMode, Engine: true,
	}, log)
}

// waitGone returns when the process is gone or a signal arrives.
func waitGone(pid int, signals <-chan os.Signal) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-signals:
			return
		case <-tick.C:
			if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
				return
			}
		}
	}
}

func exitCode(err error) int {
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		if err != nil {
			return 1
		}
		return 0
	}
	if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return exitErr.ExitCode()
}

// statRows turns a snapshot into one row per syscall name.
func statRows(snap *tally.Snapshot) []strace.Row {
	names := syscalls.Host()
	byName := make(map[string]*strace.Row)
	row := func(sc tally.Syscall) *strace.Row {
		name := names.Name(syscalls.ABI(sc.ABI), uint32(sc.NR))
		r := byName[name]
		if r == nil {
			r = &strace.Row{Syscall: name}
			byName[name] = r
		}
		return r
	}
	for k, v := range snap.Calls {
		r := row(k.Syscall)
		r.Calls += v.Calls
		r.Time += time.Duration(v.NS)
		r.Bytes += v.Bytes
		r.MovesBytes = syscalls.MovesBytes(r.Syscall)
	}
	for k, n := range snap.Errors {
		row(k.Syscall).Errors += n
	}
	rows := make([]strace.Row, 0, len(byName))
	for _, r := range byName {
		rows = append(rows, *r)
	}
	return rows
}
