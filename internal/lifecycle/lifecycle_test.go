package lifecycle

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sysobsd/sysobsd/internal/loader"
)

// record builds a raw ring-buffer sample from loader.LifecycleEvent, the
// bpf2go mirror of struct lifecycle_event, in native byte order.
func record(kind Kind, tgid, execID uint32, comm []byte) []byte {
	ev := loader.LifecycleEvent{Kind: uint32(kind), Tgid: tgid, ExecId: execID}
	for i := range min(len(comm), len(ev.Comm)) {
		ev.Comm[i] = int8(comm[i])
	}
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, ev); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// commOffset is where comm[16] starts: it is the struct's last field.
var commOffset = binary.Size(loader.LifecycleEvent{}) - 16

func lifecycle(kind Kind, tgid, execID uint32, comm string) Record {
	return Record{Kind: kind, TGID: tgid, ExecID: execID, Comm: comm}
}

// firstUnknownKind is one past the last kind the decoder knows.
func firstUnknownKind() Kind {
	k := Fork
	for !strings.HasPrefix(k.String(), "kind_") {
		k++
	}
	return k
}

// A cgroup_new record carries the new cgroup's path after the common part;
// one cut short of it is an error, not a cgroup without a path.
func TestDecodeCgroupNew(t *testing.T) {
	ev := loader.CgroupNewEvent{}
	ev.Head.Kind = uint32(CgroupNew)
	ev.Head.CgroupId = 4242
	copy(ev.Path[:], []int8{'/', 'a', '.', 's', 'l', 'i', 'c', 'e'})
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, ev); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(buf.Bytes())
	if err != nil || got.Kind != CgroupNew || got.CgroupID != 4242 || got.Path != "/a.slice" {
		t.Errorf("Decode = %+v, %v; want cgroup_new 4242 /a.slice", got, err)
	}
	if got.Kind.String() != "cgroup_new" {
		t.Errorf("Kind.String() = %q", got.Kind.String())
	}
	if _, err := Decode(buf.Bytes()[:lifecycleSize+8]); !errors.Is(err, ErrShortRecord) {
		t.Errorf("a cut record: err = %v, want ErrShortRecord", err)
	}
	// Other kinds carry no path.
	if got, err := Decode(record(Fork, 1, 2, []byte("x"))); err != nil || got.Path != "" {
		t.Errorf("fork record: %+v, %v; want no path", got, err)
	}
}

func TestRecordLayout(t *testing.T) {
	if want := binary.Size(loader.LifecycleEvent{}); lifecycleSize != want {
		t.Errorf("lifecycleSize = %d, loader.LifecycleEvent is %d bytes", lifecycleSize, want)
	}
	// Fields the decoder reads at fixed offsets.
	raw := record(Exec, 0x01020304, 0x05060708, []byte("abc"))
	if got := binary.NativeEndian.Uint32(raw[0:]); got != uint32(Exec) {
		t.Errorf("kind at offset 0 = %d", got)
	}
	if got := binary.NativeEndian.Uint32(raw[4:]); got != 0x01020304 {
		t.Errorf("tgid at offset 4 = %#x", got)
	}
	if got := binary.NativeEndian.Uint32(raw[8:]); got != 0x05060708 {
		t.Errorf("exec_id at offset 8 = %#x", got)
	}
	if got := string(raw[commOffset : commOffset+4]); got != "abc\x00" {
		t.Errorf("comm at offset %d = %q", commOffset, got)
	}
}

func TestDecodeLifecycle(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
		want Record
	}{
		{"fork", record(Fork, 100, 3, []byte("bash\x00")), lifecycle(Fork, 100, 3, "bash")},
		{"exec", record(Exec, 100, 4, []byte("make")), lifecycle(Exec, 100, 4, "make")},
		{"rename", record(Rename, 1, 0, []byte("systemd")), lifecycle(Rename, 1, 0, "systemd")},
		{"exit", record(Exit, 4294967295, 4294967295, []byte("kworker/u8:2")), lifecycle(Exit, 4294967295, 4294967295, "kworker/u8:2")},
		{"empty comm", record(Exit, 7, 1, nil), lifecycle(Exit, 7, 1, "")},
		{"comm of 15 bytes", record(Fork, 9, 2, []byte("abcdefghijklmno")), lifecycle(Fork, 9, 2, "abcdefghijklmno")},
		{"comm of 16 bytes without NUL", record(Fork, 9, 2, []byte("abcdefghijklmnop")), lifecycle(Fork, 9, 2, "abcdefghijklmnop")},
		{"garbage after NUL ignored", record(Exec, 9, 2, []byte("sh\x00garbage\xff\xfe")), lifecycle(Exec, 9, 2, "sh")},
		{"valid UTF-8 kept", record(Rename, 9, 2, []byte("日本語")), lifecycle(Rename, 9, 2, "日本語")},
		{"invalid byte replaced", record(Rename, 9, 2, []byte("caf\xe9")), lifecycle(Rename, 9, 2, "caf?")},
		{"run of invalid bytes is one replacement", record(Rename, 9, 2, []byte("a\xff\xfe\xfdb")), lifecycle(Rename, 9, 2, "a?b")},
		{"truncated multibyte rune", record(Rename, 9, 2, []byte("abcdefghijklmn日")), lifecycle(Rename, 9, 2, "abcdefghijklmn?")},
		{"longer record", append(record(Exit, 5, 6, []byte("x")), 1, 2, 3, 4, 5, 6, 7, 8), lifecycle(Exit, 5, 6, "x")},
		{"pad ignored", func() []byte {
			ev := loader.LifecycleEvent{Kind: uint32(Fork), Tgid: 5, ExecId: 6, Pad: 0xdeadbeef}
			ev.Comm[0] = 'y'
			var buf bytes.Buffer
			if err := binary.Write(&buf, binary.NativeEndian, ev); err != nil {
				panic(err)
			}
			return buf.Bytes()
		}(), lifecycle(Fork, 5, 6, "y")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.raw)
			if err != nil {
				t.Fatalf("Decode = %v", err)
			}
			if got != tt.want {
				t.Errorf("Decode = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeLifecycleDoesNotKeepTheBuffer(t *testing.T) {
	raw := record(Exec, 1, 2, []byte("before"))
	got, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	copy(raw[commOffset:], "after!")
	if got.Comm != "before" {
		t.Errorf("Comm changed to %q when the ring buffer was reused", got.Comm)
	}
}

func TestDecodeLifecycleShortRecord(t *testing.T) {
	full := record(Exit, 1, 2, []byte("x"))
	for _, n := range []int{0, 1, 4, 16, lifecycleSize - 1} {
		_, err := Decode(full[:n])
		if !errors.Is(err, ErrShortRecord) {
			t.Errorf("Decode(%d bytes) = %v, want ErrShortRecord", n, err)
			continue
		}
		if want := "lifecycle record too short: " + strconv.Itoa(n) + " bytes, want " + strconv.Itoa(lifecycleSize); err.Error() != want {
			t.Errorf("Decode(%d bytes) error %q, want %q", n, err, want)
		}
	}
	if _, err := Decode(nil); !errors.Is(err, ErrShortRecord) {
		t.Errorf("Decode(nil) = %v, want ErrShortRecord", err)
	}
}

func TestDecodeLifecycleUnknownKind(t *testing.T) {
	for _, k := range []Kind{0, firstUnknownKind(), 99, 0xffffffff} {
		got, err := Decode(record(k, 31, 4, []byte("odd")))
		if err == nil {
			t.Errorf("kind %d decoded without error: %+v", uint32(k), got)
			continue
		}
		if errors.Is(err, ErrShortRecord) {
			t.Errorf("kind %d: error %v is ErrShortRecord", uint32(k), err)
		}
		if want := "lifecycle record of unknown kind " + strconv.Itoa(int(uint32(k))); err.Error() != want {
			t.Errorf("kind %d: error %q, want %q", uint32(k), err, want)
		}
		// The rest is still decoded, for the log line.
		if want := lifecycle(k, 31, 4, "odd"); got != want {
			t.Errorf("kind %d: decoded %+v, want %+v", uint32(k), got, want)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		Fork: "fork", Exec: "exec", Rename: "rename", Exit: "exit", Cgroup: "cgroup", CgroupGone: "cgroup_gone",
		0: "kind_0", 99: "kind_99",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint32(k), got, want)
		}
	}
}

// FuzzDecodeLifecycle checks that any sample decodes without panicking and
// that a decoded name is valid UTF-8 (a Prometheus label value) made from at
// most the 16 comm bytes.
func FuzzDecodeLifecycle(f *testing.F) {
	f.Add(record(Fork, 1, 0, []byte("init")))
	f.Add(record(Exit, 100, 3, []byte("abcdefghijklmnop")))
	f.Add(record(Rename, 100, 3, []byte("caf\xe9\x00")))
	f.Add(record(9, 1, 1, []byte("\xff\xfe\xfd")))
	f.Add([]byte("short"))
	f.Add(append(record(CgroupNew, 0, 0, nil), []byte("/system.slice/a.service\x00")...)) // cut short
	f.Add(append(record(CgroupNew, 0, 0, nil), bytes.Repeat([]byte("/a\xff"), 86)...))    // no NUL
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := Decode(raw)
		if len(raw) < lifecycleSize {
			if !errors.Is(err, ErrShortRecord) {
				t.Fatalf("%d bytes: error %v, want ErrShortRecord", len(raw), err)
			}
			return
		}
		if ev.Kind == CgroupNew && len(raw) < cgroupNewSize {
			if !errors.Is(err, ErrShortRecord) {
				t.Fatalf("cgroup_new record of %d bytes: error %v, want ErrShortRecord", len(raw), err)
			}
			return
		}
		if ok := ev.Kind >= Fork && ev.Kind < firstUnknownKind(); ok != (err == nil) {
			t.Fatalf("kind %d: error %v", uint32(ev.Kind), err)
		}
		if !utf8.ValidString(ev.Path) || strings.ContainsRune(ev.Path, 0) || (ev.Path != "" && ev.Kind != CgroupNew) {
			t.Fatalf("kind %v: Path %q", ev.Kind, ev.Path)
		}
		if ev.TGID != binary.NativeEndian.Uint32(raw[4:]) || ev.ExecID != binary.NativeEndian.Uint32(raw[8:]) {
			t.Fatalf("decoded %+v from %x", ev, raw[:12])
		}
		if !utf8.ValidString(ev.Comm) {
			t.Fatalf("Comm %q is not valid UTF-8", ev.Comm)
		}
		if strings.ContainsRune(ev.Comm, 0) {
			t.Fatalf("Comm %q contains NUL", ev.Comm)
		}
		comm, _, _ := bytes.Cut(raw[commOffset:commOffset+16], []byte{0})
		if utf8.Valid(comm) {
			if ev.Comm != string(comm) || len(ev.Comm) > 16 {
				t.Fatalf("Comm %q, want %q", ev.Comm, comm)
			}
		} else if n := utf8.RuneCountInString(ev.Comm); n > len(comm) {
			// An invalid byte becomes U+FFFD (3 bytes), so the label can be
			// longer than 16 bytes, but never has more runes than comm bytes.
			t.Fatalf("Comm %q has %d runes from %d bytes", ev.Comm, n, len(comm))
		}
	})
}
