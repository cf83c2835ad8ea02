package strace

import (
	"strings"
	"testing"
	"time"
)

func TestWriteTableLikeStrace(t *testing.T) {
	var b strings.Builder
	err := WriteTable(&b, []Row{
		{Syscall: "write", Calls: 14, Errors: 4, Time: 30 * time.Microsecond},
		{Syscall: "openat", Calls: 5, Errors: 3, Time: 70 * time.Microsecond},
		{Syscall: "brk", Calls: 5, Time: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 70.00    0.000070          14         5         3 openat
 30.00    0.000030           2        14         4 write
  0.00    0.000000           0         5           brk
------ ----------- ----------- --------- --------- ----------------
100.00    0.000100           4        24         7 total
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	rows, err := ParseTable(b.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows["write"].Calls != 14 || rows["write"].Errors != 4 || rows["brk"].Errors != 0 || rows["openat"].Time != 70*time.Microsecond {
		t.Errorf("ParseTable = %+v", rows)
	}
}

// strace's own output parses too.
func TestParseStraceOutput(t *testing.T) {
	out := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
  0.00    0.000000           0        14         4 write
  0.00    0.000000           0         1           execve
------ ----------- ----------- --------- --------- ----------------
100.00    0.000000           0        15         4 total
`
	rows, err := ParseTable(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows["write"].Calls != 14 || rows["write"].Errors != 4 || rows["execve"].Calls != 1 {
		t.Errorf("ParseTable = %+v", rows)
	}
}

// --bytes adds the bytes and bytes per call of the calls that move bytes;
// the others' columns are blank, and the total sums them.
func TestWriteTableWithBytes(t *testing.T) {
	var b strings.Builder
	err := WriteTableWithBytes(&b, []Row{
		{Syscall: "write", Calls: 1000, Time: 2 * time.Millisecond, Bytes: 1000, MovesBytes: true},
		{Syscall: "read", Calls: 4, Time: time.Millisecond, Bytes: 16384, MovesBytes: true},
		{Syscall: "openat", Calls: 3, Errors: 1, Time: time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `% time     seconds  usecs/call     calls    errors        bytes bytes/call syscall
------ ----------- ----------- --------- --------- ------------ ---------- ----------------
 50.00    0.002000           2      1000                   1000          1 write
 25.00    0.001000         250         4                  16384       4096 read
 25.00    0.001000         333         3         1                         openat
------ ----------- ----------- --------- --------- ------------ ---------- ----------------
100.00    0.004000           3      1007         1        17384         17 total
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}
