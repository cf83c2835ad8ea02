package main

import (
	"os/exec"
	"testing"
)

func TestDebianVersionSortsLikeGitDescribe(t *testing.T) {
	cases := []struct{ git, deb string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-rc1", "1.2.3~rc1"},
		{"v1.2.3-4-gabcdef0", "1.2.3+4.gabcdef0"},
		{"v1.2.3-4-gabcdef0-dirty", "1.2.3+4.gabcdef0+dirty"},
		{"v1.2.3-rc.1-4-gabcdef0", "1.2.3~rc.1+4.gabcdef0"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
		{"a27af5e", "0.0.0~git.a27af5e"},
		{"1234567-dirty", "0.0.0~git.1234567+dirty"},
		{"dev", "0.0.0~git.dev"},
	}
	for _, tc := range cases {
		got, err := debianVersion(tc.git)
		if err != nil || got != tc.deb {
			t.Errorf("debianVersion(%q) = %q, %v; want %q", tc.git, got, err, tc.deb)
		}
	}
	for _, bad := range []string{"", "v", "1.2 3", "-1", "v1.2.3-"} {
		if got, err := debianVersion(bad); err == nil {
			t.Errorf("debianVersion(%q) = %q, want an error", bad, got)
		}
	}

	// The order dpkg sees is the order of the releases.
	if _, err := exec.LookPath("dpkg"); err != nil {
		return
	}
	ordered := []string{"a27af5e", "v1.2.3-rc1", "v1.2.3-rc1-2-gabcdef0", "v1.2.3", "v1.2.3-4-gabcdef0", "v1.2.4"}
	for i := 1; i < len(ordered); i++ {
		a, _ := debianVersion(ordered[i-1])
		b, _ := debianVersion(ordered[i])
		if err := exec.Command("dpkg", "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg: %s (%s) does not sort before %s (%s)", a, ordered[i-1], b, ordered[i])
		}
	}
}
