package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// daemonProcess is the built binary, started as a user would.
type daemonProcess struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	exited chan error
}

// syncBuffer is a bytes.Buffer the test may read while exec writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startDaemon runs the binary with args (prefix, e.g. setpriv, before it)
// and waits until the listen address accepts connections.
func startDaemon(t *testing.T, prefix []string, args ...string) *daemonProcess {
	t.Helper()
	testenv.RequireRoot(t)
	d := &daemonProcess{addr: freeAddress(t), stderr: &syncBuffer{}, exited: make(chan error, 1)}
	argv := append(slices.Clone(prefix), binary(t), "--web.listen-address="+d.addr)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--log.level") }) {
		argv = append(argv, "--log.level=warn")
	}
	argv = append(argv, args...)
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() { d.cmd.Process.Signal(syscall.SIGKILL) })
	up := testenv.Eventually(15*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", d.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if !up {
		t.Fatalf("daemon never listened on %s; stderr: %s", d.addr, d.stderr.String())
	}
	return d
}

// stop sends sig and waits for the exit.
func (d *daemonProcess) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("daemon did not exit within 10 s of %v", sig)
		return nil
	}
}

func (d *daemonProcess) capEff(t *testing.T) uint64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no CapEff in /proc/PID/status")
	return 0
}

// expectCounts runs a short-lived workload and polls /metrics for its exact counts.
func expectCounts(t *testing.T, d *daemonProcess, client *http.Client, scheme string) {
	t.Helper()
	workload := testenv.BuildWorkload(t, t.TempDir())
	comm := fmt.Sprintf("lc%d", time.Now().UnixNano()%1000000)
	if out, err := exec.Command(workload, "basic", comm, "300", "3", "4").CombinedOutput(); err != nil {
		t.Fatalf("workload: %v: %s", err, out)
	}
	want := fmt.Sprintf(`sysobsd_syscalls_total{comm=%q,syscall="write"} 304`, comm)
	var body string
	ok := testenv.Eventually(3*time.Second, func() bool {
		resp, err := client.Get(scheme + "://" + d.addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		body = b.String()
		return strings.Contains(body, want+"\n")
	})
	if !ok {
		t.Errorf("/metrics lacks %s", want)
	}
}

// Least privilege: a non-root user with only CAP_BPF and CAP_PERFMON (as the
// systemd unit grants them) loads, drops every capability, and still counts.
func TestRunsUnprivilegedAndDropsEveryCapability(t *testing.T) {
	d := startDaemon(t, []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=+bpf,+perfmon", "--ambient-caps=+bpf,+perfmon"})
	if eff := d.capEff(t); eff != 0 {
		t.Errorf("CapEff = %#x after attach, want 0", eff)
	}
	expectCounts(t, d, http.DefaultClient, "http")
}

func TestCapabilitiesKeepKeepsOnlyWhatItNames(t *testing.T) {
	d := startDaemon(t, nil, "--capabilities.keep=bpf")
	const capBPF = 39
	if eff := d.capEff(t); eff != 1<<capBPF {
		t.Errorf("CapEff = %#x, want only CAP_BPF (%#x)", eff, uint64(1)<<capBPF)
	}
}

// TLS and basic auth through the exporter-toolkit web config.
func TestTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSignedCert(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := writeFile(t, "web.yml", fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n", certFile, keyFile, hash))
	d := startDaemon(t, nil, "--web.config.file="+webConfig, "--log.format=json")

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(user, pass string) int {
		req, _ := http.NewRequest("GET", "https://"+d.addr+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET over TLS: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("prometheus", "s3cret"); code != http.StatusOK {
		t.Errorf("right password: %d, want 200", code)
	}
	if code := get("prometheus", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", code)
	}
	if code := get("", ""); code != http.StatusUnauthorized {
		t.Errorf("no password: %d, want 401", code)
	}
	// Plain HTTP to the TLS port gets no metrics.
	if resp, err := http.Get("http://" + d.addr + "/metrics"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP served /metrics")
		}
		resp.Body.Close()
	}
	// net/http's own complaint about it is logged in the daemon's format.
	var line string
	testenv.Eventually(5*time.Second, func() bool {
		for _, l := range strings.Split(d.stderr.String(), "\n") {
			if strings.Contains(l, "TLS handshake error") {
				line = l
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(line, "{") || !json.Valid([]byte(line)) {
		t.Errorf("the TLS handshake error is not a JSON log line: %q", line)
	}
}

func selfSignedCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sysobsd test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

type bpftoolObject struct {
	ID int `json:"id"`
}

// objectsOf lists the ids of the BPF programs ("prog") or links ("link") a
// process holds, from the fdinfo of its bpf_link descriptors (Debian's
// bpftool cannot show owning pids).
func objectsOf(t *testing.T, kind string, pid int) []int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || target != "anon_inode:bpf_link" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, kind+"_id:"); ok {
				if id, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
					ids = append(ids, id)
				}
			}
		}
	}
	return ids
}

func objectsExist(t *testing.T, kind string, ids []int) []int {
	t.Helper()
	out, err := exec.Command("bpftool", "--json", kind, "show").Output()
	if err != nil {
		testenv.Skip(t, "needs bpftool (Debian: bpftool): "+err.Error())
	}
	var objs []bpftoolObject
	if err := json.Unmarshal(out, &objs); err != nil {
		t.Fatal(err)
	}
	var left []int
	for _, o := range objs {
		if slices.Contains(ids, o.ID) {
			left = append(left, o.ID)
		}
	}
	return left
}

// SIGTERM detaches everything: no program or link of the daemon remains.
func TestSIGTERMLeavesNoProgramsOrLinks(t *testing.T) {
	d := startDaemon(t, nil, "--capabilities.keep=none")
	pid := d.cmd.Process.Pid
	progs, links := objectsOf(t, "prog", pid), objectsOf(t, "link", pid)
	if len(progs) < 5 || len(links) < 5 {
		t.Fatalf("daemon holds %d programs and %d links, want at least 5 each", len(progs), len(links))
	}
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v; stderr: %s", err, d.stderr.String())
	}
	ok := testenv.Eventually(5*time.Second, func() bool {
		return len(objectsExist(t, "prog", progs))+len(objectsExist(t, "link", links)) == 0
	})
	if !ok {
		t.Errorf("left behind: programs %v, links %v", objectsExist(t, "prog", progs), objectsExist(t, "link", links))
	}
}

// After kill -9 nothing is pinned or stuck: the next start counts exactly.
func TestRestartAfterKill9IsClean(t *testing.T) {
	first := startDaemon(t, nil)
	progs := objectsOf(t, "prog", first.cmd.Process.Pid)
	first.stop(t, syscall.SIGKILL)
	if !testenv.Eventually(5*time.Second, func() bool { return len(objectsExist(t, "prog", progs)) == 0 }) {
		t.Errorf("programs of the killed daemon remain: %v", objectsExist(t, "prog", progs))
	}
	second := startDaemon(t, nil)
	expectCounts(t, second, http.DefaultClient, "http")
}

// events.enabled follows a SIGHUP: the endpoint answers 404 while events
// are off, and events kept before they were turned off are not served when
// they are turned on again (their paths may be sensitive).
func TestSIGHUPTurnsEventsOnAndOff(t *testing.T) {
	cfg := writeFile(t, "sysobsd.yml", "events:\n  enabled: false\n")
	d := startDaemon(t, nil, "--config.file="+cfg, "--log.level=info")
	get := func() (int, string) {
		resp, err := http.Get("http://" + d.addr + "/api/v1/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	reloads := 0
	reloadWith := func(yml string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
			t.Fatal(err)
		}
		reloads++
		d.cmd.Process.Signal(syscall.SIGHUP)
		if !testenv.Eventually(5*time.Second, func() bool { return strings.Count(d.stderr.String(), "msg=reloaded") == reloads }) {
			t.Fatalf("reload %d not done; stderr: %s", reloads, d.stderr.String())
		}
	}
	marker := fmt.Sprintf("/nonexistent/sysobsd-events-%d", os.Getpid())
	failOpen := func() { os.Open(marker) } // openat fails with ENOENT: a notable event

	if code, _ := get(); code != http.StatusNotFound {
		t.Errorf("events off at start: %d, want 404", code)
	}
	reloadWith("events:\n  enabled: true\n")
	var body string
	if !testenv.Eventually(5*time.Second, func() bool {
		failOpen()
		code, b := get()
		body = b
		return code == http.StatusOK && strings.Contains(b, marker)
	}) {
		t.Fatalf("events turned on: no event with %s served; last body: %.300s", marker, body)
	}
	reloadWith("events:\n  enabled: false\n")
	if code, _ := get(); code != http.StatusNotFound {
		t.Errorf("events turned off: %d, want 404", code)
	}
	reloadWith("events:\n  enabled: true\n")
	if code, b := get(); code != http.StatusOK || strings.Contains(b, marker) {
		t.Errorf("events on again: %d, and the events kept before they were turned off served: %v", code, strings.Contains(b, marker))
	}
}

// A SIGHUP with a bad config keeps the running one; with a good one, the
// daemon keeps serving.
func TestSIGHUPReloads(t *testing.T) {
	cfg := writeFile(t, "sysobsd.yml", "labels: [comm]\n")
	d := startDaemon(t, nil, "--config.file="+cfg, "--log.level=info")
	if err := os.WriteFile(cfg, []byte("labels: [comm, bogus]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	if !testenv.Eventually(5*time.Second, func() bool {
		return strings.Contains(d.stderr.String(), "reload failed; keeping the running configuration")
	}) {
		t.Errorf("bad reload not reported; stderr: %s", d.stderr.String())
	}
	if err := os.WriteFile(cfg, []byte("labels: [comm]\ncardinality:\n  max_series: 5000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	if !testenv.Eventually(5*time.Second, func() bool { return strings.Contains(d.stderr.String(), `msg=reloaded`) }) {
		t.Errorf("good reload not reported; stderr: %s", d.stderr.String())
	}
	expectCounts(t, d, http.DefaultClient, "http")
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("exit: %v", err)
	}
}
