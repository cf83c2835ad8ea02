package tally

import (
	"cmp"
	"errors"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/loader"
)

// InFlightKey is one label set of the calls in flight: the process labels,
// the syscall and the state of the threads inside it (loader.Thread*).
type InFlightKey struct {
	Labels
	Syscall
	State uint32
}

// InFlight is how many threads of a label set are inside a syscall now,
// and how long the one inside longest has been.
type InFlight struct {
	Threads  int
	OldestNS uint64
}

func (v InFlight) plus(o InFlight) InFlight {
	return InFlight{Threads: v.Threads + o.Threads, OldestNS: max(v.OldestNS, o.OldestNS)}
}

// monotonicNS is CLOCK_MONOTONIC, the clock of the kernel's entry times.
func monotonicNS() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for this clock
	return uint64(ts.Nano())
}

// readInFlight takes the threads inside a call now from the kernel's
// iterator, labelled as their process's counters and under the same series
// cap: label sets beyond it are summed under "~other" (a gauge: the cap is
// per scrape). Nothing when the programs cannot report them.
func (t *Tally) readInFlight(snap *Snapshot) error {
	now := t.monotonic()
	inFlight := make(map[InFlightKey]InFlight)
	err := t.kernel.ReadInFlight(func(r loader.InFlightRecord) {
		g := t.generation(r.Tgid, r.ExecId)
		if !g.named { // its records are still in flight: next scrape
			return
		}
		age := uint64(0)
		if now > r.StartNs {
			age = now - r.StartNs
		}
		k := InFlightKey{g.labels, Syscall{ABI: r.Abi, NR: r.Nr}, r.State}
		inFlight[k] = inFlight[k].plus(InFlight{Threads: 1, OldestNS: age})
	})
	if errors.Is(err, loader.ErrNoInFlight) {
		return nil
	}
	if err != nil {
		// An optional gauge: its failure must not cost the scrape its
		// counters. Counted (sysobsd_in_flight_read_errors_total).
		t.inFlightErrors++
		return nil
	}
	snap.InFlight = t.capInFlight(inFlight)
	return nil
}

// capInFlight keeps the first MaxSeries series (sorted, so that the same
// threads give the same series) and sums the rest under "~other" labels,
// their syscall and state kept: the counters' cap, per scrape.
func (t *Tally) capInFlight(all map[InFlightKey]InFlight) map[InFlightKey]InFlight {
	max := t.limits.maxSeries()
	if len(all) <= max {
		return all
	}
	keys := make([]InFlightKey, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b InFlightKey) int {
		return cmp.Or(compareLabels(a.Labels, b.Labels), cmp.Compare(a.ABI, b.ABI), cmp.Compare(a.NR, b.NR), cmp.Compare(a.State, b.State))
	})
	other := EveryLabel(OtherComm).project(t.labeler.set)
	capped := make(map[InFlightKey]InFlight, max+1)
	for i, k := range keys {
		v := all[k]
		if i >= max {
			k.Labels = other
		}
		capped[k] = capped[k].plus(v)
	}
	return capped
}
