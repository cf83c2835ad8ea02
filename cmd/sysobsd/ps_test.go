package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// sysobsd ps shows what a frozen process is doing, from the running daemon,
// without ptrace: a cat blocked in read on a pipe, with its fd, the pipe it
// reads, sleeping, and how long it has been inside; --state and --min-age
// leave it out when it does not match, and a process not blocked is not
// listed.
func TestPsShowsAThreadBlockedInReadLikeStraceP(t *testing.T) {
	d := startDaemon(t, nil)
	bin := binary(t)
	comm := "psread" + time.Now().Format("150405")
	link := filepath.Join(t.TempDir(), comm)
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(cat, link); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(link)
	child.Stdin = r
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer func() { w.Close(); child.Wait() }()

	ps := func(args ...string) string {
		out, err := exec.Command(bin, append([]string{"ps", "--daemon", d.addr, "--comm", comm}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("sysobsd ps %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	line := regexp.MustCompile(`^\d+ ` + comm + ` read\(0, 0x[0-9a-f]+, \d+\) = \? <unfinished: (\d+\.\d{3}) s, sleeping> \[fd: pipe:\[\d+\]\]\n$`)
	var out string
	ok := testenv.Eventually(10*time.Second, func() bool {
		out = ps("--min-age", "1s")
		return line.MatchString(out)
	})
	if !ok {
		t.Fatalf("sysobsd ps --comm %s --min-age 1s =\n%s\nwant one line like strace -p's: %s", comm, out, line)
	}
	if got := ps("--state", "uninterruptible"); got != "" {
		t.Errorf("--state uninterruptible listed %q; cat sleeps", got)
	}
	if got := ps("--min-age", "1h"); got != "" {
		t.Errorf("--min-age 1h listed %q", got)
	}
}

// Without a daemon, ps says where it looked and why it needs one.
func TestPsWithoutADaemonSaysSo(t *testing.T) {
	out, err := exec.Command(binary(t), "ps", "--daemon", freeAddress(t)).CombinedOutput()
	if err == nil || !regexp.MustCompile(`^sysobsd: ps: get http://127\.0\.0\.1:\d+/api/v1/in_flight: .*connection refused; is sysobsd serving there\?`).Match(out) {
		t.Errorf("sysobsd ps without a daemon: %v, %q", err, out)
	}
}
