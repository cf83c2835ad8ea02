package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sysobsd/sysobsd/internal/strace"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

// Bad input: one line naming the bad part, exit status 2, before anything
// runs (the parser's own cases are in internal/inject).
func TestInjectBadInputGivesOneLineAndExit2(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"inject", "-e", "inject=wirte:error=EIO", "--", "true"}, `sysobsd: inject: -e inject=wirte:error=EIO: unknown syscall "wirte"`},
		{[]string{"inject", "-e", "inject=write:error=ENOPE", "--", "true"}, `sysobsd: inject: -e inject=write:error=ENOPE: error=ENOPE: unknown errno`},
		{[]string{"inject", "-e", "inject=%fiel:error=EIO", "--", "true"}, `sysobsd: inject: -e inject=%fiel:error=EIO: unknown syscall "%fiel"`},
		{[]string{"inject", "-e", "inject=write:error=EIO:when=2...3", "--", "true"}, `sysobsd: inject: -e inject=write:error=EIO:when=2...3: when=2...3: the last call must be a number from 1 to 65535`},
		{[]string{"inject", "-e", "inject=write:colour=red", "--", "true"}, `sysobsd: inject: -e inject=write:colour=red: unknown key "colour"`},
		{[]string{"inject", "-e", "inject=write:error=70000", "--", "true"}, `sysobsd: inject: -e inject=write:error=70000: error=70000: out of range`},
		{[]string{"inject", "-e", "inject=write:error=EIO"}, `sysobsd: inject: give a command after --`},
		{[]string{"inject", "--", "true"}, `sysobsd: required flag(s) '--expr' not provided`},
		{[]string{"stat", "-e", "inject=write:error=EIO", "-p", "1"}, `sysobsd: stat: -e inject= needs a command after --, not -p`},
		{[]string{"stat", "-e", "inject=write:nope=1", "--", "true"}, `sysobsd: stat: -e inject=write:nope=1: unknown key "nope"`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(c.args, &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, c.want) {
				t.Errorf("stderr %q, want one line starting %q", msg, c.want)
			}
		})
	}
}

func TestInjectPassesTheExitStatusThrough(t *testing.T) {
	bin := binary(t)
	cases := []struct {
		script string
		want   int
	}{
		{"exit 7", 7},
		{"kill -TERM $$", 128 + 15},
		{"echo x > /dev/null || exit 3", 3}, // the write fails: the injection took
	}
	for _, c := range cases {
		err := exec.Command(bin, "inject", "-e", "inject=write:error=ENOSPC", "--", "sh", "-c", c.script).Run()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != c.want {
			t.Errorf("%s: %v, want exit status %d", c.script, err, c.want)
		}
	}
	out, err := exec.Command(bin, "inject", "-e", "inject=write:error=EIO", "--", "/nonexistent/program").CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 127 || !strings.Contains(string(out), "no such file or directory") {
		t.Errorf("a missing program: %v, %s; want exit status 127 and why", err, out)
	}
}

// injections compared with strace: every path (a plain errno filter, user
// notification for when=, retval=, several expressions at once) and every
// form of when=.
var injections = [][]string{
	{"inject=write:error=ENOSPC"},
	{"inject=openat:error=EACCES:when=3"},
	{"inject=openat:error=EACCES:when=2+"},
	{"inject=write:error=EIO:when=2+3"},
	{"inject=openat:error=ENOENT:when=2..5", "inject=write:error=ENOSPC:when=4..7+2"},
	{"inject=openat,write:error=EPERM:when=6"},
	{"inject=%desc:error=EBADF:when=3..4"},
	{"inject=write:retval=0:when=1..3"},
}

// The failures the workload reports under sysobsd inject are strace's, for
// each thread and process (strace counts when= per traced thread, and so
// does sysobsd).
func TestInjectFailsTheCallsStraceFails(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		testenv.Skip(t, "needs strace (Debian: strace)")
	}
	bin := binary(t)
	workload := testenv.BuildWorkload(t, t.TempDir())
	lines := func(out []byte) []string {
		l := strings.Split(strings.TrimSpace(string(out)), "\n")
		slices.Sort(l)
		return l
	}
	for _, exprs := range injections {
		t.Run(strings.Join(exprs, " "), func(t *testing.T) {
			var ours, theirs []string
			args := []string{"inject"}
			straceArgs := []string{"-f", "-qq", "-o", "/dev/null"}
			for _, e := range exprs {
				args = append(args, "-e", e)
				straceArgs = append(straceArgs, "-e", e)
			}
			out, err := exec.Command(bin, append(args, "--", workload, "faults", "9")...).Output()
			if err != nil {
				t.Fatalf("sysobsd inject: %v", err)
			}
			ours = lines(out)
			if out, err = exec.Command("strace", append(straceArgs, workload, "faults", "9")...).Output(); err != nil {
				t.Fatalf("strace: %v", err)
			}
			theirs = lines(out)
			if !slices.Equal(ours, theirs) {
				t.Errorf("sysobsd inject:\n%s\nstrace:\n%s", strings.Join(ours, "\n"), strings.Join(theirs, "\n"))
			}
			if len(ours) != 3 {
				t.Errorf("%d report lines, want 3 (main, thread, child)", len(ours))
			}
		})
	}
}

// sysobsd stat -e inject= and strace -f -c -e inject= give the same calls
// and errors, row by row, on the workload and on Debian's cat, ls and
// python3. futex is left out (thread joins contend by timing).
func TestStatInjectAgreesWithStraceRowByRow(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("strace"); err != nil {
		testenv.Skip(t, "needs strace (Debian: strace)")
	}
	bin := binary(t)
	dir := t.TempDir()
	workload := testenv.BuildWorkload(t, dir)
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type program struct {
		name  string
		argv  []string
		exprs [][]string
	}
	programs := []program{
		{"workload", []string{workload, "faults", "9"}, injections},
		{"cat", []string{"/bin/cat", file, "/nonexistent"}, [][]string{
			{"inject=openat:error=ENOENT:when=3"},
			{"inject=write:error=ENOSPC"},
			{"inject=%file:error=EACCES:when=4+2"},
			{"inject=read:error=EIO:when=2", "inject=fstat:error=EBADF:when=3"},
		}},
		{"ls", []string{"/bin/ls", "-l", dir}, [][]string{
			{"inject=openat:error=EMFILE:when=5..7"},
			{"inject=%%stat:error=ENOENT:when=2+"},
			{"inject=write:error=ENOSPC", "inject=getdents64:error=EIO:when=2"},
		}},
	}
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		programs = append(programs, program{"python3", []string{"/usr/bin/python3", "-S", "-c", "open('" + file + "').read()"}, [][]string{
			{"inject=openat:error=ENOENT:when=4..6"},
			{"inject=newfstatat:error=EACCES:when=3+4"},
		}})
	} else {
		t.Log("no /usr/bin/python3 (Debian's python3): python3 not compared")
	}
	for _, p := range programs {
		for _, exprs := range p.exprs {
			t.Run(p.name+" "+strings.Join(exprs, " "), func(t *testing.T) {
				ours, theirs := filepath.Join(t.TempDir(), "sysobsd.txt"), filepath.Join(t.TempDir(), "strace.txt")
				args := []string{"stat", "-o", ours}
				straceArgs := []string{"-f", "-c", "-o", theirs}
				for _, e := range exprs {
					args = append(args, "-e", e)
					straceArgs = append(straceArgs, "-e", e)
				}
				// The same stdio for both (ls and python3 probe it); the
				// command's own failures are expected: only the tables matter.
				var stderr bytes.Buffer
				ourCmd := exec.Command(bin, append(append(args, "--"), p.argv...)...)
				ourCmd.Stderr = &stderr
				if _, ok := ourCmd.Run().(*exec.ExitError); !ok && ourCmd.ProcessState == nil {
					t.Fatalf("sysobsd stat did not run: %s", stderr.String())
				}
				theirCmd := exec.Command("strace", append(straceArgs, p.argv...)...)
				theirCmd.Stderr = &bytes.Buffer{}
				_ = theirCmd.Run()
				got, want := readTable(t, ours), readTable(t, theirs)
				if len(want) < 5 {
					t.Fatalf("strace's table has %d rows: %v", len(want), want)
				}
				for name, w := range want {
					if g := got[name]; g.Calls != w.Calls || g.Errors != w.Errors {
						t.Errorf("%s: sysobsd %d calls %d errors, strace %d calls %d errors", name, g.Calls, g.Errors, w.Calls, w.Errors)
					}
				}
				for name := range got {
					if _, ok := want[name]; !ok {
						t.Errorf("%s: in sysobsd's table only", name)
					}
				}
			})
		}
	}
}

func readTable(t *testing.T, path string) map[string]strace.Row {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := strace.ParseTable(string(text))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	delete(rows, "futex")
	return rows
}
