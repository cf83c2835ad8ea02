package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the committed dashboards (deploy/grafana and the mixin's copies) from the generator")

// Where the committed JSON lives, from this package's directory.
const (
	committedDir = ".."
	mixinDir     = "../../mixin/dashboards_out"
)

// The committed dashboards are what the generator makes: it writes them into
// a temporary directory and each file must match byte for byte.
func TestCommittedDashboardsAreGenerated(t *testing.T) {
	if *update {
		if err := write(committedDir, mixinDir); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if err := write(dir); err != nil {
		t.Fatal(err)
	}
	made, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(made) == 0 {
		t.Fatal("the generator wrote no dashboards")
	}
	for _, path := range made {
		name := filepath.Base(path)
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(committedDir, name))
		if err != nil {
			t.Errorf("%s: %v; run `make dashboards`", name, err)
			continue
		}
		if d := firstDifference(got, want); d != "" {
			t.Errorf("deploy/grafana/%s is not what the generator makes (%s); run `make dashboards` or go test ./deploy/grafana/generate -update", name, d)
		}
	}

	// No committed dashboard that the generator no longer makes.
	committed, err := filepath.Glob(filepath.Join(committedDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	madeNames := map[string]bool{}
	for _, path := range made {
		madeNames[filepath.Base(path)] = true
	}
	var stray []string
	for _, path := range committed {
		if !madeNames[filepath.Base(path)] {
			stray = append(stray, filepath.Base(path))
		}
	}
	sort.Strings(stray)
	if len(stray) > 0 {
		t.Errorf("deploy/grafana has dashboards the generator does not make: %s", strings.Join(stray, ", "))
	}
}

// firstDifference names the first line where got and want differ, or "".
func firstDifference(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	g, w := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl []byte
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if !bytes.Equal(gl, wl) {
			return fmt.Sprintf("line %d: committed %q, generated %q", i+1, strings.TrimSpace(string(gl)), strings.TrimSpace(string(wl)))
		}
	}
	return "they differ"
}
