package loader

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// The Go types that decode what the kernel writes match the C structs as
// compiled into the embedded object: the same size, and every named field
// at the same offset. A struct changed in bpf/ without `make generate`, or
// a Go type edited by hand, fails here.
func TestGeneratedTypesMatchTheObjectsBTF(t *testing.T) {
	spec, err := loadSysobsd()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]any{
		"lifecycle_event":       LifecycleEvent{},
		"cgroup_new_event":      CgroupNewEvent{},
		"syscall_key":           SyscallKey{},
		"errno_key":             ErrnoKey{},
		"group_key":             GroupKey{},
		"syscall_stats_value":   sysobsdSyscallStatsValue{},
		"latency_hist_value":    sysobsdLatencyHistValue{},
		"filter_settings_value": FilterSettings{},
		"notable_event":         NotableEvent{},
		"start_slot":            sysobsdStartSlot{},
	}
	for name, goValue := range types {
		var st *btf.Struct
		if err := spec.Types.TypeByName(name, &st); err != nil {
			t.Errorf("struct %s: %v", name, err)
			continue
		}
		gt := reflect.TypeOf(goValue)
		if got := binary.Size(goValue); got != int(st.Size) {
			t.Errorf("struct %s: %d bytes in C, %d in Go (%s)", name, st.Size, got, gt)
		}
		for _, m := range st.Members {
			f, ok := gt.FieldByNameFunc(func(n string) bool { return strings.EqualFold(n, strings.ReplaceAll(m.Name, "_", "")) })
			if !ok {
				t.Errorf("struct %s: field %s has no Go twin in %s", name, m.Name, gt)
				continue
			}
			if want := uintptr(m.Offset.Bytes()); f.Offset != want {
				t.Errorf("struct %s: field %s at byte %d in C, %d in Go", name, m.Name, want, f.Offset)
			}
		}
	}
}

// The layout constants the Go side uses are the C's enum values.
func TestLayoutConstantsAreTheCs(t *testing.T) {
	spec, err := loadSysobsd()
	if err != nil {
		t.Fatal(err)
	}
	var layout *btf.Enum
	if err := spec.Types.TypeByName("layout", &layout); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"NR_SLOTS": NRSlots, "ABIS": ABIs, "HIST_BUCKETS": HistogramBuckets, "COMM_LEN": CommLen,
		"CGROUP_NAME_LEN": CgroupNameLen, "CGROUP_DEPTH": CgroupDepth, "PATH_CAPTURE": PathCapture,
	}
	for _, v := range layout.Values {
		if w, ok := want[v.Name]; ok && uint64(w) != v.Value {
			t.Errorf("%s = %d in C, %d in Go", v.Name, v.Value, w)
		}
		delete(want, v.Name)
	}
	for name := range want {
		if name != "CGROUP_PATH_LEN" {
			t.Errorf("%s: not in the C's enum layout", name)
		}
	}
}
