package main

import (
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/inject"
	"github.com/sysobsd/sysobsd/internal/syscalls"
)

type injectOptions struct {
	exprs   []string
	command []string
}

func addInjectCommand(app *kingpin.Application, o *injectOptions) {
	cmd := app.Command("inject", "Run a command with syscall faults injected as strace -e inject= does, by a seccomp filter instead of ptrace: e.g. sysobsd inject -e inject=write:error=ENOSPC -- ./app. Follows threads and children; exits with the command's status.")
	cmd.Flag("expr", "inject=SET:error=ERRNO|retval=N[:when=N|N+|N+S|N..M|N..M+S][:signal=SIG][:delay_enter=D][:delay_exit=D], as strace's; repeatable.").Short('e').PlaceHolder("inject=...").Required().StringsVar(&o.exprs)
	cmd.Arg("command", "The command to run, after --.").StringsVar(&o.command)
}

// runInject returns the command's exit status (128+signal if killed).
func runInject(opts options, _ config.Config, _, stderr io.Writer, _ *zap.Logger) (int, error) {
	o := opts.inject
	plan, err := inject.Parse(o.exprs, syscalls.Host())
	if err != nil {
		return usageError(stderr, fmt.Errorf("inject: %w", err))
	}
	if len(o.command) == 0 {
		return usageError(stderr, errors.New("inject: give a command after --; e.g. sysobsd inject -e inject=write:error=ENOSPC -- ./app"))
	}
	gated, code, err := startGated("inject", o.command, plan)
	if err != nil { // 127 for a missing program, as a shell says
		fmt.Fprintf(stderr, "sysobsd: %s\n", oneLine(err))
		return code, nil
	}
	defer gated.abandon()
	// Ctrl-C reaches the command (same process group); sysobsd waits for it.
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT)
	defer signal.Reset(syscall.SIGINT, syscall.SIGQUIT)
	if code, err = gated.run(); err != nil {
		return 1, fmt.Errorf("inject: %w", err)
	}
	return code, nil
}

// usageError reports bad input on one line with exit status 2, as flag
// errors get (run's own failure path exits 1).
func usageError(stderr io.Writer, err error) (int, error) {
	fmt.Fprintf(stderr, "sysobsd: %s; see sysobsd --help\n", oneLine(err))
	return 2, nil
}
