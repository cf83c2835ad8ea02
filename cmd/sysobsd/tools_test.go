package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sysobsd/sysobsd/internal/notable"
	"github.com/sysobsd/sysobsd/internal/strace"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

// sysobsd stat and strace -c -f agree on calls and errors, row by row, for a
// program with threads, a child and failing calls. futex is left out: how
// often threads contend on a join is timing, not the program.
func TestStatAgreesWithStrace(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("strace"); err != nil {
		testenv.Skip(t, "needs strace (Debian: strace)")
	}
	bin := binary(t)
	workload := testenv.BuildWorkload(t, t.TempDir())
	dir := t.TempDir()
	ours, theirs := filepath.Join(dir, "sysobsd.txt"), filepath.Join(dir, "strace.txt")

	if out, err := exec.Command(bin, "stat", "-o", ours, "--", workload, "mix", "statmix").CombinedOutput(); err != nil {
		t.Fatalf("sysobsd stat: %v: %s", err, out)
	}
	if out, err := exec.Command("strace", "-f", "-c", "-o", theirs, workload, "mix", "statmix").CombinedOutput(); err != nil {
		t.Fatalf("strace: %v: %s", err, out)
	}
	read := func(path string) map[string]strace.Row {
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := strace.ParseTable(string(text))
		if err != nil {
			t.Fatal(err)
		}
		delete(rows, "futex")
		return rows
	}
	got, want := read(ours), read(theirs)
	if len(want) < 10 {
		t.Fatalf("strace's table has %d rows; want a real table:\n%v", len(want), want)
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok || g.Calls != w.Calls || g.Errors != w.Errors {
			t.Errorf("%s: sysobsd %d calls %d errors, strace %d calls %d errors", name, g.Calls, g.Errors, w.Calls, w.Errors)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: in sysobsd's table only", name)
		}
	}
	if got["getppid"].Calls != 4000 || got["openat"].Errors != 12 {
		t.Errorf("getppid %d calls, openat %d errors; want 4000 and 12", got["getppid"].Calls, got["openat"].Errors)
	}
}

// The command's exit status is sysobsd stat's.
func TestStatReturnsTheCommandsExitStatus(t *testing.T) {
	testenv.RequireRoot(t)
	bin := binary(t)
	err := exec.Command(bin, "stat", "-o", filepath.Join(t.TempDir(), "t.txt"), "--", "sh", "-c", "exit 7").Run()
	exitErr, ok := err.(*exec.ExitError)
	if !ok || exitErr.ExitCode() != 7 {
		t.Errorf("exit = %v, want status 7", err)
	}
}

// A non-root process's failed open of a root-only file shows in sysobsd
// trace --errno EACCES, with the path, within a second; JSON lines parse.
func TestTraceShowsEACCESWithPath(t *testing.T) {
	testenv.RequireRoot(t)
	bin := binary(t)
	secret := filepath.Join(t.TempDir(), "root-only")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(secret), 0o755)
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			trace := exec.Command(bin, "trace", "--errno", "EACCES", "--comm", "cat", "--output", format, "--duration", "20s")
			stdout, err := trace.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			trace.Stderr = &stderr
			if err := trace.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { trace.Process.Signal(syscall.SIGKILL); trace.Wait() })
			lines := make(chan string, 16)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			// Until the programs are attached the open is not seen: retry.
			var line string
			deadline := time.Now().Add(15 * time.Second)
			for line == "" && time.Now().Before(deadline) {
				failedAt := time.Now()
				exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", secret).Run()
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("trace ended; stderr: %s", stderr.String())
					}
					line = l
					if time.Since(failedAt) > time.Second {
						t.Errorf("line came %v after the failed open, want within 1 s", time.Since(failedAt))
					}
				case <-time.After(time.Second):
				}
			}
			if line == "" {
				t.Fatalf("no line within 15 s; stderr: %s", stderr.String())
			}
			if format == "text" {
				want := fmt.Sprintf(`cat openat(AT_FDCWD, %q, O_RDONLY) = -1 EACCES (Permission denied) <`, secret)
				if !strings.Contains(line, want) {
					t.Errorf("line %q lacks %q", line, want)
				}
				return
			}
			var n notable.Event
			if err := json.Unmarshal([]byte(line), &n); err != nil {
				t.Fatalf("json line %q: %v", line, err)
			}
			if n.Comm != "cat" || n.Syscall != "openat" || n.Errno != "EACCES" || n.Path != secret || n.Ret != -13 || n.PID == 0 {
				t.Errorf("json event %+v", n)
			}
		})
	}
}

// stat --bytes: a program's 1000 one-byte writes moved 1000 bytes, 1 per
// call; its failed writes move none.
func TestStatBytesCountsAOneByteWriterExactly(t *testing.T) {
	testenv.RequireRoot(t)
	bin := binary(t)
	workload := testenv.BuildWorkload(t, t.TempDir())
	out := filepath.Join(t.TempDir(), "table.txt")
	if msg, err := exec.Command(bin, "stat", "--bytes", "-o", out, "--", workload, "basic", "bytesw", "1000", "0", "5").CombinedOutput(); err != nil {
		t.Fatalf("sysobsd stat --bytes: %v: %s", err, msg)
	}
	table, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^\s*\S+\s+\S+\s+\d+\s+1005\s+5\s+1000\s+0 write$`)
	if !row.Match(table) {
		t.Errorf("no write row of 1005 calls, 5 errors, 1000 bytes, 0 bytes/call in:\n%s", table)
	}
}
