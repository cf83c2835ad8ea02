// Package notable decodes the calls the kernel reports one by one (failed
// or slow, with their arguments and path), keeps the last of them, and
// serves them over HTTP (/api/v1/events).
package notable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/syscalls"
)

// Event is a failed or slow call, as sysobsd trace and /api/v1/events show it.
type Event struct {
	Time     time.Time     `json:"time"`
	PID      uint32        `json:"pid"`
	TID      uint32        `json:"tid"`
	Comm     string        `json:"comm"`
	Syscall  string        `json:"syscall"`
	Compat   bool          `json:"compat,omitempty"` // a 32-bit task
	Args     [6]uint64     `json:"args"`
	Ret      int64         `json:"ret"`
	Errno    string        `json:"errno,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	// Path is the call's path argument, ending in "..." when cut.
	Path string `json:"path,omitempty"`
	// FDPath is what the call's fd argument pointed at, read from /proc
	// when the event arrived: "" if the process or fd was gone, or if the
	// daemon may not read the process's fds (ptrace access: its own user's
	// processes once capabilities are dropped, unless CAP_SYS_PTRACE is kept).
	FDPath   string `json:"fd_path,omitempty"`
	CgroupID uint64 `json:"cgroup_id"`
	NR       uint16 `json:"nr"`
}

var notableSize = binary.Size(loader.NotableEvent{})

// Decoder turns raw notable events into Event: it names the syscall and
// the errno, converts the kernel's monotonic time to wall-clock time and
// resolves fd arguments through procRoot.
type Decoder struct {
	names     *syscalls.Table
	procRoot  string
	pathMax   atomic.Int64
	bootDelta time.Duration // wall clock minus CLOCK_MONOTONIC
}

// NewDecoder names syscalls with names; pathMax is the capture limit the
// kernel was given (a path that fills it was cut).
func NewDecoder(names *syscalls.Table, procRoot string, pathMax int) *Decoder {
	var ts unix.Timespec
	delta := time.Duration(0)
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		delta = time.Duration(time.Now().UnixNano() - ts.Nano())
	}
	d := &Decoder{names: names, procRoot: procRoot, bootDelta: delta}
	d.SetPathMax(pathMax)
	return d
}

// SetPathMax follows a reload's path_max, which the kernel applies at once.
func (d *Decoder) SetPathMax(pathMax int) { d.pathMax.Store(int64(pathMax)) }

// Decode decodes one raw ring-buffer sample.
func (d *Decoder) Decode(raw []byte) (Event, error) {
	var ev loader.NotableEvent
	if len(raw) < notableSize {
		return Event{}, fmt.Errorf("notable event too short: %d bytes, want %d", len(raw), notableSize)
	}
	if _, err := binary.Decode(raw, binary.NativeEndian, &ev); err != nil {
		return Event{}, fmt.Errorf("decode notable event: %w", err)
	}
	n := Event{
		Time:     time.Unix(0, int64(ev.TsNs)+int64(d.bootDelta)),
		PID:      ev.Tgid,
		TID:      ev.Tid,
		Comm:     loader.CString(ev.Comm[:]),
		Compat:   ev.Abi == uint16(syscalls.Compat),
		Args:     ev.Args,
		Ret:      ev.Ret,
		Duration: time.Duration(ev.DurationNs),
		CgroupID: ev.CgroupId,
		NR:       ev.Nr,
	}
	n.Syscall = d.names.Name(syscalls.ABI(ev.Abi), uint32(ev.Nr))
	if ev.Ret < 0 && ev.Ret >= -4095 {
		n.Errno = syscalls.ErrnoName(uint32(-ev.Ret))
	}
	if ev.PathLen > 0 {
		n.Path = loader.CString(ev.Path[:min(int(ev.PathLen), len(ev.Path))])
		if int64(ev.PathLen) >= d.pathMax.Load() {
			n.Path += "..."
		}
	}
	if i, ok := syscalls.FDArg(n.Syscall); ok && d.procRoot != "" {
		fd := int32(ev.Args[i])
		if fd >= 0 {
			if target, err := os.Readlink(d.procRoot + "/" + strconv.FormatUint(uint64(ev.Tgid), 10) + "/fd/" + strconv.Itoa(int(fd))); err == nil {
				n.FDPath = target
			}
		}
	}
	return n, nil
}

// Reader reads the notable events' ring buffer.
type Reader struct {
	ring    *ringbuf.Reader
	decoder *Decoder
	record  ringbuf.Record
	// DecodeErrors counts samples that did not decode.
	DecodeErrors atomic.Uint64
}

// NewReader reads m with decoder.
func NewReader(m *ebpf.Map, decoder *Decoder) (*Reader, error) {
	ring, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("open notable events ring buffer: %w", err)
	}
	return &Reader{ring: ring, decoder: decoder}, nil
}

// Run calls sink for every event until Close; it counts what fails to decode.
func (r *Reader) Run(sink func(Event)) {
	for {
		if err := r.ring.ReadInto(&r.record); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			continue
		}
		n, err := r.decoder.Decode(r.record.RawSample)
		if err != nil {
			r.DecodeErrors.Add(1)
			continue
		}
		sink(n)
	}
}

// Close stops Run.
func (r *Reader) Close() error { return r.ring.Close() }

// Recent keeps the last events in a bounded ring; safe for concurrent use.
type Recent struct {
	mu     sync.Mutex
	events []Event
	next   int
	full   bool
	total  uint64
}

// NewRecent keeps up to capacity events.
func NewRecent(capacity int) *Recent {
	return &Recent{events: make([]Event, max(capacity, 0))}
}

// Add stores an event, replacing the oldest when full.
func (r *Recent) Add(n Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	if len(r.events) == 0 {
		return
	}
	r.events[r.next] = n
	r.next = (r.next + 1) % len(r.events)
	if r.next == 0 {
		r.full = true
	}
}

// Query returns the stored events that match, oldest first, at most limit
// (the newest ones) when limit > 0.
func (r *Recent) Query(match func(Event) bool, limit int) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	start, n := 0, r.next
	if r.full {
		start, n = r.next, len(r.events)
	}
	for i := range n {
		ev := r.events[(start+i)%len(r.events)]
		if match == nil || match(ev) {
			out = append(out, ev)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// Clear forgets the stored events (Total keeps counting): turned off, the
// events endpoint must not serve them when turned on again.
func (r *Recent) Clear() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.events)
	r.next, r.full = 0, false
}

// Total is how many events were added since start.
func (r *Recent) Total() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}
