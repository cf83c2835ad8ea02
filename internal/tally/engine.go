package tally

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/cgroups"
	"github.com/sysobsd/sysobsd/internal/lifecycle"
	"github.com/sysobsd/sysobsd/internal/loader"
)

// Engine owns the lifecycle reader, the process table and the tally, and
// runs them on one goroutine: records are applied in the order the kernel
// sent them, and every fold or snapshot first drains the ring buffer, so a
// process that exited before a scrape is folded under its last name.
type Engine struct {
	reader   *lifecycle.Reader
	procs    *lifecycle.ProcessTable
	tally    *Tally
	log      *zap.Logger
	requests chan request
	done     chan struct{}
	batch    []request // scratch of serve

	// FoldEvery bounds how long exited processes keep kernel map entries.
	FoldEvery time.Duration

	decodeErrors uint64 // owned by the Run goroutine
}

type request struct {
	scrape bool
	// change, if set, runs on the engine goroutine (a reload).
	change func(*Tally)
	reply  chan result
}

type result struct {
	snap *Snapshot
	err  error
}

// ErrStopped is returned by Snapshot once the engine has stopped.
var ErrStopped = errors.New("sysobsd engine stopped")

// EngineOptions shape what the engine exports.
type EngineOptions struct {
	Labels LabelSet
	Limits Limits
	// Cgroups resolves cgroup ids for the unit, container and cgroup labels;
	// nil when cgroup2 is not mounted.
	Cgroups *cgroups.Resolver
}

// NewEngine reads maps' counters and lifecycle ring buffer; procRoot is /proc.
func NewEngine(maps *loader.Maps, procRoot string, opts EngineOptions, log *zap.Logger) (*Engine, error) {
	reader, err := lifecycle.NewReader(maps.Lifecycle())
	if err != nil {
		return nil, err
	}
	procs := lifecycle.NewProcessTable(procRoot)
	var resolver Cgroups
	if opts.Cgroups != nil {
		resolver = opts.Cgroups
		procs.CgroupOf = func(tgid uint32) (uint64, bool) {
			path, err := cgroups.ForPID(procRoot, int(tgid))
			if err != nil {
				return 0, false
			}
			id, err := opts.Cgroups.ID(path)
			return id, err == nil
		}
	}
	t := New(KernelOf(maps), procs, processAlive)
	t.SetLabels(opts.Labels, resolver)
	t.SetLimits(opts.Limits)
	return &Engine{
		reader:    reader,
		procs:     procs,
		tally:     t,
		log:       log,
		requests:  make(chan request, 16),
		done:      make(chan struct{}),
		FoldEvery: time.Second,
	}, nil
}

// apply takes a lifecycle record: the process table's, or a cgroup removal,
// which ends the tally's counts by name in that cgroup.
func (e *Engine) apply(ev lifecycle.Record) {
	switch ev.Kind {
	case lifecycle.CgroupGone:
		e.tally.CgroupRemoved(ev.CgroupID)
	case lifecycle.CgroupNew:
		e.tally.CgroupCreated(ev.CgroupID, ev.Path)
	default:
		e.procs.Apply(ev)
	}
}

// processAlive reports whether tgid still exists (zombies included).
func processAlive(tgid uint32) bool {
	err := unix.Kill(int(tgid), 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// Run applies lifecycle records and serves folds and snapshots until ctx
// ends. It returns after the reader is closed.
func (e *Engine) Run(ctx context.Context) error {
	defer close(e.done)
	if err := e.procs.Scan(); err != nil {
		e.reader.Close()
		return fmt.Errorf("scan running processes: %w", err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		ticker := time.NewTicker(e.FoldEvery)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				e.reader.Close()
				return
			case <-stop:
				return
			case <-ticker.C:
				select {
				case e.requests <- request{}:
					e.reader.Flush()
				default: // a request is already queued; it folds too
				}
			}
		}
	}()

	for {
		ev, err := e.reader.Next()
		switch {
		case err == nil:
			e.apply(ev)
		case errors.Is(err, lifecycle.ErrFlushed):
			e.serve()
		case errors.Is(err, lifecycle.ErrClosed):
			e.serve() // answer what is queued, from the final state
			return nil
		default:
			e.skipped(err)
		}
	}
}

func (e *Engine) skipped(err error) {
	e.decodeErrors++
	if e.decodeErrors == 1 {
		e.log.Warn("lifecycle record skipped; counted in sysobsd_lifecycle_decode_errors_total", zap.Error(err))
	}
}

// serve answers the queued requests, each batch after a drain of its own.
// The drain that woke the engine may have ended before a request came (a
// scrape queued while a slow fold ran): served from it, the scrape would
// miss the records of processes that exited just before it was asked for,
// and export their calls under stale names or none.
func (e *Engine) serve() {
	for {
		e.batch = e.batch[:0]
	queued:
		for {
			select {
			case req := <-e.requests:
				e.batch = append(e.batch, req)
			default:
				break queued
			}
		}
		if len(e.batch) == 0 {
			return
		}
		// Closed: the records already applied are the final state.
		_ = e.reader.ReadAvailable(func(ev lifecycle.Record, err error) {
			if err != nil {
				e.skipped(err)
				return
			}
			e.apply(ev)
		})
		e.tally.Drained()
		for _, req := range e.batch {
			e.handle(req)
		}
	}
}

func (e *Engine) handle(req request) {
	if req.change != nil {
		req.change(e.tally)
		req.reply <- result{}
		return
	}
	if !req.scrape {
		var err error
		due := e.procs.ExitedCount() > 0 || e.procs.ExecsSinceFold() > 0
		if !due {
			due, err = e.tally.SweepPending()
		}
		if due {
			err = e.tally.Fold()
		}
		if err != nil {
			e.log.Error("fold exited processes", zap.Error(err))
		}
		if req.reply != nil {
			req.reply <- result{err: err}
		}
		return
	}
	snap, err := e.tally.Snapshot()
	if snap != nil {
		snap.DecodeErrors = e.decodeErrors
	}
	req.reply <- result{snap, err}
}

// Reconfigure changes the labels and limits without losing a count.
func (e *Engine) Reconfigure(ctx context.Context, labels LabelSet, limits Limits) error {
	_, err := e.do(ctx, request{change: func(t *Tally) {
		t.SetLabels(labels, t.labeler.cgroups)
		t.SetLimits(limits)
	}})
	return err
}

// Fold drains the ring buffer and folds what exited or exec'd, as the
// engine does every FoldEvery.
func (e *Engine) Fold(ctx context.Context) error {
	_, err := e.do(ctx, request{})
	return err
}

// Snapshot drains the ring buffer, folds, and returns every series' totals.
func (e *Engine) Snapshot(ctx context.Context) (*Snapshot, error) {
	return e.do(ctx, request{scrape: true})
}

func (e *Engine) do(ctx context.Context, req request) (*Snapshot, error) {
	req.reply = make(chan result, 1)
	select {
	case e.requests <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-e.done:
		return nil, ErrStopped
	}
	e.reader.Flush()
	select {
	case r := <-req.reply:
		return r.snap, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-e.done:
		// Run may have answered just before it stopped.
		select {
		case r := <-req.reply:
			return r.snap, r.err
		default:
			return nil, ErrStopped
		}
	}
}
