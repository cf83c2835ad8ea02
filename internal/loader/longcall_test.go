package loader

import (
	"testing"
	"time"
)

// A long call is at least 2^24 ns and 4 ticks, on every tick a kernel has.
func TestLongCallTicks(t *testing.T) {
	for _, c := range []struct {
		hz   int
		want uint64
	}{
		{1000, 17}, // 17 ms
		{300, 6},   // 20 ms
		{250, 5},   // 20 ms
		{200, 4},   // 20 ms
		{100, 4},   // 40 ms
	} {
		tick := time.Second / time.Duration(c.hz)
		got := longCallTicks(tick)
		if got != c.want {
			t.Errorf("HZ %d: %d ticks, want %d", c.hz, got, c.want)
		}
		if long := time.Duration(got) * tick; long < longCallFloor || got < 4 {
			t.Errorf("HZ %d: a long call from %v (%d ticks): under 2^24 ns or 4 ticks", c.hz, long, got)
		}
	}
}
