package loader

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

func TestUnsupportedKernelNamesEverythingMissingInOneLine(t *testing.T) {
	has := func() error { return nil }
	lacks := func() error { return fmt.Errorf("%w: invalid func unknown#158", errFeatureMissing) }
	cannotTell := func() error { return errors.New("operation not permitted") }
	for _, tc := range []struct {
		name     string
		features []kernelFeature
		want     string // "": no error
	}{
		{"all there", []kernelFeature{{"a", "5.6", has}, {"b", "5.13", has}}, ""},
		{"a probe that cannot tell does not fail", []kernelFeature{{"a", "5.6", cannotTell}, {"b", "5.13", has}}, ""},
		{"one missing", []kernelFeature{{"a", "5.6", has}, {"b", "5.13", lacks}},
			"load BPF: kernel 5.10.0-30-cloud-amd64 lacks b (Linux 5.13); sysobsd needs Linux ≥5.13 with BTF"},
		{"two missing", []kernelFeature{{"a", "5.11", lacks}, {"b", "5.13", lacks}},
			"load BPF: kernel 5.10.0-30-cloud-amd64 lacks a (Linux 5.11) and b (Linux 5.13); sysobsd needs Linux ≥5.13 with BTF"},
		{"three missing, the minimum from the last feature", []kernelFeature{{"a", "5.11", lacks}, {"b", "5.12", lacks}, {"c", "5.13", lacks}},
			"load BPF: kernel 5.10.0-30-cloud-amd64 lacks a (Linux 5.11), b (Linux 5.12) and c (Linux 5.13); sysobsd needs Linux ≥5.13 with BTF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkKernelFeatures("5.10.0-30-cloud-amd64", tc.features, zap.NewNop())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
			if !errors.Is(err, ebpf.ErrNotSupported) {
				t.Errorf("errors.Is(%v, ebpf.ErrNotSupported) = false", err)
			}
		})
	}
}

// TestKernelFeatureProbesPassHere runs the real probes: the host's kernel
// (and the kernel-test VMs' 6.1 and 6.12) has everything, so any probe that
// reports a feature missing there is wrong, and one that cannot tell is
// reported too.
func TestKernelFeatureProbesPassHere(t *testing.T) {
	testenv.RequireRoot(t)
	for _, f := range kernelFeatures {
		if err := f.probe(); err != nil {
			t.Errorf("probe for %s (Linux %s): %v", f.name, f.since, err)
		}
	}
	if err := requireKernelFeatures(zap.NewNop()); err != nil {
		t.Error(err)
	}
}

// TestTracingHelperProbeSeesAHelperTheProgramMayNotCall: the verifier
// refuses skb helpers in tracing programs with "unknown func", as 5.10's
// refuses bpf_get_current_task_btf.
func TestTracingHelperProbeSeesAHelperTheProgramMayNotCall(t *testing.T) {
	testenv.RequireRoot(t)
	err := probeTracingHelper(asm.Instructions{
		asm.FnSkbStoreBytes.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	})
	if !errors.Is(err, errFeatureMissing) {
		t.Fatalf("got %v, want errFeatureMissing", err)
	}
}

func TestJoinAnd(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"a"}, "a"},
		{[]string{"a", "b"}, "a and b"},
		{[]string{"a", "b", "c"}, "a, b and c"},
	} {
		if got := joinAnd(tc.in); got != tc.want {
			t.Errorf("joinAnd(%q) = %q, want %q", strings.Join(tc.in, "|"), got, tc.want)
		}
	}
}
