package lifecycle

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeProc makes a /proc look-alike: one directory per entry holding a comm
// file with the name and a newline, as the kernel writes it.
func fakeProc(t *testing.T, comms map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for dir, comm := range comms {
		writeComm(t, root, dir, comm)
	}
	return root
}

func writeComm(t *testing.T, root, dir, comm string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, dir, "comm"), []byte(comm+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

type nameCase struct {
	tgid, execID uint32
	want         string // "" for no name
}

func checkNames(t *testing.T, step string, pt *ProcessTable, cases []nameCase) {
	t.Helper()
	for _, c := range cases {
		got, ok := pt.Name(c.tgid, c.execID)
		if c.want == "" {
			if ok {
				t.Errorf("%s: Name(%d, %d) = %q, want no name", step, c.tgid, c.execID, got)
			}
			continue
		}
		if !ok || got != c.want {
			t.Errorf("%s: Name(%d, %d) = %q, %v; want %q", step, c.tgid, c.execID, got, ok, c.want)
		}
	}
}

func checkState(t *testing.T, step string, pt *ProcessTable, tgid uint32, known, exited bool, live, exitedCount int) {
	t.Helper()
	if got := pt.Known(tgid); got != known {
		t.Errorf("%s: Known(%d) = %v, want %v", step, tgid, got, known)
	}
	if got := pt.Exited(tgid); got != exited {
		t.Errorf("%s: Exited(%d) = %v, want %v", step, tgid, got, exited)
	}
	if got := pt.Live(); got != live {
		t.Errorf("%s: Live() = %d, want %d", step, got, live)
	}
	if got := pt.ExitedCount(); got != exitedCount {
		t.Errorf("%s: ExitedCount() = %d, want %d", step, got, exitedCount)
	}
}

func TestProcessLifeNamesEachGeneration(t *testing.T) {
	pt := NewProcessTable(t.TempDir()) // an empty /proc: only records name
	pt.Apply(lifecycle(Fork, 100, 5, "bash"))
	checkState(t, "fork", pt, 100, true, false, 1, 0)
	checkNames(t, "fork", pt, []nameCase{{100, 5, "bash"}})

	pt.Apply(lifecycle(Exec, 100, 6, "make"))
	checkNames(t, "exec", pt, []nameCase{{100, 5, "bash"}, {100, 6, "make"}})

	pt.Apply(lifecycle(Rename, 100, 6, "make-worker"))
	checkNames(t, "rename", pt, []nameCase{{100, 5, "bash"}, {100, 6, "make-worker"}})

	pt.Apply(lifecycle(Exec, 100, 7, "cc1"))
	pt.Apply(lifecycle(Exit, 100, 7, "cc1-renamed")) // the exit record carries the last name
	checkState(t, "exit", pt, 100, false, true, 0, 1)
	checkNames(t, "exit", pt, []nameCase{{100, 5, "bash"}, {100, 6, "make-worker"}, {100, 7, "cc1-renamed"}})

	pt.Forget(100)
	checkState(t, "forget", pt, 100, false, false, 0, 0)
	checkNames(t, "forget", pt, []nameCase{{100, 5, ""}, {100, 6, ""}, {100, 7, ""}})
}

func TestTwoProcessesKeepTheirOwnNames(t *testing.T) {
	pt := NewProcessTable(t.TempDir())
	pt.Apply(lifecycle(Fork, 10, 1, "a"))
	pt.Apply(lifecycle(Fork, 20, 1, "b"))
	pt.Apply(lifecycle(Exec, 20, 2, "b2"))
	pt.Apply(lifecycle(Exit, 10, 1, "a"))
	checkNames(t, "", pt, []nameCase{{10, 1, "a"}, {20, 1, "b"}, {20, 2, "b2"}})
	checkState(t, "", pt, 20, true, false, 1, 1)
	if !pt.Exited(10) {
		t.Error("Exited(10) = false after its exit record")
	}
	pt.ForgetExited(true)
	checkState(t, "kept through one full read", pt, 20, true, false, 1, 1)
	pt.ForgetExited(false)
	checkState(t, "kept through a fold by keys", pt, 20, true, false, 1, 1)
	pt.ForgetExited(true)
	checkState(t, "forget exited", pt, 20, true, false, 1, 0)
	checkNames(t, "forget exited", pt, []nameCase{{10, 1, ""}, {20, 2, "b2"}})
}

// A tgid reused before the exited process was folded: the exited process's
// generations keep their names for the fold, the new one's get theirs.
func TestReusedTGIDKeepsExitedGenerationsNames(t *testing.T) {
	pt := NewProcessTable(t.TempDir())
	pt.Apply(lifecycle(Fork, 300, 5, "old"))
	pt.Apply(lifecycle(Exec, 300, 6, "old-exec"))
	pt.Apply(lifecycle(Exit, 300, 6, "old-exec"))
	pt.Apply(lifecycle(Fork, 300, 9, "new")) // its parent's exec_id, not the old process's
	checkState(t, "reuse", pt, 300, true, true, 1, 1)
	checkNames(t, "reuse", pt, []nameCase{{300, 5, "old"}, {300, 6, "old-exec"}, {300, 9, "new"}})

	pt.Apply(lifecycle(Exec, 300, 10, "new-exec"))
	checkNames(t, "exec after reuse", pt, []nameCase{{300, 5, "old"}, {300, 6, "old-exec"}, {300, 9, "new"}, {300, 10, "new-exec"}})

	// The new process exits too before a fold: both keep their names.
	pt.Apply(lifecycle(Exit, 300, 10, "new-exec"))
	checkState(t, "second exit", pt, 300, false, true, 0, 1)
	checkNames(t, "second exit", pt, []nameCase{{300, 5, "old"}, {300, 6, "old-exec"}, {300, 9, "new"}, {300, 10, "new-exec"}})
}

// A tgid reused before the fold is exited and live at once: each generation
// is the process's whose records named it, final only if that one exited; a
// generation neither named is left to the running process.
func TestReusedTGIDGenerationsBelongToTheirProcess(t *testing.T) {
	pt := NewProcessTable(t.TempDir())
	pt.Apply(Record{Kind: Fork, TGID: 300, ExecID: 5, Comm: "old", CgroupID: 70})
	pt.Apply(Record{Kind: Exec, TGID: 300, ExecID: 6, Comm: "old-exec", CgroupID: 70})
	pt.Apply(Record{Kind: Exit, TGID: 300, ExecID: 6, Comm: "old-exec", CgroupID: 70})
	pt.Apply(Record{Kind: Fork, TGID: 300, ExecID: 90, Comm: "new", CgroupID: 80})
	for _, c := range []struct {
		execID          uint32
		exited, running bool
		cgroup          uint64
	}{
		{5, true, false, 70},  // the old process's, by its fork record
		{6, true, false, 70},  // and by its exec and exit records
		{90, false, true, 80}, // the new process's
		{91, false, true, 80}, // named by neither: the running process's
	} {
		if got := pt.ExitedGeneration(300, c.execID); got != c.exited {
			t.Errorf("ExitedGeneration(300, %d) = %v, want %v", c.execID, got, c.exited)
		}
		if got := pt.Running(300, c.execID); got != c.running {
			t.Errorf("Running(300, %d) = %v, want %v", c.execID, got, c.running)
		}
		if got, ok := pt.CgroupID(300, c.execID); !ok || got != c.cgroup {
			t.Errorf("CgroupID(300, %d) = %d, %v; want %d", c.execID, got, ok, c.cgroup)
		}
	}
	// 91 is the new process's exec, its record not applied yet: no name
	// until it is (never its fork's name, nor the old process's).
	checkNames(t, "reuse", pt, []nameCase{{300, 6, "old-exec"}, {300, 90, "new"}, {300, 91, ""}})

	// Without a live process the generations of the exited ones are final;
	// 91, after the last exit's generation, belongs to neither.
	pt.Apply(Record{Kind: Exit, TGID: 300, ExecID: 90, Comm: "new", CgroupID: 80})
	for _, execID := range []uint32{5, 6, 90} {
		if !pt.ExitedGeneration(300, execID) || pt.Running(300, execID) {
			t.Errorf("after both exits: ExitedGeneration(300, %d) = %v, Running = %v; want true, false", execID, pt.ExitedGeneration(300, execID), pt.Running(300, execID))
		}
	}
	if pt.ExitedGeneration(300, 91) || pt.Running(300, 91) {
		t.Errorf("after both exits: generation 91 exited or running, want neither (its records are in flight)")
	}
	// Forgotten, then found gone by the sweep: nothing is left unfolded.
	pt.Forget(300)
	pt.MarkGone(300)
	if !pt.ExitedGeneration(300, 91) {
		t.Error("ExitedGeneration(300, 91) = false after MarkGone, want true")
	}
}

// A scrape that drained the ring buffer between a process's fork record and
// its exec record reads the exec'd program's counts: they must not take the
// name from before the exec (the forking parent's), for counters never go
// back, and that name would keep them. Nor, when the tgid was reused before
// the fold, the exited process's, or be folded as its.
func TestExecRecordInFlightLeavesTheGenerationUnnamed(t *testing.T) {
	pt := NewProcessTable(t.TempDir())
	pt.Apply(lifecycle(Fork, 300, 5, "integration.tes"))
	pt.Apply(lifecycle(Exec, 300, 6, "pida"))
	pt.Apply(lifecycle(Exit, 300, 6, "pida"))
	// The pid reused; no record of the new process applied yet.
	// A later process's: after pida's last; or 2.1 to 4.3 s later (the start
	// time in exec_id wrapped), as if 2^31 to 2^32 execs before.
	for _, execID := range []uint32{90, 91, 6 + 3_000_000_000, 6 + 1<<31, 1<<32 + 6 - maxExecsBehind} {
		if got, ok := pt.Name(300, execID); ok {
			t.Errorf("Name(300, %d) = %q before its records, want no name", execID, got)
		}
		if pt.ExitedGeneration(300, execID) {
			t.Errorf("ExitedGeneration(300, %d) = true: a running process's entries would be folded", execID)
		}
	}
	pt.Apply(lifecycle(Fork, 300, 90, "integration.tes"))
	checkNames(t, "fork applied, exec in flight", pt, []nameCase{{300, 90, "integration.tes"}, {300, 91, ""}, {300, 6, "pida"}})
	pt.Apply(lifecycle(Exec, 300, 91, "pidb"))
	checkNames(t, "exec applied", pt, []nameCase{{300, 90, "integration.tes"}, {300, 91, "pidb"}, {300, 6, "pida"}})
}

func TestRecordsWithoutForkStillName(t *testing.T) {
	pt := NewProcessTable(t.TempDir())
	// The fork record was lost; exec and exit still name their generations.
	pt.Apply(lifecycle(Exec, 40, 2, "exec-only"))
	checkState(t, "exec", pt, 40, true, false, 1, 0)
	checkNames(t, "exec", pt, []nameCase{{40, 2, "exec-only"}, {40, 1, ""}})
	pt.Apply(lifecycle(Exit, 50, 3, "exit-only"))
	checkState(t, "exit", pt, 50, false, true, 1, 1)
	checkNames(t, "exit", pt, []nameCase{{50, 3, "exit-only"}, {50, 2, ""}})
}

func TestScanLearnsRunningProcesses(t *testing.T) {
	root := fakeProc(t, map[string]string{
		"1":           "systemd",
		"42":          "bash",
		"7":           "renamed-later",
		"self":        "not-a-pid",
		"thread-self": "not-a-pid",
		"4294967296":  "too-big", // not a uint32 tgid
		"-3":          "negative",
	})
	for _, dir := range []string{"sys", "99"} { // 99: gone between readdir and read
		if err := os.Mkdir(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "123"), []byte("a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeComm(t, root, "8", "bad\xffutf8")

	pt := NewProcessTable(root)
	pt.Apply(lifecycle(Rename, 7, 3, "from-record"))
	if err := pt.Scan(); err != nil {
		t.Fatalf("Scan() = %v", err)
	}
	if got := pt.Live(); got != 4 {
		t.Errorf("Live() = %d after scan, want 4 (1, 7, 8, 42)", got)
	}
	for _, tgid := range []uint32{1, 7, 8, 42} {
		if !pt.Known(tgid) {
			t.Errorf("Known(%d) = false after scan", tgid)
		}
	}
	for _, tgid := range []uint32{99, 123, 0} {
		if pt.Known(tgid) {
			t.Errorf("Known(%d) = true after scan", tgid)
		}
	}
	// Remove /proc so that names can only come from the table.
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	checkNames(t, "scan", pt, []nameCase{
		{1, 0, "systemd"}, {1, 17, "systemd"}, // any generation of a scanned process
		{42, 3, "bash"},
		{8, 1, "bad?utf8"},
		{7, 3, "from-record"}, // a record applied before the scan wins
		{99, 0, ""},
	})
}

func TestScanOfMissingProcFails(t *testing.T) {
	pt := NewProcessTable(filepath.Join(t.TempDir(), "no-proc"))
	if err := pt.Scan(); err == nil {
		t.Error("Scan() of a missing proc root succeeded")
	}
}

func TestNameFallsBackToProc(t *testing.T) {
	root := fakeProc(t, nil)
	pt := NewProcessTable(root)
	if got, ok := pt.Name(77, 3); ok {
		t.Fatalf("Name(77, 3) = %q before /proc has it", got)
	}
	if pt.Known(77) {
		t.Error("a failed Name made 77 known")
	}
	writeComm(t, root, "77", "late")
	checkNames(t, "proc", pt, []nameCase{{77, 3, "late"}})
	if !pt.Known(77) {
		t.Error("Known(77) = false after Name read its comm")
	}
	// Read once: the name stays when /proc changes or goes.
	writeComm(t, root, "77", "other")
	checkNames(t, "cached", pt, []nameCase{{77, 3, "late"}, {77, 4, "late"}})

	// A live process with a record for another generation.
	pt.Apply(lifecycle(Exec, 88, 2, "exec-only"))
	writeComm(t, root, "88", "from-proc")
	checkNames(t, "generation without record", pt, []nameCase{{88, 2, "exec-only"}, {88, 1, "from-proc"}})
}

func TestNameUnknownProcess(t *testing.T) {
	pt := NewProcessTable(fakeProc(t, map[string]string{"5": "five"}))
	pt.Apply(lifecycle(Fork, 6, 1, "six"))
	for _, tgid := range []uint32{0, 7, 4294967295} {
		if got, ok := pt.Name(tgid, 1); ok || got != "" {
			t.Errorf("Name(%d, 1) = %q, %v; want \"\", false", tgid, got, ok)
		}
	}
	if pt.Live() != 1 {
		t.Errorf("Live() = %d after failed lookups, want 1", pt.Live())
	}
}

func TestMarkGone(t *testing.T) {
	pt := NewProcessTable(t.TempDir())
	pt.Apply(lifecycle(Fork, 1, 1, "a"))
	pt.Apply(lifecycle(Exec, 1, 2, "a2"))

	pt.MarkGone(1) // its exit record was lost
	checkState(t, "live gone", pt, 1, false, true, 0, 1)
	checkNames(t, "live gone", pt, []nameCase{{1, 1, "a"}, {1, 2, "a2"}})

	// Its exec records may have been lost with its exit: the few
	// generations after the last it told of are its own, unnamed, final.
	for _, c := range []struct {
		execID uint32
		want   bool
	}{{3, true}, {2 + maxLostExecs, true}, {3 + maxLostExecs, false}, {1 << 31, false}} {
		if got := pt.ExitedGeneration(1, c.execID); got != c.want {
			t.Errorf("ExitedGeneration(1, %d) = %v after MarkGone, want %v", c.execID, got, c.want)
		}
	}
	checkNames(t, "lost exec", pt, []nameCase{{1, 3, ""}})

	pt.MarkGone(1) // again: nothing changes
	checkState(t, "gone twice", pt, 1, false, true, 0, 1)
	checkNames(t, "gone twice", pt, []nameCase{{1, 1, "a"}, {1, 2, "a2"}})

	pt.MarkGone(2) // never seen: exited without a name
	checkState(t, "unknown gone", pt, 2, false, true, 0, 2)
	checkNames(t, "unknown gone", pt, []nameCase{{2, 1, ""}})

	// An exit record came: the generation after its last is a later
	// process's reusing the tgid, not a lost exec.
	pt.Apply(lifecycle(Fork, 3, 1, "c"))
	pt.Apply(lifecycle(Exit, 3, 1, "c"))
	if pt.ExitedGeneration(3, 2) {
		t.Error("ExitedGeneration(3, 2) = true for a process whose exit record came, want false")
	}

	pt.Forget(1)
	pt.Forget(2)
	pt.Forget(3)
	checkState(t, "forgotten", pt, 1, false, false, 0, 0)
}
