package bench

import (
	"encoding/binary"
	"testing"

	"github.com/sysobsd/sysobsd/internal/lifecycle"
)

// record builds a raw lifecycle ring-buffer sample as the kernel writes it
// (struct lifecycle_event: kind, tgid, exec_id, pad, cgroup_id, comm[16]).
func record(kind lifecycle.Kind, comm string) []byte {
	raw := make([]byte, 40)
	binary.NativeEndian.PutUint32(raw[0:4], uint32(kind))
	binary.NativeEndian.PutUint32(raw[4:8], 123456)
	binary.NativeEndian.PutUint32(raw[8:12], 7)
	binary.NativeEndian.PutUint64(raw[16:24], 0x1234)
	copy(raw[24:40], comm)
	return raw
}

// BenchmarkDecodeLifecycle decodes one record per op: the daemon pays this
// for every process start, exec, rename, cgroup move and exit on the host.
func BenchmarkDecodeLifecycle(b *testing.B) {
	for _, c := range []struct {
		name string
		raw  []byte
	}{
		{"exit", record(lifecycle.Exit, "postgres")},
		{"exec-full-comm", record(lifecycle.Exec, "kworker/u8:5-ev")},
		{"invalid-utf8", record(lifecycle.Rename, "bad\xff\xfename")},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.raw)))
			for b.Loop() {
				if _, err := lifecycle.Decode(c.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
