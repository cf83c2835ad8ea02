package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// The rules of grafana/dashboard-linter (whose module the proxy here
// refuses), applied to the generated JSON, plus a few of our own: every
// dashboard has the templated datasource, job and instance variables; every
// panel uses that datasource, has a title, a description and a unit; every
// query selects $job and $instance, gives rate, irate and increase
// $__rate_interval and never reads a counter without them; no datasource uid
// is hard-coded; uids, titles and panel ids are unique.

type lintDashboard struct {
	file string
	json map[string]any
}

func (d lintDashboard) title() string { return str(d.json["title"]) }

func generated(t *testing.T) []lintDashboard {
	t.Helper()
	files, err := rendered()
	if err != nil {
		t.Fatal(err)
	}
	var out []lintDashboard
	for name, b := range files {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, lintDashboard{name, m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].file < out[j].file })
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func list(v any) []map[string]any {
	items, _ := v.([]any)
	var out []map[string]any
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// panels are every panel that is not a row, also those inside collapsed rows.
func (d lintDashboard) panels() []map[string]any {
	var out []map[string]any
	for _, p := range list(d.json["panels"]) {
		if str(p["type"]) == "row" {
			out = append(out, list(p["panels"])...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func (d lintDashboard) variables() []map[string]any {
	templating, _ := d.json["templating"].(map[string]any)
	return list(templating["list"])
}

func (d lintDashboard) variable(name string) map[string]any {
	for _, v := range d.variables() {
		if str(v["name"]) == name {
			return v
		}
	}
	return nil
}

func targets(p map[string]any) []map[string]any { return list(p["targets"]) }

func datasourceUID(v any) string {
	m, _ := v.(map[string]any)
	return str(m["uid"])
}

func isTemplatedDatasource(uid string) bool { return uid == "$datasource" || uid == "${datasource}" }

func TestDashboardsHaveTemplatedDatasource(t *testing.T) {
	for _, d := range generated(t) {
		v := d.variable("datasource")
		if v == nil || str(v["type"]) != "datasource" {
			t.Errorf("%s: no datasource variable named \"datasource\"", d.file)
			continue
		}
		if str(v["query"]) != "prometheus" {
			t.Errorf("%s: datasource variable selects %q, want prometheus", d.file, v["query"])
		}
		if str(v["label"]) != "Data source" {
			t.Errorf("%s: datasource variable labelled %q, want \"Data source\"", d.file, v["label"])
		}
	}
}

func TestDashboardsHaveJobAndInstanceVariables(t *testing.T) {
	for _, d := range generated(t) {
		for _, name := range []string{"job", "instance"} {
			v := d.variable(name)
			if v == nil {
				t.Errorf("%s: no %s variable", d.file, name)
				continue
			}
			label := strings.ToUpper(name[:1]) + name[1:]
			switch {
			case str(v["type"]) != "query":
				t.Errorf("%s: %s variable is of type %q, want query", d.file, name, v["type"])
			case !isTemplatedDatasource(datasourceUID(v["datasource"])):
				t.Errorf("%s: %s variable uses datasource %q, want ${datasource}", d.file, name, datasourceUID(v["datasource"]))
			case str(v["label"]) != label:
				t.Errorf("%s: %s variable labelled %q, want %q", d.file, name, v["label"], label)
			case v["multi"] != true:
				t.Errorf("%s: %s variable is not multi-valued", d.file, name)
			case str(v["allValue"]) != ".+":
				t.Errorf("%s: %s variable's allValue is %q, want .+", d.file, name, v["allValue"])
			}
		}
	}
}

var labelValuesQuery = regexp.MustCompile(`^(label_names|label_values|metrics|query_result)\((.+)\)$`)

func TestQueryVariablesReloadOnTimeRangeAndAreLabelQueries(t *testing.T) {
	for _, d := range generated(t) {
		for _, v := range d.variables() {
			if str(v["type"]) != "query" {
				continue
			}
			if v["refresh"] != float64(2) {
				t.Errorf("%s: variable %s refreshes %v, want 2 (on time range change)", d.file, v["name"], v["refresh"])
			}
			q := str(v["query"])
			m := labelValuesQuery.FindStringSubmatch(q)
			if m == nil {
				t.Errorf("%s: variable %s query %q is not label_values(...) or a like function", d.file, v["name"], q)
				continue
			}
			if !isTemplatedDatasource(datasourceUID(v["datasource"])) {
				t.Errorf("%s: variable %s uses datasource %q, want ${datasource}", d.file, v["name"], datasourceUID(v["datasource"]))
			}
		}
	}
}

func TestPanelsUseTheTemplatedDatasource(t *testing.T) {
	for _, d := range generated(t) {
		for _, p := range d.panels() {
			if uid := datasourceUID(p["datasource"]); !isTemplatedDatasource(uid) {
				t.Errorf("%s: panel %q uses datasource %q, want ${datasource}", d.file, p["title"], uid)
			}
			for _, tg := range targets(p) {
				if uid := datasourceUID(tg["datasource"]); !isTemplatedDatasource(uid) {
					t.Errorf("%s: panel %q query %s uses datasource %q, want ${datasource}", d.file, p["title"], tg["refId"], uid)
				}
			}
		}
	}
}

// No datasource reference anywhere in the JSON names a fixed uid.
func TestNoHardCodedDatasourceUID(t *testing.T) {
	var walk func(file, path string, v any)
	walk = func(file, path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "datasource" {
					if uid := datasourceUID(x); uid != "" && !strings.HasPrefix(uid, "$") {
						t.Errorf("%s: %s.datasource has the fixed uid %q", file, path, uid)
					}
				}
				walk(file, path+"."+k, x)
			}
		case []any:
			for _, x := range v {
				walk(file, path+"[]", x)
			}
		}
	}
	for _, d := range generated(t) {
		walk(d.file, "", d.json)
	}
}

// knownUnits are the Grafana unit ids (grafana-data's valueFormats) these
// dashboards may use; add one when a panel needs it.
var knownUnits = map[string]bool{
	"none": true, "short": true, "percent": true, "percentunit": true,
	"ns": true, "µs": true, "ms": true, "s": true,
	"ops": true, "cps": true, "reqps": true, "rps": true, "wps": true, "iops": true,
	"bytes": true, "decbytes": true, "Bps": true, "bool": true,
}

func TestPanelsHaveTitleDescriptionAndUnit(t *testing.T) {
	for _, d := range generated(t) {
		for _, p := range d.panels() {
			title := str(p["title"])
			if title == "" || str(p["description"]) == "" {
				t.Errorf("%s: panel %v has no title or no description", d.file, p["id"])
			}
			fc, _ := p["fieldConfig"].(map[string]any)
			defaults, _ := fc["defaults"].(map[string]any)
			// A heatmap's unit is its y axis's (below).
			if unit := str(defaults["unit"]); str(p["type"]) != "heatmap" && !knownUnits[unit] {
				t.Errorf("%s: panel %q has unit %q; want one of the known units", d.file, title, unit)
			}
			for _, o := range list(fc["overrides"]) {
				for _, prop := range list(o["properties"]) {
					if str(prop["id"]) == "unit" && !knownUnits[str(prop["value"])] {
						t.Errorf("%s: panel %q overrides the unit with %q", d.file, title, prop["value"])
					}
				}
			}
			if str(p["type"]) == "heatmap" {
				options, _ := p["options"].(map[string]any)
				yAxis, _ := options["yAxis"].(map[string]any)
				if !knownUnits[str(yAxis["unit"])] {
					t.Errorf("%s: heatmap %q has y-axis unit %q", d.file, title, yAxis["unit"])
				}
			}
		}
	}
}

func TestPanelsHaveQueries(t *testing.T) {
	for _, d := range generated(t) {
		for _, p := range d.panels() {
			if len(targets(p)) == 0 {
				t.Errorf("%s: panel %q has no queries", d.file, p["title"])
			}
			for _, tg := range targets(p) {
				if str(tg["expr"]) == "" || str(tg["refId"]) == "" {
					t.Errorf("%s: panel %q has a query without expr or refId", d.file, p["title"])
				}
			}
		}
	}
}

func hasMatcher(s selector, name, op, value string) bool {
	for _, m := range s.matchers {
		if m.name == name && m.op == op && m.value == value {
			return true
		}
	}
	return false
}

var rateFunctions = map[string]bool{"rate": true, "irate": true, "increase": true}

// queryProblems applies the query rules to one expression: every selector
// has job=~"$job" and instance=~"$instance" (target-job-rule,
// target-instance-rule); rate, irate and increase take [$__rate_interval],
// and no other function takes a range (target-rate-interval-rule, stricter);
// a counter (_total) is only read through them (target-counter-agg-rule).
func queryProblems(expr string) []string {
	sels, err := selectors(expr)
	if err != nil {
		return []string{err.Error()}
	}
	if len(sels) == 0 {
		return []string{"selects nothing"}
	}
	var out []string
	for _, s := range sels {
		for _, name := range []string{"job", "instance"} {
			if !hasMatcher(s, name, "=~", "$"+name) {
				out = append(out, fmt.Sprintf("%s has no %s=~\"$%s\"", s, name, name))
			}
		}
		if rateFunctions[s.function] && s.rng != "$__rate_interval" {
			out = append(out, fmt.Sprintf("%s(%s) should use [$__rate_interval]", s.function, s))
		}
		if s.rng != "" && !rateFunctions[s.function] {
			out = append(out, fmt.Sprintf("range %s passed to %q, not to rate, irate or increase", s, s.function))
		}
		if strings.HasSuffix(s.metric, "_total") && (s.rng == "" || !rateFunctions[s.function]) {
			out = append(out, fmt.Sprintf("counter %s is not inside rate, irate or increase", s))
		}
	}
	return out
}

func TestQueriesFollowTheQueryRules(t *testing.T) {
	for _, d := range generated(t) {
		for _, p := range d.panels() {
			for _, tg := range targets(p) {
				for _, problem := range queryProblems(str(tg["expr"])) {
					t.Errorf("%s: panel %q: %s in %q", d.file, p["title"], problem, tg["expr"])
				}
			}
		}
	}
}

// The rules themselves catch what they are for.
func TestQueryRulesCatchBadQueries(t *testing.T) {
	const js = `job=~"$job", instance=~"$instance"`
	cases := []struct {
		expr string
		bad  bool
	}{
		{`sum by (comm) (rate(sysobsd_syscalls_total{` + js + `}[$__rate_interval]))`, false},
		{`topk(10, sum by (instance, comm) (rate(a_total{` + js + `, syscall="futex"}[$__rate_interval])) / (sum by (instance, comm) (rate(a_total{` + js + `}[$__rate_interval])) > 0))`, false},
		{`histogram_quantile(0.99, sum by (syscall, le) (rate(x_bucket{` + js + `}[$__rate_interval])))`, false},
		{`sum(x{` + js + `}) / on () group_left () (sum(y{` + js + `}) > 0)`, false},
		{`sysobsd_bpf_map_entries{` + js + `} / sysobsd_bpf_map_max_entries{` + js + `}`, false},
		{`sum(rate(sysobsd_syscalls_total{` + js + `}[5m]))`, true},                          // fixed range
		{`sum(increase(sysobsd_syscalls_total{` + js + `}[$__range]))`, true},                // increase too
		{`sum(rate(sysobsd_syscalls_total{instance=~"$instance"}[$__rate_interval]))`, true}, // no job
		{`sum(rate(sysobsd_syscalls_total{job="$job", instance=~"$instance"}[$__rate_interval]))`, true},
		{`sum(rate(a{` + js + `}[$__rate_interval])) / sum(b{job=~"$job"})`, true}, // second selector
		{`sum(sysobsd_syscalls_total{` + js + `})`, true},                          // counter not rated
		{`max_over_time(sysobsd_scrape_error{` + js + `}[$__rate_interval])`, true},
		{`sum by (comm) (rate(a_total{` + js + `}[$__rate_interval])`, true}, // unbalanced
	}
	for _, c := range cases {
		problems := queryProblems(c.expr)
		if c.bad && len(problems) == 0 {
			t.Errorf("no problem found in %q", c.expr)
		}
		if !c.bad && len(problems) > 0 {
			t.Errorf("problems in a good query %q: %v", c.expr, problems)
		}
	}
}

func TestUIDsTitlesAndPanelIDsAreUnique(t *testing.T) {
	uids, titles := map[string]string{}, map[string]string{}
	for _, d := range generated(t) {
		uid := str(d.json["uid"])
		if uid == "" || d.title() == "" {
			t.Errorf("%s: no uid or no title", d.file)
		}
		if other, ok := uids[uid]; ok {
			t.Errorf("%s and %s share the uid %q", d.file, other, uid)
		}
		if other, ok := titles[d.title()]; ok {
			t.Errorf("%s and %s share the title %q", d.file, other, d.title())
		}
		uids[uid], titles[d.title()] = d.file, d.file
		if want := uid + ".json"; d.file != want {
			t.Errorf("%s: uid %q, want the file named %s", d.file, uid, want)
		}

		ids, panelTitles := map[float64]bool{}, map[string]bool{}
		for _, p := range list(d.json["panels"]) {
			id, _ := p["id"].(float64)
			if id == 0 || ids[id] {
				t.Errorf("%s: panel %q has a missing or repeated id %v", d.file, p["title"], p["id"])
			}
			ids[id] = true
			if str(p["type"]) == "row" {
				continue
			}
			if panelTitles[str(p["title"])] {
				t.Errorf("%s: two panels are titled %q", d.file, p["title"])
			}
			panelTitles[str(p["title"])] = true
		}
	}
}

// Every variable is used by a query, a title, a repeat or another variable.
func TestEveryVariableIsUsed(t *testing.T) {
	for _, d := range generated(t) {
		b, err := json.Marshal(d.json["panels"])
		if err != nil {
			t.Fatal(err)
		}
		uses := string(b)
		for _, v := range d.variables() {
			uses += str(v["query"])
		}
		for _, v := range d.variables() {
			name := str(v["name"])
			used := strings.Contains(uses, "$"+name) || strings.Contains(uses, "${"+name+"}") ||
				strings.Contains(uses, `"repeat":"`+name+`"`)
			if !used {
				t.Errorf("%s: variable %s is not used", d.file, name)
			}
		}
	}
}

// promqlPlaceholders turns a dashboard query into plain PromQL: Grafana's
// interval variables become durations (the others sit inside strings).
var promqlPlaceholders = strings.NewReplacer("$__rate_interval", "1m", "${__rate_interval}", "1m", "$__interval", "1m", "$__range", "1h")

// Every query, and every variable's selector, is valid PromQL: promtool
// parses them as recording rules.
func TestDashboardQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Skip(t, "needs promtool to parse the queries (Debian: prometheus)")
	}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for _, d := range generated(t) {
		for _, p := range d.panels() {
			for _, tg := range targets(p) {
				rules = append(rules, rule{"dashboard_query", promqlPlaceholders.Replace(str(tg["expr"]))})
			}
		}
		for _, v := range d.variables() {
			if m := labelValuesQuery.FindStringSubmatch(str(v["query"])); m != nil {
				inner := m[2]
				if i := strings.LastIndex(inner, ","); i >= 0 && m[1] == "label_values" {
					inner = inner[:i]
				}
				rules = append(rules, rule{"dashboard_variable", inner})
			}
		}
	}
	file := map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rules}}}
	b, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "queries.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboards' queries: %v\n%s", err, out)
	}
}
