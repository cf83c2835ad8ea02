package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

const (
	job  = "sysobsd"
	comm = "e2eenospc" // the workload's name: ENOSPC, ENOENT and futex calls
	// quietComm is a workload that only writes to /dev/null: no error, no futex.
	quietComm = "e2equiet"
	// alertTimeout bounds the wait for SysobsdENOSPCSpike to fire.
	alertTimeout = 90 * time.Second
	// rateInterval stands for Grafana's $__rate_interval in the dashboards'
	// queries: Prometheus scrapes every second here.
	rateInterval = "1m"
)

// As a user would: the built daemon, scraped every second by Prometheus with
// deploy/prometheus's rules and alerts (their for: shortened, expressions
// unchanged); a workload that writes to /dev/full fires SysobsdENOSPCSpike,
// then every recording rule and every dashboard query must answer.
func TestAlertsRulesAndDashboardQueriesOnARealPrometheus(t *testing.T) {
	testenv.RequireRoot(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Skip(t, "needs Debian's prometheus package (the prometheus server binary)")
	}
	dir := t.TempDir()
	workload := testenv.BuildWorkload(t, dir)
	daemonBin := testenv.BuildDaemon(t)
	repo := testenv.RepoRoot()

	daemonAddr := testenv.FreeAddress(t)
	config := writeFile(t, dir, "sysobsd.yml", "fold_interval: 200ms\nlabels: [comm]\n")
	start(t, "sysobsd", daemonBin, "--config.file="+config, "--web.listen-address="+daemonAddr, "--log.level=warn")
	waitHTTP(t, "sysobsd", "http://"+daemonAddr+"/metrics", 15*time.Second)

	promAddr := testenv.FreeAddress(t)
	promConfig := writePrometheusConfig(t, dir, repo, daemonAddr)
	start(t, "prometheus", promBin,
		"--config.file="+promConfig,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr,
		"--log.level=warn")
	waitHTTP(t, "prometheus", "http://"+promAddr+"/-/ready", 30*time.Second)
	prom := &promAPI{base: "http://" + promAddr}

	stopLoad := runWorkload(t, workload)
	defer stopLoad()

	began := time.Now()
	if !testenv.Eventually(alertTimeout, func() bool {
		time.Sleep(500 * time.Millisecond)
		return prom.firing(t, "SysobsdENOSPCSpike", comm)
	}) {
		t.Fatalf("SysobsdENOSPCSpike{comm=%q} not firing after %s; alerts: %s; ENOSPC rate: %s",
			comm, alertTimeout, prom.raw(t, "/api/v1/alerts"),
			prom.raw(t, "/api/v1/query?query="+url.QueryEscape(`comm_errno:sysobsd_syscall_errors:rate5m{errno="ENOSPC"}`)))
	}
	t.Logf("SysobsdENOSPCSpike firing after %s", time.Since(began).Round(100*time.Millisecond))
	if prom.firing(t, "SysobsdDown", "") {
		t.Errorf("SysobsdDown is firing while the daemon runs")
	}
	for _, a := range prom.alerts(t) {
		t.Logf("alert %s %s %v", a.Labels["alertname"], a.State, a.Labels)
	}

	t.Run("recording rules", func(t *testing.T) {
		for _, record := range recordNames(t, filepath.Join(repo, "deploy", "prometheus", "rules.yml")) {
			var n int
			testenv.Eventually(15*time.Second, func() bool {
				n = len(prom.query(t, record))
				return n > 0
			})
			if n == 0 {
				t.Errorf("recording rule %s has no data", record)
			}
		}
		// strace -c's columns for the workload: its shares of time add up
		// to 1; 2000 of each round's 2100 writes fail (about: a scrape can
		// come mid-round); a write to /dev/full takes microseconds.
		sel := fmt.Sprintf(`{comm=%q, syscall="write"}`, comm)
		checks := []struct {
			expr   string
			lo, hi float64
		}{
			{fmt.Sprintf(`sum(comm_syscall:sysobsd_syscall_time_share:ratio_rate5m{comm=%q})`, comm), 0.999999, 1.000001},
			{"comm_syscall:sysobsd_syscall_errors:rate5m" + sel + " / comm_syscall:sysobsd_syscalls:rate5m" + sel, 0.9, 1},
			{"comm_syscall:sysobsd_syscall_seconds:mean5m" + sel, 1e-8, 1e-3},
		}
		for _, c := range checks {
			v := prom.values(t, c.expr)
			if len(v) != 1 || v[0] < c.lo || v[0] > c.hi {
				t.Errorf("%s = %v, want one value in [%g, %g]", c.expr, v, c.lo, c.hi)
			}
		}
	})

	vars := map[string]string{
		"__rate_interval": rateInterval,
		"job":             job,
		"instance":        daemonAddr, // its dots match themselves in =~
		"comm":            comm,
		"syscall":         "write",
	}
	queries := dashboardQueries(t, filepath.Join(repo, "deploy", "grafana"))
	t.Run("dashboard queries", func(t *testing.T) {
		// The workload makes every panel's data: ENOSPC and ENOENT errors,
		// futex waits, writes for the latency panels.
		checkQueries(t, prom, queries, vars, nil)
	})
	t.Run("dashboard queries for a process without errors or futex", func(t *testing.T) {
		vars := maps.Clone(vars)
		vars["comm"] = quietComm
		checkQueries(t, prom, queries, vars, map[string]string{
			"sysobsd-process.json: strace -c: $comm (E)":            "errors/s: the process has no errors (strace -c leaves the column blank too)",
			"sysobsd-process.json: Errors of $comm (A)":             "the process has no errors",
			"sysobsd-process.json: Errors by syscall and errno (A)": "the process has no errors",
		})
		// Its futex share is 0, not "no data".
		for _, q := range queries {
			if strings.HasPrefix(q.panel, "sysobsd-process.json: Futex share") {
				if v := prom.values(t, substitute(q.expr, vars)); len(v) != 1 || v[0] != 0 {
					t.Errorf("%s: %v, want one 0 for a process without futex calls", q.panel, v)
				}
			}
		}
	})
}

// checkQueries runs every query with vars substituted: each must evaluate
// (prom.query fails the test on an error) and return data, except those in
// mayBeEmpty (panel name to the reason), which are logged.
func checkQueries(t *testing.T, prom *promAPI, queries []panelQuery, vars map[string]string, mayBeEmpty map[string]string) {
	t.Helper()
	answered := 0
	for _, q := range queries {
		expr := substitute(q.expr, vars)
		if strings.Contains(expr, "$") {
			t.Errorf("%s: %q: a variable is left after substitution", q.panel, expr)
			continue
		}
		n := len(prom.query(t, expr))
		switch reason, ok := mayBeEmpty[q.panel]; {
		case n > 0:
			answered++
		case ok:
			t.Logf("no data, as expected (%s): %s", reason, q.panel)
		default:
			t.Errorf("no data: %s: %s", q.panel, expr)
		}
	}
	t.Logf("%d of %d dashboard queries returned data", answered, len(queries))
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// tailBuffer keeps the last bytes a process wrote, for failure messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 8192 {
		b.buf = b.buf[len(b.buf)-8192:]
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// start runs a long-lived process; the test's cleanup stops it (SIGTERM,
// then SIGKILL after 5 s).
func start(t *testing.T, name, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr tailBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output (last 8 KiB):\n%s", name, stderr.String())
		}
	})
}

func waitHTTP(t *testing.T, name, url string, timeout time.Duration) {
	t.Helper()
	if !testenv.Eventually(timeout, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("%s never answered %s within %s", name, url, timeout)
	}
}

// forLine is an alert's for: duration; the test shortens it so that an
// alert fires within seconds. The expressions stay as shipped.
var forLine = regexp.MustCompile(`(?m)^(\s+for:\s*)\S+\s*$`)

// writePrometheusConfig writes a Prometheus configuration that scrapes the
// daemon every second, with the shipped rules and alerts.
func writePrometheusConfig(t *testing.T, dir, repo, target string) string {
	t.Helper()
	rules, err := os.ReadFile(filepath.Join(repo, "deploy", "prometheus", "rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := os.ReadFile(filepath.Join(repo, "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !forLine.Match(alerts) {
		t.Fatal("alerts.yml has no for: lines to shorten")
	}
	writeFile(t, dir, "rules.yml", string(rules))
	writeFile(t, dir, "alerts.yml", forLine.ReplaceAllString(string(alerts), "${1}5s"))
	return writeFile(t, dir, "prometheus.yml", fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - rules.yml
  - alerts.yml
scrape_configs:
  - job_name: %s
    static_configs:
      - targets: [%q]
`, job, target))
}

// runWorkload runs the workload until the returned function is called: each
// round 2000 ENOSPC writes to /dev/full and 5 ENOENT opens, then 4 threads
// whose join waits in futex, all named comm; then 1000 writes to /dev/null
// named quietComm; and one process of each name sleeping throughout.
func runWorkload(t *testing.T, workload string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var failure string
	// A thread of each name asleep in nanosleep the whole time: the calls
	// in flight that the in-flight panels show.
	for _, name := range []string{comm, quietComm} {
		sleeper := exec.CommandContext(ctx, workload, "sleep", name, "3600000")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		go sleeper.Wait() //nolint:errcheck // killed at stop
	}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for _, args := range [][]string{
				{"basic", comm, "100", "5", "2000"},
				{"threads", comm, "4", "20000"},
				{"basic", quietComm, "1000", "0", "0"},
			} {
				if out, err := exec.CommandContext(ctx, workload, args...).CombinedOutput(); err != nil && ctx.Err() == nil {
					failure = fmt.Sprintf("workload %v: %v: %s", args, err, out)
					return
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			if failure != "" {
				t.Error(failure)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// promAPI queries Prometheus' HTTP API.
type promAPI struct{ base string }

func (p *promAPI) get(t *testing.T, path string, data any) {
	t.Helper()
	resp, err := http.Get(p.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
	if r.Status != "success" {
		t.Errorf("GET %s: %s: %s", path, r.Status, r.Error)
		return
	}
	if err := json.Unmarshal(r.Data, data); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, r.Data)
	}
}

func (p *promAPI) raw(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(p.base + path)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(bytes.TrimSpace(body))
}

// query runs an instant query and returns its series; an error fails the
// test.
func (p *promAPI) query(t *testing.T, expr string) []map[string]string {
	t.Helper()
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
		} `json:"result"`
	}
	p.get(t, "/api/v1/query?query="+url.QueryEscape(expr), &data)
	out := make([]map[string]string, len(data.Result))
	for i, r := range data.Result {
		out[i] = r.Metric
	}
	return out
}

// values runs an instant query and returns its values.
func (p *promAPI) values(t *testing.T, expr string) []float64 {
	t.Helper()
	var data struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	p.get(t, "/api/v1/query?query="+url.QueryEscape(expr), &data)
	out := make([]float64, len(data.Result))
	for i, r := range data.Result {
		s, _ := r.Value[1].(string)
		fmt.Sscan(s, &out[i])
	}
	return out
}

type alert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p *promAPI) alerts(t *testing.T) []alert {
	t.Helper()
	var data struct {
		Alerts []alert `json:"alerts"`
	}
	p.get(t, "/api/v1/alerts", &data)
	return data.Alerts
}

// firing reports whether alert is firing (for comm, if not "").
func (p *promAPI) firing(t *testing.T, name, comm string) bool {
	t.Helper()
	for _, a := range p.alerts(t) {
		if a.Labels["alertname"] == name && a.State == "firing" && (comm == "" || a.Labels["comm"] == comm) {
			return true
		}
	}
	return false
}

// recordNames are the recording rules' names in a rule file.
func recordNames(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out = append(out, r.Record)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s records nothing", path)
	}
	return out
}

type panelQuery struct {
	panel, expr string
}

// dashboardQueries are every panel query of the generated dashboards, named
// file: panel title (refId).
func dashboardQueries(t *testing.T, dir string) []panelQuery {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s: %v", dir, err)
	}
	sort.Strings(files)
	type panel struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
		Panels []panel `json:"panels"`
	}
	var out []panelQuery
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []panel `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				for _, tg := range p.Targets {
					out = append(out, panelQuery{fmt.Sprintf("%s: %s (%s)", filepath.Base(file), p.Title, tg.RefID), tg.Expr})
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
	}
	if len(out) == 0 {
		t.Fatal("the dashboards have no queries")
	}
	return out
}

var variable = regexp.MustCompile(`\$\{([a-zA-Z_]+)\}|\$([a-zA-Z_]+)`)

// substitute replaces Grafana's $name and ${name} with vars; unknown
// variables stay.
func substitute(expr string, vars map[string]string) string {
	return variable.ReplaceAllStringFunc(expr, func(m string) string {
		name := strings.Trim(m, "${}")
		if v, ok := vars[name]; ok {
			return v
		}
		return m
	})
}
