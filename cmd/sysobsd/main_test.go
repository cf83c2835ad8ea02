package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// binary is the daemon built as a user would.
func binary(t *testing.T) string { return testenv.BuildDaemon(t) }

func freeAddress(t *testing.T) string { return testenv.FreeAddress(t) }

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Bad input: one line on stderr naming the cause, exit status ≠ 0, no panic.
func TestBadInputGivesOneLineAndNonZeroExit(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	unknownKey := writeFile(t, "unknown.yml", "latency: true\nmaps:\n  stats_entrys: 10\n")
	badType := writeFile(t, "type.yml", "latency: maybe\n")
	badRange := writeFile(t, "range.yml", "maps:\n  ring_buffer_bytes: 1000\n")
	badWeb := writeFile(t, "web.yml", "tls_server_config:\n  cert_file: /nonexistent.crt\n")
	webUnknownKey := writeFile(t, "web-key.yml", "tls_server_confg:\n  cert_file: a\n")
	webBadYAML := writeFile(t, "web-yaml.yml", "basic_auth_users: [\n")
	garbageBTF := writeFile(t, "vmlinux", "this is not BTF\n")
	binaryConfig := writeFile(t, "binary.yml", "\x00\x01\x02\xff")
	badLabel := writeFile(t, "label.yml", "labels: [comm, hostname]\n")
	badSyscall := writeFile(t, "syscall.yml", "filters:\n  exclude:\n    syscalls: [futexx]\n")
	twoDocs := writeFile(t, "two.yml", "latency: true\n---\nlatency: false\n")

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"--no-such-flag"}, 2, "unknown long flag '--no-such-flag'"},
		{"bad log level", []string{"--log.level=loud"}, 2, "log.level"},
		{"bad log format", []string{"--log.format=xml"}, 2, "log.format"},
		{"unexpected argument", []string{"extra"}, 2, "unexpected extra"},
		{"missing config", []string{"--config.file=/nonexistent/sysobsd.yml"}, 1, "no such file or directory; give --config.file"},
		{"unknown config key", []string{"--config.file=" + unknownKey}, 1, `line 3: unknown key "stats_entrys" in key maps; allowed: call_slots_per_cpu, errors_entries, group_errors_entries, group_stats_entries, ring_buffer_bytes, stats_entries`},
		{"wrong config type", []string{"--config.file=" + badType}, 1, "line 1"},
		{"config out of range", []string{"--config.file=" + badRange}, 1, "line 2: maps.ring_buffer_bytes: 1000 must be a power of two"},
		{"config check of a bad file", []string{"--config.check", "--config.file=" + unknownKey}, 1, "stats_entrys"},
		{"port in use", []string{"--web.listen-address=" + busy.Addr().String()}, 1, "address already in use; stop the other process or choose another --web.listen-address"},
		{"bad web config", []string{"--web.config.file=" + badWeb}, 1, "web config"},
		{"missing web config", []string{"--web.config.file=/nonexistent/web.yml"}, 1, "web config /nonexistent/web.yml"},
		{"systemd socket without systemd", []string{"--web.systemd-socket"}, 1, "--web.systemd-socket: systemd passed no socket"},
		{"web config unknown key", []string{"--web.config.file=" + webUnknownKey}, 1, "tls_server_confg"},
		{"web config bad YAML", []string{"--web.config.file=" + webBadYAML}, 1, "web config"},
		{"config is a directory", []string{"--config.file=" + t.TempDir()}, 1, "is a directory"},
		{"config is binary", []string{"--config.file=" + binaryConfig}, 1, "config " + binaryConfig},
		{"config unknown label", []string{"--config.file=" + badLabel}, 1, `labels[1]: unknown label "hostname"`},
		{"config unknown syscall", []string{"--config.file=" + badSyscall}, 1, `filters.exclude.syscalls[0]: unknown syscall "futexx"`},
		{"config with two documents", []string{"--config.file=" + twoDocs}, 1, "more than one YAML document"},
		{"bad attach mode", []string{"--bpf.attach-mode=kprobe"}, 2, "--bpf.attach-mode=kprobe: must be one of auto, tp_btf, raw_tracepoint"},
		{"unknown capability", []string{"--capabilities.keep=flying"}, 2, `unknown capability "cap_flying"`},
		{"empty log level", []string{"--log.level="}, 2, "--log.level=: must be one of"},
		{"listen address out of range", []string{"--web.listen-address=127.0.0.1:99999"}, 1, "choose another --web.listen-address"},
		{"listen address not local", []string{"--web.listen-address=192.0.2.1:10190"}, 1, "choose another --web.listen-address"},
		{"flag value missing", []string{"--config.file"}, 2, "expected argument for flag '--config.file'"},
		{"missing BTF file", []string{"--web.listen-address=127.0.0.1:0", "--bpf.kernel-btf=/nonexistent/vmlinux"}, 1, "--bpf.kernel-btf=/nonexistent/vmlinux"},
		{"BTF file is garbage", []string{"--web.listen-address=127.0.0.1:0", "--bpf.kernel-btf=" + garbageBTF}, 1, "is not usable BTF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit status %d, want %d", code, tc.code)
			}
			assertOneLine(t, stderr.String(), tc.want)
		})
	}
}

func assertOneLine(t *testing.T, stderr, want string) {
	t.Helper()
	msg := strings.TrimSuffix(stderr, "\n")
	if strings.Contains(msg, "\n") || msg == "" {
		t.Errorf("stderr is not one line:\n%s", stderr)
	}
	if !strings.Contains(msg, want) {
		t.Errorf("stderr %q does not contain %q", msg, want)
	}
	if strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine") {
		t.Errorf("stderr shows a panic: %s", msg)
	}
}

func TestConfigCheckAndVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--config.check"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--config.check: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "(embedded default) is valid") {
		t.Errorf("--config.check printed %q", stdout.String())
	}
	stdout.Reset()
	if code := run([]string{"--version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--version: exit %d", code)
	}
	if !strings.HasPrefix(stdout.String(), "sysobsd, version") {
		t.Errorf("--version printed %q", stdout.String())
	}
}

// Too little privilege: an unprivileged user gets one line naming the fix.
func TestWithoutPrivilegeExplainsTheFix(t *testing.T) {
	testenv.RequireRoot(t)
	bin := binary(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		testenv.Skip(t, "needs setpriv (Debian: util-linux)")
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		bin, "--web.listen-address="+freeAddress(t))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	exitErr, ok := err.(*exec.ExitError)
	if !ok || exitErr.ExitCode() == 0 {
		t.Fatalf("want a non-zero exit, got %v; stderr: %s", err, stderr.String())
	}
	assertOneLine(t, stderr.String(), "permission denied: sysobsd has neither CAP_BPF with CAP_PERFMON nor CAP_SYS_ADMIN; run it as root")
}

// As a user would: the built daemon, a short-lived static program, /metrics
// scraped over HTTP, exact counts, and promtool's linter on the scrape.
func TestDaemonServesExactCountsForAShortLivedProcess(t *testing.T) {
	testenv.RequireRoot(t)
	bin := binary(t)
	workload := testenv.BuildWorkload(t, t.TempDir())
	addr := freeAddress(t)
	daemon := exec.Command(bin, "--web.listen-address="+addr, "--log.level=warn")
	var daemonErr bytes.Buffer
	daemon.Stderr = &daemonErr
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	t.Cleanup(func() {
		daemon.Process.Signal(syscall.SIGKILL)
	})
	url := "http://" + addr + "/metrics"
	if !testenv.Eventually(10*time.Second, func() bool { _, err := scrape(url); return err == nil }) {
		t.Fatalf("daemon never served %s; stderr: %s", url, daemonErr.String())
	}

	const n, m, k = 2000, 11, 17
	comm := fmt.Sprintf("e2e%d", os.Getpid()%100000)
	if out, err := exec.Command(workload, "basic", comm, fmt.Sprint(n), fmt.Sprint(m), fmt.Sprint(k)).CombinedOutput(); err != nil {
		t.Fatalf("workload: %v: %s", err, out)
	}
	exitedAt := time.Now()
	want := map[string]float64{
		fmt.Sprintf(`sysobsd_syscalls_total{comm=%q,syscall="write"}`, comm):                       n + k,
		fmt.Sprintf(`sysobsd_syscalls_total{comm=%q,syscall="openat"}`, comm):                      m + 2,
		fmt.Sprintf(`sysobsd_syscall_errors_total{comm=%q,errno="ENOENT",syscall="openat"}`, comm): m,
		fmt.Sprintf(`sysobsd_syscall_errors_total{comm=%q,errno="ENOSPC",syscall="write"}`, comm):  k,
	}
	var got map[string]float64
	ok := testenv.Eventually(2*time.Second-time.Since(exitedAt), func() bool {
		var err error
		got, err = scrapeValues(url)
		if err != nil {
			return false
		}
		for key, v := range want {
			if got[key] != v {
				return false
			}
		}
		return true
	})
	if !ok {
		for key, v := range want {
			t.Errorf("%s = %v, want %v (2 s after exit)", key, got[key], v)
		}
	}

	body, err := scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	checkWithPromtool(t, body)

	if err := daemon.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("daemon exit after SIGTERM: %v; stderr: %s", err, daemonErr.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("daemon did not stop within 10 s of SIGTERM")
	}
}

func checkWithPromtool(t *testing.T, body []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Skip(t, "needs promtool (Debian: prometheus) to lint the exposition")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func scrape(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// scrapeValues parses the text exposition into `name{labels}` → value for
// counters and gauges, labels sorted by name.
func scrapeValues(url string) (map[string]float64, error) {
	body, err := scrape(url)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out := make(map[string]float64)
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			labels := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out, nil
}
