package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// tmuxPane is one pane of a tmux server of the test's own.
type tmuxPane struct {
	t      *testing.T
	socket string
}

func (p tmuxPane) run(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.socket, "-f", "/dev/null"}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen is what the pane shows now, a string per line, without the blank
// lines at the bottom.
func (p tmuxPane) screen() []string {
	lines := strings.Split(strings.TrimRight(p.run("capture-pane", "-p", "-t", "top"), "\n"), "\n")
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// waitFor polls the screen until cond holds, checking each capture with
// check: two captures in a row that fail it fail the test (one alone may
// be a frame tmux has read only part of).
func (p tmuxPane) waitFor(what string, timeout time.Duration, check func([]string) error, cond func([]string) bool) []string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		lines := p.screen()
		err := check(lines)
		if err != nil && lastErr != nil {
			p.t.Fatalf("%v (and in the capture before: %v); screen:\n%s", err, lastErr, strings.Join(lines, "\n"))
		}
		lastErr = err
		if err == nil && cond(lines) {
			return lines
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %s after %v; screen:\n%s", what, timeout, strings.Join(lines, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// topRowLine is a table row as top draws it: name, % (or - when not
// measured), calls/s, errors/s, the top syscall if any; nothing before it.
var topRowLine = regexp.MustCompile(`^(\S.{15}) +(\d+\.\d%|-) +\d+ +\d+( +\S+)?$`)

// stuckLine is one of the calls in flight longest, under the rows.
var stuckLine = regexp.MustCompile(`^  \S.* in \S+ for \d+\.\d s$`)

// topLayout checks that a screen is one frame of top's that fits a
// terminal of width × height: the header at the top left, rows that start
// at column 0 and are whole (a line ended without a carriage return in raw
// mode starts the next one where it ended; a line too wide wraps in two).
func topLayout(width, height int) func([]string) error {
	return func(lines []string) error {
		if len(lines) > height {
			return fmt.Errorf("%d lines on a terminal of %d", len(lines), height)
		}
		if len(lines) < topHeaderLines {
			return fmt.Errorf("%d lines: no header", len(lines))
		}
		for i, l := range lines {
			if n := len([]rune(l)); n > width {
				return fmt.Errorf("line %d is %d columns on a terminal of %d: %q", i, n, width, l)
			}
		}
		if !strings.HasPrefix(lines[0], "sysobsd top — sorted by ") {
			return fmt.Errorf("header not at column 0 of line 0: %q", lines[0])
		}
		if !strings.HasPrefix(lines[1], "%: ") || !strings.HasPrefix(lines[2], "COMM ") {
			return fmt.Errorf("header lines: %q, %q", lines[1], lines[2])
		}
		stuck := false // under the rows: the calls in flight longest
		for i, l := range lines[topHeaderLines:] {
			switch {
			case !stuck && strings.HasPrefix(l, "INSIDE A CALL LONGEST "):
				stuck = true
			case stuck && stuckLine.MatchString(l):
			case !stuck && topRowLine.MatchString(l):
			default:
				return fmt.Errorf("line %d is not a whole row starting at column 0: %q", topHeaderLines+i, l)
			}
		}
		return nil
	}
}

// percentOf is the % of comm's row on screen.
func percentOf(lines []string, comm string) (pct float64, topSyscall string, shown bool) {
	for _, l := range lines {
		m := topRowLine.FindStringSubmatch(l)
		if m == nil || strings.TrimSpace(m[1]) != comm {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(m[2], "%"), 64)
		if err != nil {
			return 0, "", false
		}
		return pct, strings.TrimSpace(m[3]), true
	}
	return 0, "", false
}

// sysobsd top in a real terminal (tmux, 120×30): rows start at the left
// edge in raw mode and fit the terminal; a thread blocked in one call
// reads 100%, not more, a process of three blocked threads 300%, a shell
// waiting for its child 100% in wait4; a resize redraws at the new size; q
// quits and gives the shell its terminal back as it was.
func TestTopInATerminalFitsItAndCountsBlockedThreadsPerInterval(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("tmux"); err != nil {
		testenv.Skip(t, "needs tmux (Debian: tmux)")
	}
	bin := binary(t)
	dir := t.TempDir()
	workload := testenv.BuildWorkload(t, dir)

	// The shell in the pane records the terminal's settings before and
	// after top, and how top exited.
	script := filepath.Join(dir, "run.sh")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
stty -g > %[1]s/stty.before
%[2]s top
echo $? > %[1]s/top.rc
stty -g > %[1]s/stty.after
echo TOP-EXITED
exec sleep 600
`, dir, bin)), 0o755); err != nil {
		t.Fatal(err)
	}
	pane := tmuxPane{t: t, socket: filepath.Join(dir, "tmux.sock")}
	pane.run("new-session", "-d", "-s", "top", "-x", "120", "-y", "30", script)
	t.Cleanup(func() { exec.Command("tmux", "-S", pane.socket, "kill-server").Run() })

	check := topLayout(120, 30)
	pane.waitFor("header", 30*time.Second, func([]string) error { return nil }, func(lines []string) bool {
		return len(lines) > 0 && strings.Contains(lines[0], "sysobsd top")
	})
	pane.waitFor("first frame", 10*time.Second, check, func([]string) bool { return true })

	// Started once top's programs are attached: their calls' entries are
	// seen. Names sort first among rows of equal %.
	suffix := strconv.Itoa(os.Getpid() % 100000)
	sleeper, threads, shell := "aslp"+suffix, "athr"+suffix, "ash"+suffix
	shellLink := filepath.Join(dir, shell)
	if err := os.Symlink("/bin/dash", shellLink); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []*exec.Cmd{
		exec.Command(workload, "sleep", sleeper, "60000"),         // one thread in nanosleep
		exec.Command(workload, "sleepers", threads, "2", "60000"), // two in nanosleep, main in futex (join)
		exec.Command(shellLink, "-c", "sleep 60; true"),           // a shell in wait4, as the user saw
	} {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}

	// Each % never above its bound; each reaches it in an interval in which
	// the threads were blocked throughout.
	bounds := map[string]float64{sleeper: 100, threads: 300, shell: 100}
	reached := map[string]bool{}
	pane.waitFor("every blocked process at its bound", 30*time.Second, func(lines []string) error {
		if err := check(lines); err != nil {
			return err
		}
		for comm, bound := range bounds {
			pct, sc, shown := percentOf(lines, comm)
			if !shown {
				continue
			}
			if pct > bound {
				t.Fatalf("%s reads %.1f%%, over its %.0f%%; screen:\n%s", comm, pct, bound, strings.Join(lines, "\n"))
			}
			if pct == bound {
				reached[comm] = true
				if comm == shell && sc != "wait4" {
					t.Errorf("the shell's top syscall is %q, want wait4", sc)
				}
			}
		}
		return nil
	}, func([]string) bool { return len(reached) == len(bounds) })

	// Sort keys redraw at once.
	pane.run("send-keys", "-t", "top", "c")
	pane.waitFor("sort by calls", 5*time.Second, check, func(lines []string) bool {
		return strings.HasPrefix(lines[0], "sysobsd top — sorted by calls")
	})
	pane.run("send-keys", "-t", "top", "t")
	pane.waitFor("sort by time", 5*time.Second, check, func(lines []string) bool {
		return strings.HasPrefix(lines[0], "sysobsd top — sorted by time")
	})

	// A resize: redrawn at 80×20 and kept so over the following refreshes.
	pane.run("resize-window", "-t", "top", "-x", "80", "-y", "20")
	small := topLayout(80, 20)
	frames := 0
	var last string
	pane.waitFor("three frames at 80×20", 15*time.Second, small, func(lines []string) bool {
		if now := strings.Join(lines, "\n"); now != last {
			frames, last = frames+1, now
		}
		return frames >= 3
	})

	pane.run("send-keys", "-t", "top", "q")
	lines := pane.waitFor("the shell after top", 10*time.Second, func([]string) error { return nil }, func(lines []string) bool {
		return strings.Contains(strings.Join(lines, "\n"), "TOP-EXITED")
	})
	if strings.Contains(strings.Join(lines, "\n"), "sysobsd top") {
		t.Errorf("top's table is still on the screen after it quit (the alternate screen not left):\n%s", strings.Join(lines, "\n"))
	}
	rc, err := os.ReadFile(filepath.Join(dir, "top.rc"))
	if err != nil || strings.TrimSpace(string(rc)) != "0" {
		t.Errorf("top exited with %q (%v), want 0", rc, err)
	}
	before, err1 := os.ReadFile(filepath.Join(dir, "stty.before"))
	after, err2 := os.ReadFile(filepath.Join(dir, "stty.after"))
	if err1 != nil || err2 != nil || string(before) != string(after) {
		t.Errorf("terminal settings after top %q, before %q (%v, %v): not restored", after, before, err1, err2)
	}
}
