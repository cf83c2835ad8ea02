package tally

import (
	"slices"
	"time"

	"github.com/sysobsd/sysobsd/internal/loader"
)

// foldByKeysCost is what looking up one entry by its key costs against
// reading one entry in a batch read of the whole map (BenchmarkLookupStats
// and BenchmarkReadStats in internal/loader: ~3.2 µs and ~0.57 µs here).
const foldByKeysCost = 6

// foldByKeysAlways is a number of lookups cheap enough (~1 ms) to make
// whatever the maps hold.
const foldByKeysAlways = 256

// fullReadEvery bounds how long folds go by keys alone: a full read also
// finds processes whose every record was lost (their entries are unnamed,
// and only a read that sees them makes them suspects for the sweep).
const fullReadEvery = 30 * time.Second

// keyBook knows every entry of the per-process maps, by process, from the
// kernel's announcements of new entries (the entry_keys ring buffer), so
// that a fold looks up the few entries of the processes that exited instead
// of reading every entry of the maps: on a host with 10,000 processes that
// read is 87 ms, and a fold runs every second a process exits.
type keyBook struct {
	// byTGID holds each process's entries packed (packKey): a large host's
	// 140,000 entries take ~1.3 MB.
	byTGID map[uint32][]uint64
	keys   int
	// complete is true while no announcement has been lost since the last
	// full read began (lostAt): every entry is then in the book. The book
	// starts incomplete, so the first sync reads the maps in full.
	complete     bool
	lostAt       uint64
	lastFullRead time.Time
}

func newKeyBook() keyBook {
	return keyBook{byTGID: make(map[uint32][]uint64)}
}

// packKey packs an entry's key less its tgid: exec_id, nr, abi (0 or 1)
// and errno (at most 4095; 0 for a stats entry) fit in 64 bits.
func packKey(execID uint32, nr, abi uint16, errno uint32) (uint64, bool) {
	if abi > 1 || errno > 0x7fff {
		return 0, false
	}
	return uint64(execID)<<32 | uint64(nr)<<16 | uint64(abi)<<15 | uint64(errno), true
}

func unpackKey(tgid uint32, p uint64) loader.ErrnoKey {
	return loader.ErrnoKey{
		Tgid:   tgid,
		ExecId: uint32(p >> 32),
		Nr:     uint16(p >> 16),
		Abi:    uint16(p>>15) & 1,
		Err:    uint32(p) & 0x7fff,
	}
}

// statsEntry is a stats entry's key as the book and the announcements
// write it: an errno key with errno 0.
func statsEntry(k loader.SyscallKey) loader.ErrnoKey {
	return loader.ErrnoKey{Tgid: k.Tgid, ExecId: k.ExecId, Nr: k.Nr, Abi: k.Abi}
}

// add records an entry (an announcement, or one a full read saw); it
// ignores one the book has. A key packKey cannot hold is not one the
// programs make: left out, a full read still folds its entry by name.
func (b *keyBook) add(k loader.ErrnoKey) {
	p, ok := packKey(k.ExecId, k.Nr, k.Abi, k.Err)
	if !ok {
		return
	}
	keys := b.byTGID[k.Tgid]
	if !slices.Contains(keys, p) {
		b.byTGID[k.Tgid] = append(keys, p)
		b.keys++
	}
}

// remove forgets a deleted entry.
func (b *keyBook) remove(k loader.ErrnoKey) {
	p, _ := packKey(k.ExecId, k.Nr, k.Abi, k.Err)
	keys := b.byTGID[k.Tgid]
	i := slices.Index(keys, p)
	if i < 0 {
		return
	}
	b.keys--
	keys[i] = keys[len(keys)-1]
	keys = keys[:len(keys)-1]
	if len(keys) == 0 {
		delete(b.byTGID, k.Tgid)
	} else {
		b.byTGID[k.Tgid] = keys
	}
}

// has reports whether the book knows the entry.
func (b *keyBook) has(k loader.ErrnoKey) bool {
	p, ok := packKey(k.ExecId, k.Nr, k.Abi, k.Err)
	return ok && slices.Contains(b.byTGID[k.Tgid], p)
}

// each calls fn for every entry of the process: stats entries with Err 0.
func (b *keyBook) each(tgid uint32, fn func(loader.ErrnoKey)) {
	for _, p := range b.byTGID[tgid] {
		fn(unpackKey(tgid, p))
	}
}

// usable reports whether a fold may go by the book's keys: nothing was lost
// since the last full read began (lost is the kernel's count now), and that
// read was recent enough.
func (b *keyBook) usable(lost uint64, now time.Time) bool {
	return b.complete && lost == b.lostAt && now.Sub(b.lastFullRead) < fullReadEvery
}

// fullReadDone notes a full read of both maps, begun when the kernel's
// count of lost announcements was lost: the book has every key since,
// unless that count grows.
func (b *keyBook) fullReadDone(lost uint64, began time.Time) {
	b.complete, b.lostAt, b.lastFullRead = true, lost, began
}
