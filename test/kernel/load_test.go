package kernel

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

// Every option that changes which programs load, or which code paths in
// them the verifier walks, appears here; a new one gets its rows. Filters
// and events are map contents, not load options: the verifier walks their
// paths in every variant. Auto must reach tp_btf, so it stands for tp_btf.
var variants = []struct {
	name     string
	latency  bool
	every    uint32 // loader.Options.LatencySampleEvery: 16 is sampled latency, the default
	attach   string // loader.Options.Attach; "" is the daemon's auto
	wantMode string
}{
	{"auto/latency", true, 0, "", "tp_btf"},
	{"auto/sampled-latency", true, 16, "", "tp_btf"},
	{"auto/no-latency", false, 0, "", "tp_btf"},
	{"raw_tracepoint/latency", true, 0, "raw_tracepoint", "raw_tracepoint"},
	{"raw_tracepoint/sampled-latency", true, 16, "raw_tracepoint", "raw_tracepoint"},
	{"raw_tracepoint/no-latency", false, 0, "raw_tracepoint", "raw_tracepoint"},
}

// TestEveryProgramVariantLoads loads and attaches each variant and fails on
// any fallback: auto must reach tp_btf, task_rename must attach, and the
// loader must log no warning. A rejected program fails with the verifier's
// whole log.
func TestEveryProgramVariantLoads(t *testing.T) {
	testenv.RequireRoot(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			core, logs := observer.New(zap.DebugLevel)
			opts := loader.DefaultOptions()
			opts.Latency = v.latency
			opts.LatencySampleEvery = v.every
			opts.Attach = v.attach
			probes, err := loader.Load(opts, zap.New(core))
			if err != nil {
				t.Fatalf("load: %s", describeLoadError(err))
			}
			defer probes.Close()
			// A fallback that still loaded says why at debug or warn level.
			for _, entry := range logs.All() {
				if entry.Level >= zap.WarnLevel || strings.Contains(entry.Message, "failed") {
					t.Errorf("loader logged %s %q:%s", entry.Level, entry.Message, describeFields(entry.ContextMap()))
				}
			}
			if probes.AttachMode != v.wantMode {
				t.Errorf("attached with %s, want %s", probes.AttachMode, v.wantMode)
			}
			if !probes.RenamesTracked {
				t.Errorf("task_rename did not attach: renames are seen at exit only")
			}
		})
	}
}

// describeLoadError spells out the verifier's whole log: the loader's error
// may carry only its last line.
func describeLoadError(err error) string {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return fmt.Sprintf("%v\nthe verifier rejected a program; its whole log:\n%+v", err, verr)
	}
	return err.Error()
}

// describeFields prints zap fields one a line; errorVerbose holds a
// VerifierError's whole log.
func describeFields(fields map[string]any) string {
	var b strings.Builder
	for k, v := range fields {
		fmt.Fprintf(&b, "\n  %s: %v", k, v)
	}
	return b.String()
}
