package tally

import (
	"fmt"
	"testing"

	"github.com/sysobsd/sysobsd/internal/lifecycle"
)

// BenchmarkSnapshot is the tally's part of a scrape on a large host: 10,000
// running processes under 100 names, 10 syscalls each (100,000 kernel
// entries, what 10,000 exec'd programs hold), and 2,000 error entries.
func BenchmarkSnapshot(b *testing.B) {
	h := largeHost(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.tally.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFold is a timed fold on the same host: one of its processes
// exits per fold, the others run on.
func BenchmarkFold(b *testing.B) {
	h := largeHost(b)
	tgid := uint32(1000)
	b.ReportAllocs()
	for b.Loop() {
		h.record(lifecycle.Exit, tgid, 2, "worker")
		if err := h.tally.Fold(); err != nil {
			b.Fatal(err)
		}
		tgid++
	}
}

func largeHost(b *testing.B) *harness {
	b.Helper()
	const processes, perProcess = 10000, 10
	h := &harness{kernel: newFakeKernel(), procRoot: b.TempDir()}
	h.procs = lifecycle.NewProcessTable(h.procRoot)
	h.tally = New(h.kernel, h.procs, func(uint32) bool { return true })
	for p := range uint32(processes) {
		tgid := 1000 + p
		h.record(lifecycle.Fork, tgid, 1, "bash")
		h.record(lifecycle.Exec, tgid, 2, fmt.Sprintf("worker%02d", p%100))
		for nr := range uint16(perProcess) {
			h.kernel.call(tgid, 2, Syscall{NR: nr}, 10, 1000)
		}
		if p%5 == 0 {
			h.kernel.fail(tgid, 2, openat, enoent, 1)
		}
	}
	if _, err := h.tally.Snapshot(); err != nil {
		b.Fatal(err)
	}
	return h
}
