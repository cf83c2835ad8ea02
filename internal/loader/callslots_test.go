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

// slotsFor is the calls and errors of a table over slots: no kernel, no
// hash maps.
func slotsFor(slots []callSlot, ncpu int) (*CallCounts, *ErrorCounts) {
	t := &slotTable{slots: slots, perCPU: uint32(len(slots) / ncpu), ncpu: uint32(ncpu)}
	return newCallCounts(t, nil), newErrorCounts(t, nil)
}

// claim puts k's calls on cpu the way call_slot_of does: the first live
// slot of k or the first free one among its probes; false if all are taken.
func claim(c *CallCounts, cpu uint32, k SyscallKey, v Counts) bool {
	return claimSlot(c.table, cpu, c.slotKey(k), v)
}

// claimError puts n failures of k on cpu, as claim does calls.
func claimError(c *ErrorCounts, cpu uint32, k ErrnoKey, n uint64) bool {
	return claimSlot(c.table, cpu, k, Counts{Calls: n})
}

func claimSlot(t *slotTable, cpu uint32, k ErrnoKey, v Counts) bool {
	h := callSlotHash(k)
	for i := range slotProbes {
		s := &t.slots[cpu*t.perCPU+(h+i)&(t.perCPU-1)]
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

func readAll[K comparable, P, V any](t *testing.T, c *SlotCounts[K, P, V]) map[K]V {
	t.Helper()
	got := map[K]V{}
	if err := c.Read(func(k K, v V) {
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
	c, _ := slotsFor(make([]callSlot, ncpu*perCPU), ncpu)
	a := SyscallKey{Tgid: 100, ExecId: 7, Nr: 39}
	one := Counts{Calls: 1, NS: 10, Bytes: 3}
	// Keys until one shares a's first slot: it then takes a's probe 0 and
	// a goes to probe 1.
	var b SyscallKey
	for tgid := uint32(101); ; tgid++ {
		b = SyscallKey{Tgid: tgid, ExecId: 7, Nr: 39}
		if callSlotHash(c.slotKey(b))&(perCPU-1) == callSlotHash(c.slotKey(a))&(perCPU-1) {
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

// A process's calls and its errors share the table: each kind reads,
// looks up and frees only its own slots, a key's errors by errno apart.
func TestErrorCountsShareTheTableWithCalls(t *testing.T) {
	const ncpu, perCPU = 2, 64
	calls, errs := slotsFor(make([]callSlot, ncpu*perCPU), ncpu)
	k := SyscallKey{Tgid: 100, ExecId: 7, Nr: 0}
	ebadf := ErrnoKey{Tgid: 100, ExecId: 7, Nr: 0, Err: uint32(unix.EBADF)}
	eagain := ebadf
	eagain.Err = uint32(unix.EAGAIN)
	claim(calls, 0, k, Counts{Calls: 10, NS: 100, Bytes: 5})
	claim(calls, 1, k, Counts{Calls: 3, NS: 30})
	claimError(errs, 0, ebadf, 2)
	claimError(errs, 1, ebadf, 1)
	claimError(errs, 1, eagain, 4)
	if got := readAll(t, calls); len(got) != 1 || got[k] != (Counts{13, 130, 5}) {
		t.Errorf("calls read %v, want %v: 13 calls", got, k)
	}
	if got := readAll(t, errs); len(got) != 2 || got[ebadf] != 3 || got[eagain] != 4 {
		t.Errorf("errors read %v, want EBADF 3, EAGAIN 4", got)
	}
	if c, e := calls.live, errs.live; c != 2 || e != 3 {
		t.Errorf("live slots: %d calls', %d errors', want 2 and 3", c, e)
	}
	var looked []uint64
	if err := errs.Lookup([]ErrnoKey{eagain, {Tgid: 100, ExecId: 7, Nr: 0}}, func(_ ErrnoKey, n uint64) { looked = append(looked, n) }); err != nil {
		t.Fatal(err)
	}
	if len(looked) != 1 || looked[0] != 4 {
		t.Errorf("Lookup(EAGAIN, errno 0) = %v, want EAGAIN's 4 only (errno 0 is the calls')", looked)
	}
	// An errors key of errno 0 names no error: deleting it frees nothing,
	// the calls' slots least of all.
	if _, err := errs.Delete([]ErrnoKey{{Tgid: 100, ExecId: 7, Nr: 0}}); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, calls); got[k] != (Counts{13, 130, 5}) {
		t.Errorf("calls read %v after deleting errno 0 from the errors, want 13 calls kept", got)
	}
	if n, err := calls.Delete([]SyscallKey{k}); n != 1 || err != nil {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	if got := readAll(t, errs); len(got) != 2 || got[ebadf] != 3 {
		t.Errorf("errors read %v after the calls' delete, want both kept", got)
	}
	if n, err := errs.Delete([]ErrnoKey{ebadf, eagain}); n != 2 || err != nil {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	if c, e := readAll(t, calls), readAll(t, errs); len(c)+len(e) != 0 {
		t.Errorf("read %v and %v after deleting every key, want nothing", c, e)
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
			{unix.SYS_FSYNC, func() { unix.Fsync(-1) }, 40},
			{unix.SYS_FCHDIR, func() { unix.Fchdir(-1) }, 25},
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
		// fsync(-1) and fchdir(-1) fail with EBADF, each call: counted
		// where the calls are, each errno in a slot or entry of its own.
		for _, nr := range []uint16{unix.SYS_FSYNC, unix.SYS_FCHDIR} {
			k := ErrnoKey{Tgid: pid, ExecId: keys[nr].ExecId, Nr: nr, Err: uint32(unix.EBADF)}
			var n uint64
			if err := probes.Errors().Lookup([]ErrnoKey{k}, func(_ ErrnoKey, v uint64) { n = v }); err != nil {
				t.Fatal(err)
			}
			if want := lookup(keys[nr]); n != want || n == 0 {
				t.Errorf("%d slots a CPU: syscall %d: %d EBADF looked up, want %d", slots, nr, n, want)
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
		errorsInHash := 0
		if err := probes.Errors().hash.Read(func(k ErrnoKey, _ uint64) {
			if k.Tgid == pid {
				errorsInHash++
			}
		}); err != nil {
			t.Fatal(err)
		}
		if slots == 8192 && errorsInHash != 0 {
			t.Errorf("8192 slots a CPU: %d of this process's errors in syscall_errors, want 0", errorsInHash)
		}
		// Every process on the host claims slots: four a CPU are taken
		// long before the errors come.
		if slots == 4 && errorsInHash == 0 {
			t.Errorf("4 slots a CPU: none of this process's errors in syscall_errors")
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
