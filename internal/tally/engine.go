package tally

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/events"
	"github.com/sysobsd/sysobsd/internal/loader"
)

// Engine owns the lifecycle reader, the process table and the tally, and
// runs them on one goroutine: records are applied in the order the kernel
// sent them, and every fold or snapshot first drains the ring buffer, so a
// process that exited before a scrape is folded under its last name.
type Engine struct {
	reader   *events.Reader
	procs    *events.ProcessTable
	tally    *Tally
	log      *zap.Logger
	requests chan request
	done     chan struct{}

	// FoldEvery bounds how long exited processes keep kernel map entries.
	FoldEvery time.Duration

	decodeErrors uint64 // owned by the Run goroutine
}

type request struct {
	scrape bool
	reply  chan result
}

type result struct {
	snap *Snapshot
	err  error
}

// ErrStopped is returned by Snapshot once the engine has stopped.
var ErrStopped = errors.New("sysobsd engine stopped")

// NewEngine reads maps' counters and lifecycle ring buffer; procRoot is /proc.
func NewEngine(maps *loader.Maps, procRoot string, log *zap.Logger) (*Engine, error) {
	reader, err := events.NewReader(maps.Lifecycle())
	if err != nil {
		return nil, err
	}
	procs := events.NewProcessTable(procRoot)
	return &Engine{
		reader:    reader,
		procs:     procs,
		tally:     New(maps, procs, processAlive),
		log:       log,
		requests:  make(chan request, 16),
		done:      make(chan struct{}),
		FoldEvery: time.Second,
	}, nil
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
			e.procs.Apply(ev)
		case errors.Is(err, events.ErrFlushed):
			e.serve()
		case errors.Is(err, events.ErrClosed):
			e.serve() // answer what is queued, from the final state
			return nil
		default:
			e.decodeErrors++
			if e.decodeErrors == 1 {
				e.log.Warn("lifecycle record skipped; counted in sysobsd_lifecycle_decode_errors_total", zap.Error(err))
			}
		}
	}
}

func (e *Engine) serve() {
	for {
		select {
		case req := <-e.requests:
			if !req.scrape {
				if e.procs.ExitedCount() > 0 {
					if err := e.tally.Fold(); err != nil {
						e.log.Error("fold exited processes", zap.Error(err))
					}
				}
				continue
			}
			snap, err := e.tally.Snapshot()
			if snap != nil {
				snap.DecodeErrors = e.decodeErrors
			}
			req.reply <- result{snap, err}
		default:
			return
		}
	}
}

// Snapshot drains the ring buffer, folds, and returns every series' totals.
func (e *Engine) Snapshot(ctx context.Context) (*Snapshot, error) {
	req := request{scrape: true, reply: make(chan result, 1)}
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
