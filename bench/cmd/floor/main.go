// Command floor attaches the benchmark's floor: empty BPF programs on
// tp_btf/sys_enter and tp_btf/sys_exit (with --exit-only, sys_exit only;
// with --clock, programs that read the clock at entry and exit and no more).
// It prints "attached" once both are in place and detaches on SIGTERM or
// SIGINT. Used by bench/run.sh; needs root (or CAP_BPF and CAP_PERFMON).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sysobsd/sysobsd/bench/floor"
)

func main() {
	exitOnly := flag.Bool("exit-only", false, "attach the sys_exit program only")
	clock := flag.Bool("clock", false, "attach the clock-only programs")
	flag.Parse()
	mode := floor.Empty
	switch {
	case *exitOnly && *clock:
		fmt.Fprintln(os.Stderr, "floor: --exit-only and --clock exclude each other")
		os.Exit(2)
	case *exitOnly:
		mode = floor.ExitOnly
	case *clock:
		mode = floor.ClockOnly
	}

	// Block the signals before attaching, so that none is missed.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	a, err := floor.Attach(mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	fmt.Println("attached")
	<-sig
	if err := a.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "floor: detach:", err)
		os.Exit(1)
	}
}
