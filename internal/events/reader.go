package events

import (
	"errors"
	"fmt"

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
func (r *Reader) Next() (Lifecycle, error) {
	if err := r.ring.ReadInto(&r.record); err != nil {
		if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed) {
			return Lifecycle{}, err
		}
		return Lifecycle{}, fmt.Errorf("read lifecycle ring buffer: %w", err)
	}
	return DecodeLifecycle(r.record.RawSample)
}

// Flush makes Next return what is in the ring buffer now, then ErrFlushed.
func (r *Reader) Flush() error { return r.ring.Flush() }

// Close unblocks Next with ErrClosed.
func (r *Reader) Close() error { return r.ring.Close() }
