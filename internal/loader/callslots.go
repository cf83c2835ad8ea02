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

// callSlotHash is call_slot_hash in bpf/sysobsd.bpf.c: where a slot key
// (a process generation's syscall, with errno 0 for its calls) starts in
// each CPU's part of the table. TestCallSlotsCountWhereLookupFindsThem
// holds the two together.
func callSlotHash(k ErrnoKey) uint32 {
	h := k.Tgid*0x9E3779B1 ^ k.ExecId*0x85EBCA77 ^ (uint32(k.Nr)<<1 | uint32(k.Abi)) ^ k.Err*0x27D4EB2F
	h *= 0xC2B2AE3D
	return h ^ h>>16
}

// slotTable is call_slots mapped into memory: each CPU's open-addressed
// table of counts, shared by calls (CallCounts) and errors (ErrorCounts).
type slotTable struct {
	slots   []callSlot // nil: the table is off
	perCPU  uint32     // slots of each CPU, a power of two
	ncpu    uint32
	mapping []byte
}

// newSlotTable maps call_slots (m) into memory; no map (a test's) or one
// of fewer than slotProbes slots per CPU (the loader's size for "none") is
// the table off.
func newSlotTable(m *ebpf.Map, ncpu int) (*slotTable, error) {
	t := &slotTable{ncpu: uint32(ncpu)}
	if m == nil || m.MaxEntries()/uint32(ncpu) < slotProbes {
		return t, nil
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
	t.mapping = mapping
	t.slots = unsafe.Slice((*callSlot)(unsafe.Pointer(&mapping[0])), m.MaxEntries())
	t.perCPU = perCPU
	return t, nil
}

// close unmaps the table.
func (t *slotTable) close() error {
	if t.mapping == nil {
		return nil
	}
	t.slots = nil
	m := t.mapping
	t.mapping = nil
	return unix.Munmap(m)
}

// liveKey returns a live slot's key. The state is loaded first (an atomic
// load orders the rest after it), so that the key and zero counts the CPU
// wrote before making the slot live are seen: a count read after it is an
// aligned 64-bit word the kernel adds to, seen whole.
func liveKey(s *callSlot) (ErrnoKey, bool) {
	if atomic.LoadUint64(&s.State) != slotLive {
		return ErrnoKey{}, false
	}
	return s.Key, true
}

// eachSlotOf calls fn for every live slot holding k, on every CPU.
func (t *slotTable) eachSlotOf(k ErrnoKey, fn func(*callSlot)) {
	if t.slots == nil {
		return
	}
	h, mask := callSlotHash(k), t.perCPU-1
	for cpu := range t.ncpu {
		base := cpu * t.perCPU
		for i := range slotProbes {
			s := &t.slots[base+(h+i)&mask]
			if sk, ok := liveKey(s); ok && sk == k {
				fn(s)
			}
		}
	}
}

// SlotCounts is one kind of count the kernel keeps in call_slots, and in a
// hash map for what found no slot: calls by process generation and syscall
// (CallCounts), or failed calls by those and errno (ErrorCounts). Read,
// Lookup and Delete see the two stores as one table, a key's counts summed
// over its slots and its hash entry. Not safe for concurrent use: its reads
// share scratch buffers, and the daemon, the only one that frees slots,
// must not free one while it reads it. Maps.ReadProcessKeys reads the same
// maps with scratch of its own, for tests and tools.
type SlotCounts[K comparable, P, V any] struct {
	table *slotTable
	hash  *Counters[K, P, V]
	// slotKey is k's key in call_slots; countOf a live slot's key and
	// counts, false if the slot holds the other kind.
	slotKey func(k K) ErrnoKey
	countOf func(key ErrnoKey, v *sysobsdSyscallStatsValue) (K, V, bool)
	plus    func(a, b V) V

	// inHash holds the keys the last Read or a later Lookup found in the
	// hash map: Delete deletes only those from it (a batch delete fails on
	// a missing key), and a key's entry there cannot appear once its
	// process generation is gone, the only time the tally deletes.
	inHash map[K]struct{}
	sums   map[K]V    // Read's and Lookup's scratch
	found  map[K]bool // Lookup's: keys given, true if found
	keys   []K        // Lookup's and Delete's scratch
	// live slots and hash entries at the last Read
	live, hashEntries int
}

// CallCounts is call_slots' slots of errno 0 and syscall_stats:
// {process generation, syscall} → calls, time and bytes.
type CallCounts = SlotCounts[SyscallKey, sysobsdSyscallStatsValue, Counts]

// ErrorCounts is call_slots' slots of an errno and syscall_errors:
// {process generation, syscall, errno} → failed calls.
type ErrorCounts = SlotCounts[ErrnoKey, uint64, uint64]

func newCallCounts(t *slotTable, hash *Counters[SyscallKey, sysobsdSyscallStatsValue, Counts]) *CallCounts {
	return newSlotCounts(t, hash,
		func(k SyscallKey) ErrnoKey { return ErrnoKey{Tgid: k.Tgid, ExecId: k.ExecId, Nr: k.Nr, Abi: k.Abi} },
		func(k ErrnoKey, v *sysobsdSyscallStatsValue) (SyscallKey, Counts, bool) {
			return SyscallKey{Tgid: k.Tgid, ExecId: k.ExecId, Nr: k.Nr, Abi: k.Abi}, countsOf(v), k.Err == 0
		},
		Counts.Plus)
}

func newErrorCounts(t *slotTable, hash *Counters[ErrnoKey, uint64, uint64]) *ErrorCounts {
	return newSlotCounts(t, hash,
		func(k ErrnoKey) ErrnoKey { return k },
		func(k ErrnoKey, v *sysobsdSyscallStatsValue) (ErrnoKey, uint64, bool) { return k, v.Calls, k.Err != 0 },
		func(a, b uint64) uint64 { return a + b })
}

func newSlotCounts[K comparable, P, V any](t *slotTable, hash *Counters[K, P, V], slotKey func(K) ErrnoKey,
	countOf func(ErrnoKey, *sysobsdSyscallStatsValue) (K, V, bool), plus func(V, V) V) *SlotCounts[K, P, V] {
	return &SlotCounts[K, P, V]{
		table:   t,
		hash:    hash,
		slotKey: slotKey,
		countOf: countOf,
		plus:    plus,
		inHash:  make(map[K]struct{}),
		sums:    make(map[K]V),
		found:   make(map[K]bool),
	}
}

// Read calls fn for every key, once, with its counts summed.
func (c *SlotCounts[K, P, V]) Read(fn func(K, V)) error {
	clear(c.sums)
	c.live = 0
	for i := range c.table.slots {
		s := &c.table.slots[i]
		sk, ok := liveKey(s)
		if !ok {
			continue
		}
		if k, v, mine := c.countOf(sk, &s.V); mine {
			c.sums[k] = c.plus(c.sums[k], v)
			c.live++
		}
	}
	clear(c.inHash)
	c.hashEntries = 0
	if c.hash != nil {
		err := c.hash.Read(func(k K, v V) {
			c.hashEntries++
			c.inHash[k] = struct{}{}
			c.sums[k] = c.plus(c.sums[k], v)
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
func (c *SlotCounts[K, P, V]) Lookup(keys []K, fn func(K, V)) error {
	clear(c.sums)
	defer clear(c.found)
	c.keys = c.keys[:0]
	for _, k := range keys {
		if _, twice := c.found[k]; twice {
			continue
		}
		c.found[k] = false
		c.keys = append(c.keys, k)
		c.table.eachSlotOf(c.slotKey(k), func(s *callSlot) {
			if _, v, mine := c.countOf(s.Key, &s.V); mine {
				c.found[k] = true
				c.sums[k] = c.plus(c.sums[k], v)
			}
		})
	}
	if c.hash != nil {
		err := c.hash.Lookup(c.keys, func(k K, v V) {
			c.inHash[k] = struct{}{}
			c.found[k] = true
			c.sums[k] = c.plus(c.sums[k], v)
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
func (c *SlotCounts[K, P, V]) Delete(keys []K) (int, error) {
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
		c.table.eachSlotOf(c.slotKey(k), func(s *callSlot) {
			if _, _, mine := c.countOf(s.Key, &s.V); mine {
				atomic.StoreUint64(&s.State, slotFree)
			}
		})
	}
	return done, err
}

// Slots is how many slots the table has on all CPUs, shared by both kinds
// (0: off); safe to call at any time.
func (c *SlotCounts[K, P, V]) Slots() int { return len(c.table.slots) }

// Fill is how many slots of this kind and hash entries the last Read found.
func (c *SlotCounts[K, P, V]) Fill() (slots, hashEntries int) {
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
