package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Filter settings as the BPF programs read them.
type FilterSettings = sysobsdFilterSettingsValue

// Process filter modes (enum process_filter).
const (
	FilterOff          = uint32(sysobsdProcessFilterFILTER_OFF)
	FilterOnlyListed   = uint32(sysobsdProcessFilterFILTER_ONLY_LISTED)
	FilterExceptListed = uint32(sysobsdProcessFilterFILTER_EXCEPT_LISTED)
)

// Values of the filter maps and include_mask dimensions, as in bpf/.
const (
	MatchInclude = uint8(sysobsdMatchBitsMATCH_INCLUDE)
	MatchExclude = uint8(sysobsdMatchBitsMATCH_EXCLUDE)

	DimPID    = uint32(sysobsdFilterDimDIM_PID)
	DimComm   = uint32(sysobsdFilterDimDIM_COMM)
	DimCgroup = uint32(sysobsdFilterDimDIM_CGROUP)

	CommLen       = int(sysobsdLayoutCOMM_LEN)
	CgroupNameLen = int(sysobsdLayoutCGROUP_NAME_LEN)
)

// KernelFilters is everything the kernel needs to filter: the settings and
// the MATCH_* bits per pid, comm, cgroup id and cgroup name.
type KernelFilters struct {
	Settings    FilterSettings
	PIDs        map[uint32]uint8
	Comms       map[string]uint8
	CgroupIDs   map[uint64]uint8
	CgroupNames map[string]uint8
	// SyscallAllowed[abi*NRSlots+nr] is true for counted syscalls while
	// Settings.SyscallFilter is 1.
	SyscallAllowed []bool
	// ErrnoNotable[errno] is true where a call failing with it is a notable
	// event (Settings.Notable has NotableErrors).
	ErrnoNotable []bool
	// PathArg[abi*NRSlots+nr] is 1 + the index of the syscall's path argument.
	PathArg []uint8
}

// Notable event kinds (Settings.Notable bits) and the path capture limit.
const (
	NotableErrors = uint32(sysobsdNotableKindNOTABLE_ERRORS)
	NotableSlow   = uint32(sysobsdNotableKindNOTABLE_SLOW)
	PathCapture   = int(sysobsdLayoutPATH_CAPTURE)
)

// NotableEvent is a failed or slow call as the kernel sends it.
type NotableEvent = sysobsdNotableEvent

// SetFilters replaces the kernel's filter maps. The settings entry is
// written last, so a filter turns on only once its lists are complete.
func (m *Maps) SetFilters(f KernelFilters) error {
	off := FilterSettings{}
	if err := m.objs.FilterSettings.Put(uint32(0), &off); err != nil {
		return fmt.Errorf("write filter_settings: %w", err)
	}
	if err := replace(m.objs.FilterPids, f.PIDs, func(k uint32) any { return k }); err != nil {
		return err
	}
	if err := replace(m.objs.FilterComms, f.Comms, func(k string) any { return fixedBytes(k, CommLen) }); err != nil {
		return err
	}
	if err := replace(m.objs.FilterCgroupIds, f.CgroupIDs, func(k uint64) any { return k }); err != nil {
		return err
	}
	if err := replace(m.objs.FilterCgroupNames, f.CgroupNames, func(k string) any { return fixedBytes(k, CgroupNameLen) }); err != nil {
		return err
	}
	if f.Settings.SyscallFilter != 0 {
		keys := make([]uint32, ABIs*NRSlots)
		vals := make([]uint8, ABIs*NRSlots)
		for i := range keys {
			keys[i] = uint32(i)
			if i < len(f.SyscallAllowed) && f.SyscallAllowed[i] {
				vals[i] = 1
			}
		}
		if _, err := m.objs.SyscallAllowed.BatchUpdate(keys, vals, nil); err != nil {
			return fmt.Errorf("write syscall_allowed: %w", err)
		}
	}
	if f.Settings.Notable != 0 {
		if err := writeArray(m.objs.ErrnoNotable, len(f.ErrnoNotable), func(i int) uint8 { return boolByte(f.ErrnoNotable[i]) }); err != nil {
			return err
		}
		if err := writeArray(m.objs.PathArg, len(f.PathArg), func(i int) uint8 { return f.PathArg[i] }); err != nil {
			return err
		}
	}
	if f.Settings.ProcessFilter == FilterOff {
		if err := clearMap(m.objs.ProcessListed); err != nil {
			return err
		}
	}
	if err := m.objs.FilterSettings.Put(uint32(0), &f.Settings); err != nil {
		return fmt.Errorf("write filter_settings: %w", err)
	}
	return nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// writeArray fills an array map's first n entries in one batch.
func writeArray(m *ebpf.Map, n int, value func(i int) uint8) error {
	n = min(n, int(m.MaxEntries()))
	keys := make([]uint32, n)
	vals := make([]uint8, n)
	for i := range n {
		keys[i] = uint32(i)
		vals[i] = value(i)
	}
	if n == 0 {
		return nil
	}
	if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
		return fmt.Errorf("write %s: %w", m.String(), err)
	}
	return nil
}

// SetProcessListed records the verdict of a process that was running before
// the lifecycle programs could judge it.
func (m *Maps) SetProcessListed(tgid uint32, listed bool) error {
	if listed {
		if err := m.objs.ProcessListed.Put(tgid, uint8(1)); err != nil {
			return fmt.Errorf("write process_listed: %w", err)
		}
		return nil
	}
	if err := m.objs.ProcessListed.Delete(tgid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete from process_listed: %w", err)
	}
	return nil
}

func fixedBytes(s string, n int) []byte {
	b := make([]byte, n)
	copy(b, s[:min(len(s), n-1)]) // the kernel's strings end in NUL within n
	return b
}

func replace[K comparable](m *ebpf.Map, want map[K]uint8, key func(K) any) error {
	if err := clearMap(m); err != nil {
		return err
	}
	for k, v := range want {
		if err := m.Put(key(k), v); err != nil {
			return fmt.Errorf("write %s: %w", m.String(), err)
		}
	}
	return nil
}

// clearMap deletes every key; the filter maps are small.
func clearMap(m *ebpf.Map) error {
	var keys [][]byte
	var key []byte
	iter := m.Iterate()
	var value []byte
	for iter.Next(&key, &value) {
		keys = append(keys, append([]byte(nil), key...))
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("iterate %s: %w", m.String(), err)
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete from %s: %w", m.String(), err)
		}
	}
	return nil
}
