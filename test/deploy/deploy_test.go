// Package deploytest checks what deploy/ ships against the tools that
// consume it: systemd-analyze for the units, dpkg and lintian for the .deb,
// a YAML decoder for the Kubernetes manifests; and runs the daemon in an
// imitation of the unit's sandbox.
package deploytest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// shared holds what several tests build once: the binary and the package.
var shared string

func TestMain(m *testing.M) {
	if os.Getenv(seccompHelperEnv) != "" {
		seccompHelper() // never returns
	}
	dir, err := os.MkdirTemp("", "sysobsd-deploytest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The sandbox test runs the binary as nobody.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repo is the module root; paths in deploy/ are relative to it.
func repo(parts ...string) string {
	return filepath.Join(append([]string{testenv.RepoRoot()}, parts...)...)
}

// goTool finds the go command that runs these tests.
func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := "/usr/local/go/bin/go" // where make and the README put it
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no go command on PATH or at %s", p)
	}
	return p
}

// run runs a command in the repository root and returns its combined output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = repo()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// lookPath skips (fails in CI) when a tool is missing, naming its package.
func lookPath(t *testing.T, tool, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		testenv.Skip(t, fmt.Sprintf("needs %s (Debian: %s)", tool, debianPackage))
	}
	return p
}

// binary is the daemon, built as make build does.
func binary(t *testing.T) string { return testenv.BuildDaemon(t) }

// packageVersion is what make package would pass for a commit after v0.1.0.
const (
	packageVersion = "v0.1.0-1-gdeadbee"
	debianVersion  = "0.1.0+1.gdeadbee-1"
)

var (
	packageOnce sync.Once
	packagePath string
	packageErr  error
)

// debPackage builds the .deb once, as make package does.
func debPackage(t *testing.T) string {
	t.Helper()
	bin := binary(t)
	packageOnce.Do(func() {
		out := filepath.Join(shared, "dist")
		cmd := exec.Command(goTool(t), "run", "./deploy/package", "--version", packageVersion, "--binary", bin, "--out", out)
		cmd.Dir = repo()
		var stdout, stderr bytes.Buffer
		cmd.Stdout = &stdout
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			packageErr = fmt.Errorf("go run ./deploy/package: %v\n%s", err, stderr.String())
			return
		}
		packagePath = strings.TrimSpace(stdout.String())
	})
	if packageErr != nil {
		t.Fatal(packageErr)
	}
	return packagePath
}
