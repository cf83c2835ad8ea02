package cgroups

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindMountReadsMountinfo(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"mountinfo-cgroup2", "/sys/fs/cgroup"},         // unified-only host, optional fields
		{"mountinfo-hybrid", "/sys/fs/cgroup/unified"},  // v1 controllers plus cgroup2 (this CI machine)
		{"mountinfo-escaped", "/run/my cgroups\tv2\\x"}, // \040 \011 \134, several optional fields
		{"mountinfo-subtree", "/sys/fs/cgroup"},         // a bind-mounted subtree comes first
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := FindMount(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("FindMount = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFindMountWithoutCgroup2SaysHowToFixIt(t *testing.T) {
	file := filepath.Join("testdata", "mountinfo-cgroup1")
	_, err := FindMount(file)
	if err == nil {
		t.Fatal("FindMount found a cgroup2 mount on a cgroup v1-only host")
	}
	for _, want := range []string{file, "mount cgroup2", "or give"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestFindMountOfMissingFile(t *testing.T) {
	_, err := FindMount(filepath.Join(t.TempDir(), "mountinfo"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestUnescapeMountinfoLeavesOtherBackslashes(t *testing.T) {
	tests := map[string]string{
		`/plain`:        `/plain`,
		`/a\040b`:       `/a b`,
		`/end\04`:       `/end\04`, // too short to be an escape
		`/not\089octal`: `/not\089octal`,
		`/a\134040b`:    `/a\040b`, // an escaped backslash is not decoded twice
	}
	for in, want := range tests {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestForPIDReadsTheUnifiedLine(t *testing.T) {
	procRoot := t.TempDir()
	write := func(pid, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(procRoot, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(procRoot, pid, "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1", "0::/init.scope\n")
	write("2", "12:pids:/system.slice/nginx.service\n1:name=systemd:/system.slice/nginx.service\n0::/system.slice/nginx.service\n")
	write("3", "0::/system.slice/gone.service (deleted)\n")
	write("4", "0::/\n")
	write("5", "12:pids:/\n1:name=systemd:/init.scope\n") // cgroup2 never mounted

	tests := []struct {
		pid  int
		want string
	}{
		{1, "/init.scope"},
		{2, "/system.slice/nginx.service"},
		{3, "/system.slice/gone.service"},
		{4, "/"},
	}
	for _, tt := range tests {
		got, err := ForPID(procRoot, tt.pid)
		if err != nil {
			t.Errorf("ForPID(%d): %v", tt.pid, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ForPID(%d) = %q, want %q", tt.pid, got, tt.want)
		}
	}

	if _, err := ForPID(procRoot, 5); err == nil || !strings.Contains(err.Error(), "mount cgroup2") {
		t.Errorf("ForPID without a 0:: line: err = %v, want one saying to mount cgroup2", err)
	}
	if _, err := ForPID(procRoot, 6); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ForPID of an exited process: err = %v, want fs.ErrNotExist", err)
	}
}
