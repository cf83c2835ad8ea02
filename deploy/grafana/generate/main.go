// Command generate writes sysobsd's Grafana dashboards as JSON, built in Go
// with the Grafana Foundation SDK. `make dashboards` runs it from the
// repository root:
//
//	go run ./deploy/grafana/generate --out deploy/grafana
//
// It also writes the mixin's copies (deploy/mixin/dashboards_out) unless
// --mixin-out is empty. The JSON is committed; generate_test.go fails when it
// differs from what this program makes (go test -update rewrites it).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func main() {
	out := flag.String("out", "deploy/grafana", "directory to write the dashboards' JSON into")
	mixinOut := flag.String("mixin-out", "deploy/mixin/dashboards_out", "directory of the mixin's copies of the JSON (empty: none)")
	flag.Parse()
	dirs := []string{*out}
	if *mixinOut != "" {
		dirs = append(dirs, *mixinOut)
	}
	if err := write(dirs...); err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
}

// dashboards maps each JSON file's name to its dashboard.
func dashboards() (map[string]dashboard.Dashboard, error) {
	builders := map[string]*dashboard.DashboardBuilder{
		"sysobsd-overview.json": overview(),
		"sysobsd-process.json":  process(),
	}
	out := make(map[string]dashboard.Dashboard, len(builders))
	for name, b := range builders {
		d, err := b.Build()
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", name, err)
		}
		numberPanels(&d)
		out[name] = d
	}
	return out, nil
}

// numberPanels gives every panel and row a unique id, in order: Grafana's
// links to a panel (viewPanel=N) and repeats need them.
func numberPanels(d *dashboard.Dashboard) {
	id := uint32(0)
	for _, p := range d.Panels {
		id++
		switch {
		case p.Panel != nil:
			p.Panel.Id = cog.ToPtr(id)
		case p.RowPanel != nil:
			p.RowPanel.Id = id
		}
	}
}

// render is a dashboard's JSON as committed: two-space indent, no HTML
// escaping (PromQL's > stays >), final newline.
func render(d dashboard.Dashboard) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rendered is every dashboard's JSON by file name.
func rendered() (map[string][]byte, error) {
	ds, err := dashboards()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(ds))
	for name, d := range ds {
		b, err := render(d)
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", name, err)
		}
		out[name] = b
	}
	return out, nil
}

// write renders every dashboard into each of dirs.
func write(dirs ...string) error {
	files, err := rendered()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, name := range names {
			if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}
