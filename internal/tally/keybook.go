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
	stats  map[uint32][]loader.SyscallKey // by tgid
	errors map[uint32][]loader.ErrnoKey
	keys   int // in both maps
	// complete is true while no announcement has been lost since the last
	// full read began (lostAt): every entry is then in the book. The book
	// starts incomplete, so the first sync reads the maps in full.
	complete     bool
	lostAt       uint64
	lastFullRead time.Time
}

func newKeyBook() keyBook {
	return keyBook{
		stats:  make(map[uint32][]loader.SyscallKey),
		errors: make(map[uint32][]loader.ErrnoKey),
	}
}

// note records an announcement: an errors entry's key, or with Err 0 a
// stats entry's.
func (b *keyBook) note(k loader.ErrnoKey) {
	if k.Err == 0 {
		b.addStats(loader.SyscallKey{Tgid: k.Tgid, ExecId: k.ExecId, Nr: k.Nr, Abi: k.Abi})
		return
	}
	b.addError(k)
}

// addStats and addError ignore a key the book has: a full read sees
// entries that were announced too.
func (b *keyBook) addStats(k loader.SyscallKey) {
	keys := b.stats[k.Tgid]
	if !slices.Contains(keys, k) {
		b.stats[k.Tgid] = append(keys, k)
		b.keys++
	}
}

func (b *keyBook) addError(k loader.ErrnoKey) {
	keys := b.errors[k.Tgid]
	if !slices.Contains(keys, k) {
		b.errors[k.Tgid] = append(keys, k)
		b.keys++
	}
}

// removeStats and removeErrors forget deleted entries.
func (b *keyBook) removeStats(deleted []loader.SyscallKey) {
	for _, k := range deleted {
		if remove(b.stats, k.Tgid, k) {
			b.keys--
		}
	}
}

func (b *keyBook) removeErrors(deleted []loader.ErrnoKey) {
	for _, k := range deleted {
		if remove(b.errors, k.Tgid, k) {
			b.keys--
		}
	}
}

func remove[K comparable](m map[uint32][]K, tgid uint32, k K) bool {
	keys := m[tgid]
	i := slices.Index(keys, k)
	if i < 0 {
		return false
	}
	keys[i] = keys[len(keys)-1]
	keys = keys[:len(keys)-1]
	if len(keys) == 0 {
		delete(m, tgid)
	} else {
		m[tgid] = keys
	}
	return true
}

// usable reports whether a fold may go by the book's keys: nothing was lost
// since the last full read began (lost is the kernel's count now), and that
// read was recent enough.
func (b *keyBook) usable(lost uint64, now time.Time) bool {
	return b.complete && lost == b.lostAt && now.Sub(b.lastFullRead) < fullReadEvery
}

// fullReadDone notes a full read of both maps that began when lost
// announcements were counted lost: the book has every key since.
func (b *keyBook) fullReadDone(lost uint64, began time.Time) {
	b.complete, b.lostAt, b.lastFullRead = true, lost, began
}
