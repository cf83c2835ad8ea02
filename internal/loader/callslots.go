package loader

import (
	"fmt"
	"math/bits"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// callSlot is one slot of call_slots (struct call_slot).
type callSlot = sysobsdCallSlot

// CallSlotLive is a call_slots slot's state while it counts a key (the
// others: free, or being claimed).
const CallSlotLive = int(sysobsdCallSlotStateCALL_SLOT_LIVE)

const (
	slotFree = uint64(sysobsdCallSlotStateCALL_SLOT_FREE)
	slotLive = uint64(CallSlotLive)
	// slotProbes is how many slots from its hash a key may be in.
	slotProbes = uint32(sysobsdLayoutCALL_SLOT_PROBES)
)

// callSlotHash is call_slot_hash in bpf/sysobsd.bpf.c: where a key's slots
// start in each CPU's part of the table. TestCallSlotsCountWhereLookupFindsThem
// holds the two together.
func callSlotHash(k SyscallKey) uint32 {
	h := k.Tgid*0x9E3779B1 ^ k.ExecId*0x85EBCA77 ^ (uint32(k.Nr)<<1 | uint32(k.Abi))
	h *= 0xC2B2AE3D
	return h ^ h>>16
}

// CallCounts is where the kernel counts calls by process generation and
// syscall: call_slots, each CPU's open-addressed table, read in place
// through a shared mapping; and syscall_stats, the hash map of the calls
// that found no slot. Read, Lookup and Delete see the two as one table, a
// key's counts summed over its slots and its hash entry. Not safe for
// concurrent use: the daemon is the only one that frees slots, and it must
// not free one while it reads it.
type CallCounts struct {
	slots   []callSlot // nil: the table is off
	perCPU  uint32     // slots of each CPU, a power of two
	ncpu    uint32
	mapping []byte
	hash    *Counters[SyscallKey, sysobsdSyscallStatsValue, Counts]

	// inHash holds the keys the last Read or a later Lookup found in the
	// hash map: Delete deletes only those from it (a batch delete fails on
	// a missing key), and a key's entry there cannot appear once its
	// process generation is gone, the only time the tally deletes.
	inHash map[SyscallKey]struct{}
	sums   map[SyscallKey]Counts // Read's and Lookup's scratch
	found  map[SyscallKey]bool   // Lookup's: keys given, true if found
	keys   []SyscallKey          // Lookup's and Delete's scratch
	// live slots and hash entries at the last Read
	live, hashEntries int
}

// newCallCounts maps call_slots (m) into memory; no map (a test's) or one
// of fewer than slotProbes slots per CPU (the loader's size for "none") is
// the hash map alone.
func newCallCounts(m *ebpf.Map, ncpu int, hash *Counters[SyscallKey, sysobsdSyscallStatsValue, Counts]) (*CallCounts, error) {
	c := tableOff(ncpu, hash)
	if m == nil || m.MaxEntries()/uint32(ncpu) < slotProbes {
		return c, nil
	}
	perCPU := m.MaxEntries() / uint32(ncpu)
	if perCPU&(perCPU-1) != 0 || m.MaxEntries() != perCPU*uint32(ncpu) {
		return nil, fmt.Errorf("call_slots of %d entries: not a power of two for each of %d CPUs", m.MaxEntries(), ncpu)
	}
	size := int(m.MaxEntries()) * int(unsafe.Sizeof(callSlot{}))
	page := unix.Getpagesize()
	mapping, err := unix.Mmap(m.FD(), 0, (size+page-1)/page*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map call_slots into memory: %w", err)
	}
	c.mapping = mapping
	c.slots = unsafe.Slice((*callSlot)(unsafe.Pointer(&mapping[0])), m.MaxEntries())
	c.perCPU = perCPU
	return c, nil
}

// tableOff is the hash map alone, without slots.
func tableOff(ncpu int, hash *Counters[SyscallKey, sysobsdSyscallStatsValue, Counts]) *CallCounts {
	return &CallCounts{
		ncpu:   uint32(ncpu),
		hash:   hash,
		inHash: make(map[SyscallKey]struct{}),
		sums:   make(map[SyscallKey]Counts),
		found:  make(map[SyscallKey]bool),
	}
}

// close unmaps the table.
func (c *CallCounts) close() error {
	if c.mapping == nil {
		return nil
	}
	c.slots = nil
	m := c.mapping
	c.mapping = nil
	return unix.Munmap(m)
}

// keyOf returns a live slot's key and counts. The state is loaded first
// (an atomic load orders the rest after it), so that the key and zero
// counts the CPU wrote before making the slot live are seen; each count is
// an aligned 64-bit word the kernel adds to, seen whole.
func keyOf(s *callSlot) (SyscallKey, Counts, bool) {
	if atomic.LoadUint64(&s.State) != slotLive {
		return SyscallKey{}, Counts{}, false
	}
	return s.Key, countsOf(&s.V), true
}

// eachSlotOf calls fn for every live slot holding k, on every CPU.
func (c *CallCounts) eachSlotOf(k SyscallKey, fn func(*callSlot, Counts)) {
	if c.slots == nil {
		return
	}
	h, mask := callSlotHash(k), c.perCPU-1
	for cpu := range c.ncpu {
		base := cpu * c.perCPU
		for i := range slotProbes {
			s := &c.slots[base+(h+i)&mask]
			if sk, v, ok := keyOf(s); ok && sk == k {
				fn(s, v)
			}
		}
	}
}

// Read calls fn for every key, once, with its counts summed.
func (c *CallCounts) Read(fn func(SyscallKey, Counts)) error {
	clear(c.sums)
	c.live = 0
	for i := range c.slots {
		if k, v, ok := keyOf(&c.slots[i]); ok {
			c.sums[k] = c.sums[k].Plus(v)
			c.live++
		}
	}
	clear(c.inHash)
	c.hashEntries = 0
	if c.hash != nil {
		err := c.hash.Read(func(k SyscallKey, v Counts) {
			c.hashEntries++
			c.inHash[k] = struct{}{}
			c.sums[k] = c.sums[k].Plus(v)
		})
		if err != nil {
			return err
		}
	}
	for k, v := range c.sums {
		fn(k, v)
	}
	return nil
}

// Lookup calls fn for each of keys that has a slot or a hash entry, once.
func (c *CallCounts) Lookup(keys []SyscallKey, fn func(SyscallKey, Counts)) error {
	clear(c.sums)
	defer clear(c.found)
	c.keys = c.keys[:0]
	for _, k := range keys {
		if _, twice := c.found[k]; twice {
			continue
		}
		c.found[k] = false
		c.keys = append(c.keys, k)
		c.eachSlotOf(k, func(_ *callSlot, v Counts) {
			c.found[k] = true
			c.sums[k] = c.sums[k].Plus(v)
		})
	}
	if c.hash != nil {
		err := c.hash.Lookup(c.keys, func(k SyscallKey, v Counts) {
			c.inHash[k] = struct{}{}
			c.found[k] = true
			c.sums[k] = c.sums[k].Plus(v)
		})
		if err != nil {
			return err
		}
	}
	for _, k := range c.keys {
		if c.found[k] {
			fn(k, c.sums[k])
		}
	}
	return nil
}

// Delete frees the slots and hash entries of keys, which must be final
// (their process generation gone): it returns how many of keys, in order,
// it deleted, all of them unless deleting from the hash fails.
func (c *CallCounts) Delete(keys []SyscallKey) (int, error) {
	c.keys = c.keys[:0]
	for _, k := range keys {
		if _, ok := c.inHash[k]; ok {
			c.keys = append(c.keys, k)
		}
	}
	done := len(keys)
	var err error
	if len(c.keys) > 0 {
		var n int
		n, err = c.hash.Delete(c.keys)
		for _, k := range c.keys[:n] {
			delete(c.inHash, k)
		}
		if n < len(c.keys) {
			// Keys before the first one left in the hash are deleted.
			for i, k := range keys {
				if k == c.keys[n] {
					done = i
					break
				}
			}
		}
	}
	for _, k := range keys[:done] {
		// A free slot's key and counts are written anew by the CPU that
		// claims it: only the state changes here.
		c.eachSlotOf(k, func(s *callSlot, _ Counts) { atomic.StoreUint64(&s.State, slotFree) })
	}
	return done, err
}

// Slots is how many slots the table has on all CPUs (0: off); safe to
// call at any time.
func (c *CallCounts) Slots() int { return len(c.slots) }

// Fill is how many slots and hash entries the last Read found.
func (c *CallCounts) Fill() (slots, hashEntries int) {
	return c.live, c.hashEntries
}

// callSlotBits is log2 of slots per CPU for configure, 0 for none.
func callSlotBits(perCPU uint32) (uint32, error) {
	if perCPU == 0 {
		return 0, nil
	}
	if perCPU&(perCPU-1) != 0 || perCPU < slotProbes || perCPU > 1<<20 {
		return 0, fmt.Errorf("%d call slots per CPU: not a power of two from %d to 1048576", perCPU, slotProbes)
	}
	return uint32(bits.TrailingZeros32(perCPU)), nil
}
