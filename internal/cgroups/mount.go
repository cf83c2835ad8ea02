package cgroups

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// FindMount returns the cgroup2 mount point from a mountinfo file (/proc/self/mountinfo):
// "/sys/fs/cgroup" on most hosts, "/sys/fs/cgroup/unified" on hybrid hosts.
//
// A mountinfo line is
//
//	36 35 98:0 /root /mount/point rw,noatime shared:1 master:2 - fstype source rw
//
// with any number of optional fields before the lone "-".
func FindMount(mountinfoPath string) (string, error) {
	f, err := os.Open(mountinfoPath)
	if err != nil {
		return "", fmt.Errorf("find the cgroup2 mount: %w", err)
	}
	defer f.Close()

	// A mount whose root is not "/" shows only part of the hierarchy (a bind mount of a
	// subtree); prefer the whole tree when both are there.
	var subtree string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		mountPoint := unescapeMountinfo(fields[4])
		if fields[3] == "/" {
			return mountPoint, nil
		}
		if subtree == "" {
			subtree = mountPoint
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("find the cgroup2 mount: read %s: %w", mountinfoPath, err)
	}
	if subtree != "" {
		return subtree, nil
	}
	return "", fmt.Errorf("no cgroup2 mount in %s: mount cgroup2 (mount -t cgroup2 none /sys/fs/cgroup) "+
		"or give its mount point explicitly", mountinfoPath)
}

// unescapeMountinfo undoes the kernel's octal escapes of space, tab, newline and
// backslash in mountinfo paths ("\040" for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }
