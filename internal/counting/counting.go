// Package counting starts sysobsd's counting the one way every command
// uses: the loader options from the config, the filter in the kernel before
// the first syscall is counted, the programs attached, and the tally engine
// running. serve, stat, trace and top differ only in what they ask for.
package counting

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/internal/cgroups"
	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/filter"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/tally"
)

// ProcRoot is where the running processes are read.
const ProcRoot = "/proc"

// Options say what to count and how.
type Options struct {
	// Config gives the map sizes, latency, fold interval and event ring
	// buffer; a command that needs every call's entry time (stat, trace,
	// top) sets ForceLatency instead of editing it (sampled latency too).
	Config       config.Config
	ForceLatency bool
	// Filter decides which processes and syscalls are counted; it is in
	// the kernel before the syscall hooks attach.
	Filter *filter.Filter
	// NewProcessesOnly skips the scan of running processes: a command
	// started after the attach is listed at its exec (sysobsd stat).
	NewProcessesOnly bool
	// Attach is "tp_btf" or "raw_tracepoint"; "" or "auto" tries both.
	Attach    string
	KernelBTF string
	// Engine runs a tally engine with these labels, limits and cgroup
	// resolver; without it only the programs are loaded (sysobsd trace).
	Engine  bool
	Labels  tally.LabelSet
	Limits  tally.Limits
	Cgroups *cgroups.Resolver
}

// Counting is the attached programs and, when asked for, the engine that
// folds and reads their counts.
type Counting struct {
	Probes *loader.Probes
	Engine *tally.Engine
	cancel context.CancelFunc
	// stopped is closed when the engine has returned, with its error in
	// engineErr.
	stopped   chan struct{}
	engineErr error
	closed    bool
}

// LoaderOptions are the loader's options for a config.
func LoaderOptions(cfg config.Config, attach, kernelBTF string) loader.Options {
	o := loader.DefaultOptions()
	o.Latency = cfg.Latency.On()
	if cfg.Latency == config.LatencySampled {
		o.LatencySampleEvery = cfg.LatencySampleEvery
	}
	o.CallSlots = cfg.Maps.CallSlotsPerCPU
	o.StatsEntries = cfg.Maps.StatsEntries
	o.ErrorsEntries = cfg.Maps.ErrorsEntries
	o.GroupStatsEntries = cfg.Maps.GroupStatsEntries
	o.GroupErrorsEntries = cfg.Maps.GroupErrorsEntries
	o.RingBufferBytes = cfg.Maps.RingBufferBytes
	o.EventsRingBufferBytes = cfg.Events.RingBufferBytes
	if attach != "auto" {
		o.Attach = attach
	}
	if kernelBTF != "" {
		o.KernelBTF = kernelBTF
	}
	return o
}

// Start loads and attaches the programs with the filter in place and, with
// opts.Engine, starts the engine. On error nothing stays loaded.
func Start(opts Options, log *zap.Logger) (*Counting, error) {
	if opts.Filter == nil {
		return nil, errors.New("counting: no filter (compile one, even empty)")
	}
	loadOpts := LoaderOptions(opts.Config, opts.Attach, opts.KernelBTF)
	if opts.ForceLatency {
		loadOpts.Latency, loadOpts.LatencySampleEvery = true, 0 // every call: strace -c's times
	}
	loadOpts.Prepare = func(p *loader.Probes) error {
		if opts.NewProcessesOnly {
			return p.SetFilters(opts.Filter.Kernel())
		}
		return filter.Apply(&p.Maps, opts.Filter, ProcRoot)
	}
	probes, err := loader.Load(loadOpts, log)
	if err != nil {
		return nil, err
	}
	c := &Counting{Probes: probes}
	if !opts.Engine {
		return c, nil
	}
	c.Engine, err = tally.NewEngine(&probes.Maps, ProcRoot, tally.EngineOptions{
		Labels: opts.Labels, Limits: opts.Limits, Cgroups: opts.Cgroups,
	}, log)
	if err != nil {
		probes.Close()
		return nil, err
	}
	if opts.Config.FoldInterval > 0 {
		c.Engine.FoldEvery = opts.Config.FoldInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.stopped = make(chan struct{})
	go func() {
		c.engineErr = c.Engine.Run(ctx)
		close(c.stopped)
	}()
	return c, nil
}

// Stopped is closed when the engine has stopped (never without an engine);
// Err then says why.
func (c *Counting) Stopped() <-chan struct{} { return c.stopped }

// Err is the engine's error once Stopped is closed.
func (c *Counting) Err() error { return c.engineErr }

// Close stops the engine and detaches the programs. It returns the
// engine's error if it failed while stopping (one that stopped it earlier
// is Err's), joined with the detach's. Closing again does nothing.
func (c *Counting) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	var engineErr error
	if c.cancel != nil {
		select {
		case <-c.stopped: // stopped on its own: Err has told the caller
		default:
			c.cancel()
			<-c.stopped
			engineErr = c.engineErr
		}
		c.cancel = nil
	}
	return errors.Join(engineErr, c.Probes.Close())
}
