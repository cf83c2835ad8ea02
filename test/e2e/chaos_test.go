package e2e

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// chaosComm is the program whose writes are made to fail: a copy of
// Debian's dash, so the alert's comm label is its own.
const chaosComm = "chaoswriter"

// A chaos test of the shipped alerts, as docs/dashboards-and-alerts.md
// tells users to run one: sysobsd inject makes a real program's writes fail
// with ENOSPC, with no full disk, while the daemon counts them and Debian's
// Prometheus evaluates deploy/prometheus's rules and alerts (for: shortened
// to 5s, expressions as shipped): SysobsdENOSPCSpike fires for that program.
func TestInjectedENOSPCFiresTheShippedAlert(t *testing.T) {
	testenv.RequireRoot(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Skip(t, "needs Debian's prometheus package (the prometheus server binary)")
	}
	dash, err := exec.LookPath("dash")
	if err != nil {
		testenv.Skip(t, "needs Debian's dash, the program whose writes fail")
	}
	dir := t.TempDir()
	daemonBin := testenv.BuildDaemon(t)
	repo := testenv.RepoRoot()
	writer := filepath.Join(dir, chaosComm)
	src, err := os.ReadFile(dash)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(writer, src, 0o755); err != nil {
		t.Fatal(err)
	}

	daemonAddr := testenv.FreeAddress(t)
	config := writeFile(t, dir, "sysobsd.yml", "fold_interval: 200ms\nlabels: [comm]\n")
	start(t, "sysobsd", daemonBin, "--config.file="+config, "--web.listen-address="+daemonAddr, "--log.level=warn")
	waitHTTP(t, "sysobsd", "http://"+daemonAddr+"/metrics", 15*time.Second)
	promAddr := testenv.FreeAddress(t)
	start(t, "prometheus", promBin,
		"--config.file="+writePrometheusConfig(t, dir, repo, daemonAddr),
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr,
		"--log.level=warn")
	waitHTTP(t, "prometheus", "http://"+promAddr+"/-/ready", 30*time.Second)
	prom := &promAPI{base: "http://" + promAddr}

	// An application appending to its log file about 50 times a second;
	// every write(2) it makes fails as on a full disk.
	data := filepath.Join(dir, "app.log")
	var out tailBuffer
	app := exec.Command(daemonBin, "inject", "-e", "inject=write:error=ENOSPC", "--",
		writer, "-c", `while :; do echo record >> "$1"; sleep 0.02; done`, chaosComm, data)
	app.Stdout, app.Stderr = &out, &out
	app.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // stopped as a group
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-app.Process.Pid, syscall.SIGKILL)
		_ = app.Wait()
		if t.Failed() {
			t.Logf("sysobsd inject output:\n%s", out.String())
		}
	})

	began := time.Now()
	if !testenv.Eventually(alertTimeout, func() bool {
		time.Sleep(500 * time.Millisecond)
		return prom.firing(t, "SysobsdENOSPCSpike", chaosComm)
	}) {
		t.Fatalf("SysobsdENOSPCSpike{comm=%q} not firing after %s; alerts: %s; ENOSPC rate: %s",
			chaosComm, alertTimeout, prom.raw(t, "/api/v1/alerts"),
			prom.raw(t, "/api/v1/query?query="+url.QueryEscape(`comm_errno:sysobsd_syscall_errors:rate5m{errno="ENOSPC"}`)))
	}
	t.Logf("SysobsdENOSPCSpike{comm=%q} firing after %s", chaosComm, time.Since(began).Round(100*time.Millisecond))

	// The failures were injected, not real: nothing reached the file.
	if b, err := os.ReadFile(data); err == nil && strings.Contains(string(b), "record") {
		t.Errorf("%s holds %q: a write was not failed", data, b)
	}
}
