package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ForPID reads /proc/<pid>/cgroup (procRoot given) and returns the cgroup v2 path (the
// "0::" line). A process that has exited gives an error matching fs.ErrNotExist.
func ForPID(procRoot string, pid int) (string, error) {
	file := filepath.Join(procRoot, strconv.Itoa(pid), "cgroup")
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	for line := range strings.Lines(string(data)) {
		if path, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "0::"); ok {
			// The kernel marks a cgroup removed while a process was still in it (a
			// zombie's); the path is still where the process ran.
			return strings.TrimSuffix(path, " (deleted)"), nil
		}
	}
	// The kernel prints the "0::" line only once cgroup2 has been mounted somewhere.
	return "", fmt.Errorf("cgroup of pid %d: no cgroup v2 (\"0::\") line in %s: "+
		"mount cgroup2 (mount -t cgroup2 none /sys/fs/cgroup/unified)", pid, file)
}
