package loader

import (
	"os"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// BenchmarkReadStats is the kernel side of a large host's scrape: reading
// 140,000 per-process entries (10,000 processes, 14 syscalls each) of the
// per-CPU hash in batches.
func BenchmarkReadStats(b *testing.B) {
	entries := envInt("ENTRIES", 140000)
	m, _ := filledStats(b, entries)
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := m.Stats().Read(func(SyscallKey, Counts) { n++ }); err != nil {
			b.Fatal(err)
		}
		if n != entries {
			b.Fatalf("read %d entries, want %d", n, entries)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*entries), "ns/entry")
}

// BenchmarkLookupStats is a fold by keys on the same map: the entries of 100
// exited processes looked up one by one. Its ns/entry against
// BenchmarkReadStats' is foldByKeysCost in internal/tally.
func BenchmarkLookupStats(b *testing.B) {
	m, keys := filledStats(b, envInt("ENTRIES", 140000))
	keys = keys[:1400]
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := m.Stats().Lookup(keys, func(SyscallKey, Counts) { n++ }); err != nil {
			b.Fatal(err)
		}
		if n != len(keys) {
			b.Fatalf("looked up %d entries, want %d", n, len(keys))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/entry")
}

// filledStats is a syscall_stats map of a large host: entries of 14
// syscalls for each of entries/14 processes.
func filledStats(b *testing.B, entries int) (*Maps, []SyscallKey) {
	b.Helper()
	testenv.RequireRoot(b)
	spec, err := loadSysobsd()
	if err != nil {
		b.Fatal(err)
	}
	spec.Maps["syscall_stats"].MaxEntries = uint32(envInt("MAXENTRIES", 262144))
	stats, err := ebpf.NewMap(spec.Maps["syscall_stats"])
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stats.Close() })
	m := &Maps{objs: sysobsdMaps{SyscallStats: stats}}
	if err := m.init(); err != nil {
		b.Fatal(err)
	}
	keys := make([]SyscallKey, entries)
	vals := make([]sysobsdSyscallStatsValue, entries*m.ncpu)
	for i := range keys {
		keys[i] = SyscallKey{Tgid: uint32(1000 + i/14), ExecId: 2, Nr: uint16(i % 14)}
	}
	for i := range vals {
		vals[i] = sysobsdSyscallStatsValue{Calls: 10, Ns: 1000}
	}
	if _, err := stats.BatchUpdate(keys, vals, nil); err != nil {
		b.Fatal(err)
	}
	return m, keys
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
