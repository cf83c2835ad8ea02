package loader

import (
	"fmt"

	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// checkPrivilege fails early with the fix, before the kernel's EPERM turns
// into a confusing map or feature-probe error.
func checkPrivilege() error {
	set := cap.GetProc()
	has := func(v cap.Value) bool {
		on, err := set.GetFlag(cap.Effective, v)
		return err == nil && on
	}
	if has(cap.SYS_ADMIN) || (has(cap.BPF) && has(cap.PERFMON)) {
		return nil
	}
	return fmt.Errorf("load BPF: permission denied: sysobsd has neither CAP_BPF with CAP_PERFMON nor CAP_SYS_ADMIN; run it as root or grant those capabilities (the systemd unit does: AmbientCapabilities=CAP_BPF CAP_PERFMON)")
}
