package lifecycle

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// ErrFlushed is returned by Next once every record that was in the ring
// buffer when Flush was called has been returned.
var ErrFlushed = ringbuf.ErrFlushed

// ErrClosed is returned by Next after Close.
var ErrClosed = ringbuf.ErrClosed

// Reader decodes lifecycle records from the ring buffer.
type Reader struct {
	ring   *ringbuf.Reader
	record ringbuf.Record
}

// NewReader reads the ring buffer map m.
func NewReader(m *ebpf.Map) (*Reader, error) {
	ring, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("open lifecycle ring buffer: %w", err)
	}
	return &Reader{ring: ring}, nil
}

// Next blocks until a record arrives, Flush is called (ErrFlushed) or the
// reader is closed (ErrClosed). A record that does not decode returns an
// error wrapping the decode failure; reading can go on after it.
func (r *Reader) Next() (Record, error) {
	if err := r.ring.ReadInto(&r.record); err != nil {
		if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed) {
			return Record{}, err
		}
		return Record{}, fmt.Errorf("read lifecycle ring buffer: %w", err)
	}
	return Decode(r.record.RawSample)
}

// ReadAvailable calls fn for every record in the ring buffer now, without
// waiting for more: every record sent before the call reaches fn before it
// returns. A record that does not decode reaches fn with its error, as
// from Next. It may take a Flush pending for Next: its caller must not
// wait for that ErrFlushed.
func (r *Reader) ReadAvailable(fn func(Record, error)) error {
	r.ring.SetDeadline(time.Unix(0, 1)) // in the past: read what is there, then stop
	defer r.ring.SetDeadline(time.Time{})
	for {
		ev, err := r.Next()
		switch {
		case err == nil:
			fn(ev, nil)
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ErrFlushed):
			return nil // both come once the ring buffer is read to its end
		case errors.Is(err, ErrClosed):
			return err
		default:
			fn(ev, err)
		}
	}
}

// Flush makes Next return what is in the ring buffer now, then ErrFlushed.
func (r *Reader) Flush() error { return r.ring.Flush() }

// Close unblocks Next with ErrClosed.
func (r *Reader) Close() error { return r.ring.Close() }
