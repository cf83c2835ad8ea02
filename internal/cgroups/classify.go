package cgroups

import (
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
)

// Identity is what a path says about who runs there.
type Identity struct {
	Path string // as given
	// Unit is the deepest systemd unit on the path, with systemd's \xNN escapes decoded
	// ("nginx.service", "session-2.scope", "docker-<id>.scope"); "" if none. A sub-cgroup
	// a service made itself ("/system.slice/nginx.service/worker") belongs to the service.
	// Decoded names read well but are not what systemctl takes ("by-uuid" for "by\x2duuid");
	// Path keeps the escaped one.
	Unit string
	// Container is the 64-hex id of the deepest container on the path (docker, containerd,
	// cri-o, podman, kubepods); "" if none.
	Container string
}

// unitSuffixes are the unit types systemd may give a cgroup. Processes live only in
// services, scopes, slices, and sockets, mounts and swaps (while their helpers run); timers
// and devices are here because matching them costs nothing.
var unitSuffixes = []string{".service", ".scope", ".slice", ".socket", ".mount", ".swap", ".timer", ".device"}

// containerPrefixes name a container cgroup "<prefix><id>", usually with ".scope" after it
// (the systemd cgroup driver) and without it under cgroupfs. "crio-conmon-<id>" and
// "libpod-conmon-<id>" are the runtimes' monitors, not the containers, and do not match
// because "conmon-<id>" is not an id.
var containerPrefixes = []string{"docker-", "cri-containerd-", "crio-", "libpod-"}

// Classify reads the systemd unit and the container id out of a cgroup v2 path. Where
// units or containers nest (systemd in a container, kind's Kubernetes in docker), the
// deepest one wins: it is the one closest to the process.
func Classify(path string) Identity {
	id := Identity{Path: path}
	for _, name := range strings.Split(path, "/") {
		if name == "" {
			continue
		}
		if u, ok := unitName(name); ok {
			id.Unit = u
		}
		if c, ok := containerID(name); ok {
			id.Container = c
		}
	}
	return id
}

// unitName returns the systemd unit a cgroup directory is named for.
func unitName(dir string) (string, bool) {
	// systemd prefixes "_" to unit names that would clash with cgroupfs files
	// ("cpu.service" is "_cpu.service") and to names that start with "_".
	dir = strings.TrimPrefix(dir, "_")
	for _, suffix := range unitSuffixes {
		stem, ok := strings.CutSuffix(dir, suffix)
		if !ok || stem == "" {
			continue
		}
		return unescapeUnit(stem) + suffix, true
	}
	return "", false
}

// unescapeUnit decodes the \xNN escapes systemd puts in unit names ("by\x2duuid" is
// "by-uuid"). unit.UnitNameUnescape also turns every "-" into "/" (it decodes an escaped
// path), which would make "docker-<id>" "docker/<id>" and "user-1000" "user/1000", so it
// is given one "-"-free piece at a time, and never the suffix.
func unescapeUnit(stem string) string {
	if !strings.Contains(stem, `\x`) {
		return stem
	}
	pieces := strings.Split(stem, "-")
	for i, p := range pieces {
		if strings.Contains(p, `\x`) {
			pieces[i] = unit.UnitNameUnescape(p)
		}
	}
	return strings.Join(pieces, "-")
}

// containerID returns the container id a cgroup directory is named for.
func containerID(dir string) (string, bool) {
	// containerd running with the cgroupfs driver for a kubelet that uses the systemd
	// driver makes the kubelet's "slice:prefix:id" a literal directory name:
	// "kubepods-burstable-pod<uid>.slice:cri-containerd:<id>".
	if i := strings.LastIndexByte(dir, ':'); i >= 0 {
		if id := dir[i+1:]; isContainerID(id) {
			return id, true
		}
		return "", false
	}
	stem := strings.TrimSuffix(dir, ".scope")
	for _, prefix := range containerPrefixes {
		if id, ok := strings.CutPrefix(stem, prefix); ok && isContainerID(id) {
			return id, true
		}
	}
	// Docker's and Kubernetes' cgroupfs drivers name the directory with the bare id
	// ("/docker/<id>", "/kubepods/burstable/pod<uid>/<id>"); so does nerdctl
	// ("/default/<id>"). 64 lowercase hex digits are specific enough to take anywhere.
	if isContainerID(dir) {
		return dir, true
	}
	return "", false
}

// isContainerID reports whether s is a full container id: 64 lowercase hex digits, as
// docker, containerd, cri-o and podman all write them.
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
