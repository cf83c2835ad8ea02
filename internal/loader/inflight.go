package loader

import "fmt"

// CallStartedAt reports whether thread tid is inside a system call now and,
// if it is, when the call began: bpf_ktime_get_ns at sys_enter, the
// CLOCK_MONOTONIC clock (unix.ClockGettime(unix.CLOCK_MONOTONIC, ...) reads
// the same clock). It reads tid's entry in start_slots with one lookup and
// no scratch buffer, so it may run while another goroutine reads the
// counters.
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
	// tid's slot is someone else's now.
	if slot.Tid != tid || slot.Ns == 0 {
		return 0, false, nil
	}
	return slot.Ns, true, nil
}
