package privilege

import "testing"

func TestParseRelease(t *testing.T) {
	for _, tc := range []struct {
		release      string
		major, minor int
	}{
		{"6.1.0-56-cloud-amd64", 6, 1},
		{"6.18.44-fc-v657", 6, 18},
		{"5.19", 5, 19},
		{"5.4.0", 5, 4},
		{"4.19.0-27-amd64", 4, 19},
		{"garbage", 0, 0},
	} {
		major, minor := parseRelease(tc.release)
		if major != tc.major || minor != tc.minor {
			t.Errorf("parseRelease(%q) = %d.%d, want %d.%d", tc.release, major, minor, tc.major, tc.minor)
		}
	}
}

func TestParseKeep(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		names []string
		bad   bool
	}{
		{"none", nil, false},
		{"bpf", []string{"cap_bpf"}, false},
		{"cap_bpf, perfmon", []string{"cap_bpf", "cap_perfmon"}, false},
		{"BPF", []string{"cap_bpf"}, false},
		{"bpf,flying", nil, true},
	} {
		got, err := ParseKeep(tc.spec)
		if (err != nil) != tc.bad {
			t.Errorf("ParseKeep(%q) error = %v, want error %v", tc.spec, err, tc.bad)
			continue
		}
		if names := Names(got); !tc.bad && len(names) != len(tc.names) {
			t.Errorf("ParseKeep(%q) = %v, want %v", tc.spec, names, tc.names)
		} else {
			for i := range tc.names {
				if names[i] != tc.names[i] {
					t.Errorf("ParseKeep(%q) = %v, want %v", tc.spec, names, tc.names)
				}
			}
		}
	}
}
