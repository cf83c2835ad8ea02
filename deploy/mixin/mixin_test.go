// Package mixin holds sysobsd's monitoring mixin (mixin.libsonnet and the
// files it imports); its test keeps those files identical to the originals
// in deploy/prometheus and deploy/grafana.
package mixin

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "copy the originals over the mixin's files")

// copies maps each mixin file to its original, from this directory.
var copies = map[string]string{
	"prometheus_alerts.yaml":               "../prometheus/alerts.yml",
	"prometheus_rules.yaml":                "../prometheus/rules.yml",
	"dashboards_out/sysobsd-overview.json": "../grafana/sysobsd-overview.json",
	"dashboards_out/sysobsd-process.json":  "../grafana/sysobsd-process.json",
}

func TestMixinFilesAreCopiesOfTheOriginals(t *testing.T) {
	for copyPath, original := range copies {
		want, err := os.ReadFile(original)
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			if err := os.WriteFile(copyPath, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(copyPath)
		if err != nil {
			t.Errorf("%v; run go test ./deploy/mixin -update", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("deploy/mixin/%s differs from deploy/%s; run go test ./deploy/mixin -update", copyPath, filepath.Clean(original[3:]))
		}
	}
}

// Every dashboard in dashboards_out is a copy, and mixin.libsonnet imports
// each of them and both rule files.
func TestMixinImportsEveryFile(t *testing.T) {
	lib, err := os.ReadFile("mixin.libsonnet")
	if err != nil {
		t.Fatal(err)
	}
	out, err := filepath.Glob("dashboards_out/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range out {
		if _, ok := copies[path]; !ok {
			t.Errorf("%s is not a copy of a generated dashboard", path)
		}
	}
	for path := range copies {
		if !bytes.Contains(lib, []byte("'"+path+"'")) {
			t.Errorf("mixin.libsonnet does not import %s", path)
		}
	}
}
