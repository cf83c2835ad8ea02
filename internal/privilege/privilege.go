// Package privilege checks that sysobsd may load BPF programs, and drops
// every capability it no longer needs once they are attached.
package privilege

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// Check fails early with the fix, before the kernel's EPERM turns into a
// confusing map or feature-probe error.
func Check() error {
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

// KeepAuto is the default of --capabilities.keep: nothing from Linux 5.19 on,
// where map reads through an existing fd need no capability; CAP_BPF before.
const KeepAuto = "auto"

// ParseKeep reads --capabilities.keep: "auto", "none", or a comma-separated
// list of capability names ("bpf,perfmon", "cap_bpf").
func ParseKeep(spec string) ([]cap.Value, error) {
	switch spec {
	case KeepAuto:
		if KernelAtLeast(5, 19) {
			return nil, nil
		}
		return []cap.Value{cap.BPF}, nil
	case "none", "":
		return nil, nil
	}
	var keep []cap.Value
	for _, name := range strings.Split(spec, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if !strings.HasPrefix(name, "cap_") {
			name = "cap_" + name
		}
		v, err := cap.FromName(name)
		if err != nil {
			return nil, fmt.Errorf("--capabilities.keep=%s: unknown capability %q; give auto, none or names like bpf,perfmon", spec, name)
		}
		keep = append(keep, v)
	}
	return keep, nil
}

// Drop clears every capability except keep, in every thread (libcap's psx),
// from the effective, permitted, inheritable and ambient sets.
func Drop(keep []cap.Value) error {
	if err := cap.ResetAmbient(); err != nil {
		return fmt.Errorf("drop ambient capabilities: %w", err)
	}
	set := cap.NewSet()
	if len(keep) > 0 {
		if err := set.SetFlag(cap.Permitted, true, keep...); err != nil {
			return err
		}
		if err := set.SetFlag(cap.Effective, true, keep...); err != nil {
			return err
		}
	}
	if err := set.SetProc(); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	return nil
}

// Names lists capabilities for logs.
func Names(vs []cap.Value) []string {
	names := make([]string, 0, len(vs))
	for _, v := range vs {
		names = append(names, v.String())
	}
	return names
}

// KernelAtLeast reports whether the running kernel is major.minor or newer.
func KernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	maj, min := parseRelease(unix.ByteSliceToString(u.Release[:]))
	return maj > major || (maj == major && min >= minor)
}

func parseRelease(release string) (major, minor int) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	major, _ = strconv.Atoi(parts[0])
	digits := strings.TrimLeftFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	end := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		digits = digits[:end]
	}
	minor, _ = strconv.Atoi(digits)
	return major, minor
}
