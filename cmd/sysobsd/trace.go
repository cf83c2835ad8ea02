package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/counting"
	"github.com/sysobsd/sysobsd/internal/filter"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/notable"
	"github.com/sysobsd/sysobsd/internal/strace"
	"github.com/sysobsd/sysobsd/internal/syscalls"
)

type traceOptions struct {
	pids     []uint32
	comms    []string
	syscalls []string
	errnos   []string
	slow     time.Duration
	strlen   int
	output   string
	duration time.Duration
}

func addTraceCommand(app *kingpin.Application, o *traceOptions) {
	cmd := app.Command("trace", "Stream failed and slow calls host-wide, one strace-like line each, until Ctrl-C.")
	cmd.Flag("pid", "Only this process (and its children); repeatable.").Short('p').Uint32ListVar(&o.pids)
	cmd.Flag("comm", "Only processes of this name; repeatable.").StringsVar(&o.comms)
	cmd.Flag("syscall", "Only this syscall; repeatable.").StringsVar(&o.syscalls)
	cmd.Flag("errno", "Only calls failing with this errno (EACCES); repeatable.").StringsVar(&o.errnos)
	cmd.Flag("slow", "Also calls that take at least this long (0: failed calls only).").DurationVar(&o.slow)
	cmd.Flag("strlen", "Longest path shown (at most 510); longer ones end in ...").Short('s').Default("256").IntVar(&o.strlen)
	cmd.Flag("output", "text (strace-like lines) or json (one object per line).").Default("text").StringVar(&o.output)
	cmd.Flag("duration", "Stop after this long (0: until Ctrl-C).").DurationVar(&o.duration)
}

// traceEvents are the notable events trace asks the kernel for: failed
// calls (only --errno's, if given) and slow ones.
func traceEvents(o traceOptions, cfg config.Config) (config.Events, error) {
	// Two bytes over -s: a path of exactly -s bytes is then not mistaken for a cut one.
	ev := config.Events{Enabled: true, Errors: true, Slow: o.slow, RateLimit: cfg.Events.RateLimit, PathMax: o.strlen + 2}
	if len(o.errnos) == 0 {
		ev.IgnoreErrnos = cfg.Events.IgnoreErrnos
		return ev, nil
	}
	for _, name := range o.errnos {
		if _, ok := syscalls.ErrnoNumber(name); !ok {
			return ev, fmt.Errorf("trace: --errno %s: unknown errno; give a name such as EACCES", name)
		}
	}
	// Only the errnos asked for: every other one is ignored.
	for n := uint32(1); n < 4096; n++ {
		if name := syscalls.ErrnoName(n); !slices.Contains(o.errnos, name) {
			ev.IgnoreErrnos = append(ev.IgnoreErrnos, name)
		}
	}
	return ev, nil
}

func runTrace(opts options, cfg config.Config, stdout io.Writer, log *zap.Logger) error {
	o := opts.trace
	if err := oneOf("output", o.output, "text", "json"); err != nil {
		return err
	}
	if o.strlen < 1 || o.strlen > loader.PathCapture-2 {
		return fmt.Errorf("trace: -s %d is out of range; allowed: 1 to %d", o.strlen, loader.PathCapture-2)
	}
	ev, err := traceEvents(o, cfg)
	if err != nil {
		return err
	}
	match := config.Match{PIDs: o.pids, Comms: o.comms, Syscalls: o.syscalls}
	f, err := filter.Compile(config.Filters{Include: match}, ev, syscalls.Host(), nil)
	if err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	if len(o.pids) > 0 {
		f.Follow()
	}
	// Latency on whatever the config says: every line shows its call's time.
	c, err := counting.Start(counting.Options{
		Config: cfg, ForceLatency: true, Filter: f, KernelBTF: opts.kernelBTF, Attach: opts.attachMode,
	}, log)
	if err != nil {
		return err
	}
	defer c.Close()
	probes := c.Probes
	reader, err := notable.NewReader(probes.NotableEvents(), notable.NewDecoder(syscalls.Host(), counting.ProcRoot, o.strlen+2))
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	go func() { <-ctx.Done(); reader.Close() }()

	enc := json.NewEncoder(stdout)
	var writeErr error
	reader.Run(func(n notable.Event) {
		if writeErr != nil {
			return
		}
		if o.output == "json" {
			writeErr = enc.Encode(n)
		} else {
			_, writeErr = fmt.Fprintln(stdout, strace.Line(n, o.strlen))
		}
		if writeErr != nil { // a closed pipe (trace | head): stop reading
			stop()
		}
	})
	drops, err := probes.ReadDrops()
	if err == nil {
		for i, reason := range loader.DropReasons {
			if i < len(drops) && drops[i] > 0 && (reason == "notable_rate_limited" || reason == "notable_ringbuf_full") {
				log.Warn("events not shown", zap.String("reason", reason), zap.Uint64("count", drops[i]))
			}
		}
	}
	if writeErr != nil {
		return fmt.Errorf("trace: write: %w", writeErr)
	}
	return nil
}
