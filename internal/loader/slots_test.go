package loader

import "testing"

func TestStartSlotsCoverPIDMaxUpToTheBound(t *testing.T) {
	for _, tc := range []struct{ pidMax, want uint32 }{
		{1, 1},
		{301, 512},     // the smallest pid_max the kernel accepts
		{32768, 32768}, // the kernel's default
		{32769, 65536},
		{maxStartSlots, maxStartSlots},
		{4194304, maxStartSlots}, // systemd's 2^22: threads share slots
	} {
		if got := startSlots(tc.pidMax); got != tc.want {
			t.Errorf("startSlots(%d) = %d, want %d", tc.pidMax, got, tc.want)
		}
	}
}
