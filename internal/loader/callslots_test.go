package loader

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// slotsFor is a table over slots: no kernel, no hash map.
func slotsFor(slots []callSlot, ncpu int) *CallCounts {
	c := tableOff(ncpu, nil)
	c.slots, c.perCPU = slots, uint32(len(slots)/ncpu)
	return c
}

// claim puts k's counts on cpu the way call_slot_of does: the first live
// slot of k or the first free one among its probes; false if all are taken.
func claim(c *CallCounts, cpu uint32, k SyscallKey, v Counts) bool {
	h := callSlotHash(k)
	for i := range slotProbes {
		s := &c.slots[cpu*c.perCPU+(h+i)&(c.perCPU-1)]
		if s.State == slotLive && s.Key == k {
			s.V.Calls += v.Calls
			s.V.Ns += v.NS
			s.V.Bytes += v.Bytes
			return true
		}
		if s.State == slotFree {
			*s = callSlot{State: slotLive, Key: k}
			s.V.Calls, s.V.Ns, s.V.Bytes = v.Calls, v.NS, v.Bytes
			return true
		}
	}
	return false
}

func readAll(t *testing.T, c *CallCounts) map[SyscallKey]Counts {
	t.Helper()
	got := map[SyscallKey]Counts{}
	if err := c.Read(func(k SyscallKey, v Counts) {
		if _, twice := got[k]; twice {
			t.Errorf("Read handed %v over twice", k)
		}
		got[k] = v
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// A key's counts are summed over CPUs and over the slots it holds on one
// CPU (a free slot opened before its first); Delete frees every slot of the
// keys given and no other; a freed slot is claimed anew from zero.
func TestCallCountsSumsSlotsAndFreesThem(t *testing.T) {
	const ncpu, perCPU = 2, 16
	c := slotsFor(make([]callSlot, ncpu*perCPU), ncpu)
	a := SyscallKey{Tgid: 100, ExecId: 7, Nr: 39}
	one := Counts{Calls: 1, NS: 10, Bytes: 3}
	// Keys until one shares a's first slot: it then takes a's probe 0 and
	// a goes to probe 1.
	var b SyscallKey
	for tgid := uint32(101); ; tgid++ {
		b = SyscallKey{Tgid: tgid, ExecId: 7, Nr: 39}
		if callSlotHash(b)&(perCPU-1) == callSlotHash(a)&(perCPU-1) {
			break
		}
	}
	claim(c, 0, b, one)
	claim(c, 0, a, one)
	claim(c, 0, a, one)
	claim(c, 1, a, one)
	if got := readAll(t, c); got[a] != (Counts{3, 30, 9}) || got[b] != one || len(got) != 2 {
		t.Fatalf("read %v, want a = 3 calls, b = 1", got)
	}
	// b's generation is gone: its slot frees, and a's next call on CPU 0
	// opens a second slot before its first.
	if n, err := c.Delete([]SyscallKey{b}); n != 1 || err != nil {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	claim(c, 0, a, one)
	got := readAll(t, c)
	if got[a] != (Counts{4, 40, 12}) || len(got) != 1 {
		t.Fatalf("after b's delete, read %v, want a = 4 calls only", got)
	}
	if live, _ := c.Fill(); live != 3 || c.Slots() != ncpu*perCPU {
		t.Errorf("%d slots live of %d, want 3 of %d", live, c.Slots(), ncpu*perCPU)
	}
	var looked []Counts
	if err := c.Lookup([]SyscallKey{a, b, a}, func(k SyscallKey, v Counts) {
		if k != a {
			t.Errorf("Lookup found deleted %v", k)
		}
		looked = append(looked, v)
	}); err != nil {
		t.Fatal(err)
	}
	if len(looked) != 1 || looked[0] != (Counts{4, 40, 12}) {
		t.Errorf("Lookup(a, b, a) = %v, want a's 4 calls once", looked)
	}
	if n, err := c.Delete([]SyscallKey{a}); n != 1 || err != nil {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	if got := readAll(t, c); len(got) != 0 {
		t.Errorf("read %v after deleting every key, want nothing", got)
	}
	if claim(c, 1, a, one); readAll(t, c)[a] != one {
		t.Errorf("a freed slot claimed again holds %v, want one call", readAll(t, c)[a])
	}
}

// The table counts the test's own calls with the kernel's hash: Lookup
// finds them where call_slot_of put them (the Go hash is the C's), exactly;
// a freed slot is claimed from zero; with four slots a CPU, the keys that
// find none are counted in syscall_stats and every count stays exact.
func TestCallSlotsCountWhereLookupFindsThem(t *testing.T) {
	testenv.RequireRoot(t)
	for _, slots := range []uint32{8192, 4} {
		t.Run(fmt.Sprint(slots), func(t *testing.T) { countInSlots(t, slots) })
	}
}

func countInSlots(t *testing.T, slots uint32) {
	{
		opts := DefaultOptions()
		opts.ExcludeTGID = 0 // the calls are this process's own
		opts.CallSlots = slots
		probes, err := Load(opts, zaptest.NewLogger(t))
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		defer probes.Close()
		runtime.LockOSThread() // one thread's calls, whatever CPU it is on
		defer runtime.UnlockOSThread()
		pid := uint32(os.Getpid())
		calls := []struct {
			nr   uint16
			call func()
			n    uint64
		}{
			{unix.SYS_GETPPID, func() { unix.Getppid() }, 100},
			{unix.SYS_GETUID, func() { unix.Getuid() }, 70},
			{unix.SYS_GETGID, func() { unix.Getgid() }, 50},
			{unix.SYS_GETEUID, func() { unix.Geteuid() }, 30},
			{unix.SYS_GETEGID, func() { unix.Getegid() }, 20},
			{unix.SYS_GETPGID, func() { unix.Getpgid(0) }, 10},
		}
		for _, c := range calls {
			for range c.n {
				c.call()
			}
		}
		keys := map[uint16]SyscallKey{}
		if err := probes.Stats().Read(func(k SyscallKey, _ Counts) {
			if k.Tgid == pid && k.Abi == 0 {
				keys[k.Nr] = k
			}
		}); err != nil {
			t.Fatal(err)
		}
		lookup := func(k SyscallKey) (n uint64) {
			t.Helper()
			if err := probes.Stats().Lookup([]SyscallKey{k}, func(_ SyscallKey, v Counts) { n = v.Calls }); err != nil {
				t.Fatal(err)
			}
			return n
		}
		for _, c := range calls {
			if got := lookup(keys[c.nr]); got != c.n {
				t.Errorf("%d slots a CPU: syscall %d: %d calls looked up, want %d", slots, c.nr, got, c.n)
			}
		}
		live, _ := probes.Stats().Fill()
		capacity := probes.Stats().Slots()
		if possible, _ := ebpf.PossibleCPU(); capacity != possible*int(slots) || live == 0 || live > capacity {
			t.Errorf("%d slots a CPU: %d live of %d", slots, live, capacity)
		}
		inHash := 0
		if err := probes.Stats().hash.Read(func(k SyscallKey, _ Counts) {
			if k.Tgid == pid {
				inHash++
			}
		}); err != nil {
			t.Fatal(err)
		}
		if slots == 4 && inHash == 0 {
			t.Errorf("4 slots a CPU: none of this process's keys in syscall_stats")
		}
		if slots == 8192 && inHash != 0 {
			t.Errorf("8192 slots a CPU: %d of this process's keys in syscall_stats, want 0", inHash)
		}
		// getppid only: its slots and entry freed (no getppid runs meanwhile),
		// its next calls counted from zero.
		k := keys[unix.SYS_GETPPID]
		if n, err := probes.Stats().Delete([]SyscallKey{k}); n != 1 || err != nil {
			t.Fatalf("Delete = %d, %v", n, err)
		}
		if got := lookup(k); got != 0 {
			t.Errorf("%d slots a CPU: %d getppid calls after its delete, want 0", slots, got)
		}
		for range 5 {
			unix.Getppid()
		}
		if got := lookup(k); got != 5 {
			t.Errorf("%d slots a CPU: %d getppid calls after 5 more, want 5", slots, got)
		}
	}
}
