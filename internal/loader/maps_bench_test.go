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
	testenv.RequireRoot(b)
	entries := envInt("ENTRIES", 140000)
	spec, err := loadSysobsd()
	if err != nil {
		b.Fatal(err)
	}
	spec.Maps["syscall_stats"].MaxEntries = uint32(envInt("MAXENTRIES", 262144))
	stats, err := ebpf.NewMap(spec.Maps["syscall_stats"])
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
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
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := m.ReadStats(func(SyscallKey, Counts) { n++ }); err != nil {
			b.Fatal(err)
		}
		if n != entries {
			b.Fatalf("read %d entries, want %d", n, entries)
		}
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
