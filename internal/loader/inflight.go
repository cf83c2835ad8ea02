package loader

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// untimedStamp is the low bit of the entry stamp of a call sampled latency
// does not time (UNTIMED in bpf/sysobsd.bpf.c): the rest is its entry's
// jiffies, which user space cannot read the clock of.
const untimedStamp = 1

// InFlightRecord is a thread inside a syscall, as the in_flight iterator
// reports it.
type InFlightRecord = sysobsdInFlightRecord

// The states of a thread inside a call (enum thread_state).
const (
	ThreadRunning         = uint32(sysobsdThreadStateTHREAD_RUNNING)
	ThreadSleeping        = uint32(sysobsdThreadStateTHREAD_SLEEPING)
	ThreadUninterruptible = uint32(sysobsdThreadStateTHREAD_UNINTERRUPTIBLE)
	ThreadStopped         = uint32(sysobsdThreadStateTHREAD_STOPPED)
)

// ThreadStateName is a thread state's label value.
func ThreadStateName(state uint32) string {
	switch state {
	case ThreadRunning:
		return "running"
	case ThreadSleeping:
		return "sleeping"
	case ThreadUninterruptible:
		return "uninterruptible"
	case ThreadStopped:
		return "stopped"
	}
	return "unknown"
}

// ErrNoInFlight: the programs cannot report calls in flight (latency off,
// or a kernel before 5.15).
var ErrNoInFlight = errors.New("calls in flight are not reported: latency is off or the kernel lacks bpf_task_pt_regs (Linux 5.15)")

var inFlightRecordSize = binary.Size(InFlightRecord{})

// ReadInFlight calls fn for every thread inside a syscall now whose entry
// sys_enter stamped: one run of the in_flight task iterator, which walks the
// host's threads (nothing is added per syscall).
func (m *Maps) ReadInFlight(fn func(InFlightRecord)) error {
	// Read by scrapes and /api/v1/in_flight while detach may close it.
	m.inFlightMu.RLock()
	defer m.inFlightMu.RUnlock()
	if m.inFlight == nil {
		return ErrNoInFlight
	}
	rd, err := m.inFlight.Open()
	if err != nil {
		return fmt.Errorf("run the in_flight iterator: %w", err)
	}
	defer rd.Close()
	buf := make([]byte, inFlightRecordSize)
	br := bufio.NewReaderSize(rd, 64*inFlightRecordSize)
	for {
		if _, err := io.ReadFull(br, buf); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read the in_flight iterator: %w", err)
		}
		var r InFlightRecord
		if _, err := binary.Decode(buf, binary.NativeEndian, &r); err != nil {
			return fmt.Errorf("decode an in_flight record: %w", err)
		}
		fn(r)
	}
}

// CallStartedAt reports whether thread tid is inside a system call now and,
// if it is, when the call began: bpf_ktime_get_ns at sys_enter, the
// CLOCK_MONOTONIC clock (unix.ClockGettime(unix.CLOCK_MONOTONIC, ...) reads
// the same clock). It reads tid's entry in start_slots with one lookup and
// no scratch buffer, so it may run while another goroutine reads the
// counters.
//
// With sampled latency, a call not timed reads as not in a call: its stamp
// is in jiffies, which only the in_flight iterator turns into a time.
//
// A thread is seen in a call only if its entry was stamped: never when the
// programs were loaded without Options.Latency (no sys_enter), nor for a call
// that began before they were attached. A thread whose slot another thread's
// call held when it entered (thread ids sharing a slot, only where pid_max
// exceeds 2^18) has its entry time in task storage, which this does not read:
// it reads as not in a call until it returns.
func (m *Maps) CallStartedAt(tid uint32) (monotonicNS uint64, inCall bool, err error) {
	slots := m.objs.StartSlots
	// The loader sizes the array to a power of two, start_slot_mask + 1.
	index := tid & (slots.MaxEntries() - 1)
	var slot sysobsdStartSlot
	if err := slots.Lookup(index, &slot); err != nil {
		return 0, false, fmt.Errorf("read start_slots[%d] for thread %d: %w", index, tid, err)
	}
	// ns is 0 while the slot's owner is between calls; another owner means
	// tid's slot is someone else's now; untimedStamp a call not timed.
	if slot.Tid != tid || slot.Ns == 0 || m.sampledLatency && slot.Ns&untimedStamp != 0 {
		return 0, false, nil
	}
	return slot.Ns, true, nil
}
