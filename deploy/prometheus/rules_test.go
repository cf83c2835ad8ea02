// Package prometheus holds sysobsd's Prometheus configuration (prometheus.yml,
// rules.yml, alerts.yml); its tests run promtool on them and check the
// monitoring-mixins conventions.
package prometheus

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// docs is where the runbooks live, relative to this directory; runbook_url
// is relative to the repository.
const (
	docs       = "../../docs/dashboards-and-alerts.md"
	docsInRepo = "docs/dashboards-and-alerts.md"
)

func promtool(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Skip(t, "needs promtool (Debian: prometheus)")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestPromtoolChecksRulesAndConfig(t *testing.T) {
	promtool(t, "check", "rules", "rules.yml", "alerts.yml")
	promtool(t, "check", "config", "prometheus.yml")
}

func TestPromtoolRuleTests(t *testing.T) {
	tests, err := filepath.Glob("tests/*.yml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests in tests/: %v", err)
	}
	promtool(t, append([]string{"test", "rules"}, tests...)...)
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func readRules(t *testing.T, path string) []rule {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// level:metric:operations, the metric being a sysobsd one without _total.
var recordName = regexp.MustCompile(`^[a-z_]+:sysobsd_[a-z_]+:[a-z0-9_]+$`)

func TestRecordingRulesAreNamedLevelMetricOperations(t *testing.T) {
	for _, r := range readRules(t, "rules.yml") {
		if r.Record == "" {
			t.Errorf("rules.yml has a rule that records nothing: %q", r.Expr)
			continue
		}
		if !recordName.MatchString(r.Record) || strings.HasSuffix(strings.Split(r.Record, ":")[1], "_total") {
			t.Errorf("record %q is not level:sysobsd_metric:operations", r.Record)
		}
	}
}

// anchors are the GitHub anchors of the Markdown file's headings.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	strip := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		heading := strings.TrimSpace(strings.TrimLeft(line, "#"))
		out[strings.ReplaceAll(strip.ReplaceAllString(strings.ToLower(heading), ""), " ", "-")] = true
	}
	return out
}

// ageAlerts compare an age the kernel measured (how long a thread has been
// inside a call) with their threshold: one scrape already proves the
// duration, so a shorter for: (two scrapes) is enough.
var ageAlerts = map[string]struct{}{"SysobsdStuckUninterruptible": {}}

// The monitoring-mixins conventions: a severity, a summary, a description and
// a runbook_url; here the runbook is a section of the docs.
func TestAlertsFollowMixinConventions(t *testing.T) {
	runbooks := anchors(t, docs)
	for _, r := range readRules(t, "alerts.yml") {
		if r.Alert == "" {
			t.Errorf("alerts.yml has a rule that is not an alert: %q", r.Record)
			continue
		}
		if !strings.HasPrefix(r.Alert, "Sysobsd") {
			t.Errorf("alert %s: name should start with Sysobsd", r.Alert)
		}
		if sev := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, sev) {
			t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, sev)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[a] == "" {
				t.Errorf("alert %s: no %s annotation", r.Alert, a)
			}
		}
		anchor := strings.ToLower(r.Alert)
		if want := docsInRepo + "#" + anchor; r.Annotations["runbook_url"] != want {
			t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
		}
		if !runbooks[anchor] {
			t.Errorf("alert %s: %s has no heading %q for its runbook", r.Alert, docsInRepo, r.Alert)
		}
		minFor := 2 * time.Minute
		if _, ok := ageAlerts[r.Alert]; ok {
			minFor = time.Minute
		}
		if d, err := time.ParseDuration(r.For); err != nil || d < minFor {
			t.Errorf("alert %s: for %q; want at least %v so that one bad scrape does not page", r.Alert, r.For, minFor)
		}
	}
}

type ruleTests struct {
	Tests []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// Every alert has a case where it fires and is checked quiet on the busy
// healthy host.
func TestEveryAlertHasFiringAndQuietCases(t *testing.T) {
	fires, quietOnHealthyHost := map[string]bool{}, map[string]bool{}
	paths, err := filepath.Glob("tests/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var f ruleTests
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, tc := range f.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else if filepath.Base(path) == "healthy_host_test.yml" {
					quietOnHealthyHost[a.Alertname] = true
				}
			}
		}
	}
	for _, r := range readRules(t, "alerts.yml") {
		if !fires[r.Alert] {
			t.Errorf("alert %s has no test case where it fires", r.Alert)
		}
		if !quietOnHealthyHost[r.Alert] {
			t.Errorf("alert %s is not checked quiet in tests/healthy_host_test.yml", r.Alert)
		}
	}
}
