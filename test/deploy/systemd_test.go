package deploytest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

var (
	serviceFile = repo("deploy", "systemd", "sysobsd.service")
	socketFile  = repo("deploy", "systemd", "sysobsd.socket")
)

// unitFile is a parsed unit: section → key → every assignment, in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n+1, line)
			}
			u[section][key] = append(u[section][key], value)
		}
	}
	return u
}

// get is the last assignment of key, as systemd reads single-valued keys.
func (u unitFile) get(section, key string) string {
	values := u[section][key]
	if len(values) == 0 {
		return ""
	}
	return values[len(values)-1]
}

// The settings the daemon and the docs rely on, checked without systemd.
func TestServiceUnitSettings(t *testing.T) {
	u := parseUnit(t, serviceFile)
	want := []struct{ key, value string }{
		{"Type", "notify"},
		{"DynamicUser", "yes"},
		{"AmbientCapabilities", "CAP_BPF CAP_PERFMON"},
		{"CapabilityBoundingSet", "CAP_BPF CAP_PERFMON"},
		{"LimitMEMLOCK", "infinity"},
		{"EnvironmentFile", "-/etc/default/sysobsd"},
		{"ExecStart", "/usr/bin/sysobsd --config.file=/etc/sysobsd/sysobsd.yml $SYSOBSD_OPTS"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
		{"ProtectSystem", "strict"},
		{"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{"NoNewPrivileges", "yes"},
	}
	for _, w := range want {
		if got := u.get("Service", w.key); got != w.value {
			t.Errorf("[Service] %s=%q, want %q", w.key, got, w.value)
		}
	}
	// ProtectProc=invisible would hide the processes the daemon names.
	if v := u.get("Service", "ProtectProc"); v != "" && v != "default" {
		t.Errorf("ProtectProc=%s hides other users' /proc/<pid>: sysobsd could not name their processes", v)
	}
	if !slices.Contains(strings.Fields(strings.Join(u["Service"]["SystemCallFilter"], " ")), "bpf") {
		t.Errorf("SystemCallFilter does not allow bpf: %q", u["Service"]["SystemCallFilter"])
	}
	if got := u.get("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%q, want multi-user.target", got)
	}
	s := parseUnit(t, socketFile)
	if got := s.get("Socket", "ListenStream"); got != "10190" {
		t.Errorf("sysobsd.socket ListenStream=%q, want the daemon's default port 10190", got)
	}
}

// systemd-analyze verify: no warning about either unit. Without systemd as
// PID 1 it still loads the files and checks every setting and command.
func TestSystemdAnalyzeVerify(t *testing.T) {
	tool := lookPath(t, "systemd-analyze", "systemd")
	out, err := run(t, tool, "verify", "--man=no", serviceFile, socketFile)
	var problems []string
	tolerated := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// Until the package is installed; TestPackageInstallRemovePurge
		// verifies the installed unit with the binary in place.
		if strings.Contains(line, "Command /usr/bin/sysobsd is not executable: No such file or directory") {
			tolerated = true
			continue
		}
		if line != "" {
			problems = append(problems, line)
		}
	}
	if len(problems) > 0 || (err != nil && !tolerated) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(problems, "\n"))
	}
}

var exposure = regexp.MustCompile(`Overall exposure level for sysobsd\.service: ([0-9.]+)`)

// systemd-analyze security rates the sandbox from 0 (locked down) to 10.
func TestSystemdSecurityExposureAtMost2(t *testing.T) {
	tool := lookPath(t, "systemd-analyze", "systemd")
	out, err := run(t, tool, "security", "--offline=yes", "--no-pager", serviceFile)
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposure.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	level, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	if level > 2.0 {
		t.Errorf("exposure %.1f > 2.0; what is not locked down:\n%s", level, grepLines(out, "✗"))
	}
	t.Logf("exposure %.1f", level)
}

func grepLines(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// The daemon under an imitation of the unit's sandbox, as far as it can be
// built without systemd as PID 1: a non-root user with only the unit's
// ambient capabilities and no_new_privs; /proc mounted with subset=pid
// (ProcSubset=pid); / and /sys read-only (ProtectSystem=strict,
// ProtectKernelTunables); the unit's own SystemCallFilter as a seccomp
// allow-list returning EPERM; and NOTIFY_SOCKET, for Type=notify. It must
// come up, say READY=1, name another user's process, reload on SIGHUP and
// stop cleanly on SIGTERM.
func TestDaemonRunsInTheUnitSandbox(t *testing.T) {
	testenv.RequireRoot(t)
	analyze := lookPath(t, "systemd-analyze", "systemd")
	unshare := lookPath(t, "unshare", "util-linux")
	setpriv := lookPath(t, "setpriv", "util-linux")
	t.Parallel()
	u := parseUnit(t, serviceFile)
	allowed := syscallAllowList(t, analyze, u["Service"]["SystemCallFilter"])
	var caps []string
	for _, c := range strings.Fields(u.get("Service", "AmbientCapabilities")) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	bin := binary(t)

	notifications := listenNotify(t)
	config := filepath.Join(shared, "sandbox.yml")
	labels := "[comm]"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		labels = "[comm, cgroup]" // reads /sys/fs/cgroup, read-only under ProtectControlGroups
	}
	if err := os.WriteFile(config, []byte("labels: "+labels+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddress(t)
	procOptions := "rw"
	if v := u.get("Service", "ProcSubset"); v == "pid" {
		procOptions += ",subset=pid"
	}
	if v := u.get("Service", "ProtectProc"); v != "" && v != "default" {
		procOptions += ",hidepid=" + v
	}
	sandbox := `mount -t proc -o ` + procOptions + ` proc /proc && mount -o remount,bind,ro /sys && mount -o remount,bind,ro / && exec "$@"`
	// systemd installs the seccomp filter last, after changing the user
	// (setresuid is in @privileged): so does the helper, run as nobody.
	helper := filepath.Join(shared, "seccomp-helper")
	if err := copyFile(self, helper, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "--", "sh", "-c", sandbox, "sh",
		setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
		"--inh-caps=-all,"+strings.Join(caps, ","), "--ambient-caps="+strings.Join(caps, ","),
		"--bounding-set=-all,"+strings.Join(caps, ","),
		helper, "--", bin, "--config.file="+config, "--web.listen-address="+addr)
	cmd.Env = append(os.Environ(), seccompHelperEnv+"="+strings.Join(allowed, ","), "NOTIFY_SOCKET="+notifications.path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGKILL) })

	notifications.expect(t, "READY=1", 20*time.Second, exited, &stderr)
	// This process (root) started before the daemon: its name comes from
	// /proc/<pid>/comm, readable under ProcSubset=pid.
	comm := filepath.Base(self)
	if len(comm) > 15 {
		comm = comm[:15]
	}
	var body string
	ok := testenv.Eventually(10*time.Second, func() bool {
		body, err = get("http://" + addr + "/metrics")
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "sysobsd_syscalls_total{") && strings.Contains(line, fmt.Sprintf("comm=%q", comm)) {
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no sysobsd_syscalls_total for comm=%q (a root process) in the sandbox: %v\nstderr: %s", comm, err, stderr.String())
	}

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	notifications.expect(t, "RELOADING=1", 10*time.Second, exited, &stderr)
	notifications.expect(t, "READY=1", 10*time.Second, exited, &stderr)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notifications.expect(t, "STOPPING=1", 10*time.Second, exited, &stderr)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v; stderr: %s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("no exit within 10 s of SIGTERM")
	}
	if strings.Contains(stderr.String(), "level=error") || strings.Contains(stderr.String(), "operation not permitted") {
		t.Errorf("errors in the sandbox:\n%s", stderr.String())
	}
}

// syscallAllowList expands SystemCallFilter= assignments as systemd does for
// an allow-list: the first names what is allowed, a later ~ line removes, a
// later plain line adds back. Names this architecture lacks are left out.
func syscallAllowList(t *testing.T, analyze string, assignments []string) []string {
	t.Helper()
	out, err := exec.Command(analyze, "syscall-filter", "--no-pager").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	groups := map[string][]string{}
	var current string
	for _, line := range strings.Split(string(out), "\n") {
		field := strings.TrimSpace(line)
		switch {
		case field == "" || strings.HasPrefix(field, "#"):
		case strings.HasPrefix(line, "@"):
			current = field
		case current != "":
			groups[current] = append(groups[current], field)
		}
	}
	var expand func(name string, into map[string]bool)
	expand = func(name string, into map[string]bool) {
		if !strings.HasPrefix(name, "@") {
			into[name] = true
			return
		}
		members, ok := groups[name]
		if !ok {
			t.Fatalf("systemd-analyze knows no syscall group %s", name)
		}
		for _, m := range members {
			expand(m, into)
		}
	}
	allowed := map[string]bool{}
	for i, a := range assignments {
		deny := strings.HasPrefix(a, "~")
		if i == 0 && deny {
			t.Fatalf("SystemCallFilter starts with a deny list (%q); this imitation handles allow-lists only", a)
		}
		set := map[string]bool{}
		for _, name := range strings.Fields(strings.TrimPrefix(a, "~")) {
			expand(name, set)
		}
		for name := range set {
			if deny {
				delete(allowed, name)
			} else {
				allowed[name] = true
			}
		}
	}
	info, err := arch.GetInfo("")
	if err != nil {
		testenv.Skip(t, "no seccomp syscall table for this architecture: "+err.Error())
	}
	var names []string
	for name := range allowed {
		if _, ok := info.SyscallNames[name]; ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// seccompHelperEnv makes the test binary a helper: it loads a seccomp
// allow-list (the comma-separated names in the variable) and executes the
// command after "--", which inherits the filter, as under systemd.
const seccompHelperEnv = "SYSOBSD_DEPLOYTEST_SECCOMP"

func seccompHelper() {
	names := strings.Split(os.Getenv(seccompHelperEnv), ",")
	args := os.Args[1:]
	if len(args) < 2 || args[0] != "--" {
		fmt.Fprintln(os.Stderr, "seccomp helper: want -- command [args]")
		os.Exit(2)
	}
	args = args[1:]
	filter := seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionErrno, // SystemCallErrorNumber=EPERM
			Syscalls:      []seccomp.SyscallGroup{{Action: seccomp.ActionAllow, Names: names}},
		},
	}
	if err := seccomp.LoadFilter(filter); err != nil {
		fmt.Fprintln(os.Stderr, "seccomp helper:", err)
		os.Exit(1)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, seccompHelperEnv+"=") })
	err := syscall.Exec(args[0], args, env)
	fmt.Fprintln(os.Stderr, "seccomp helper: exec:", err)
	os.Exit(1)
}

// notifySocket plays systemd's side of sd_notify(3).
type notifySocket struct {
	path     string
	messages chan string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp(shared, "notify")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: filepath.Join(dir, "notify"), messages: make(chan string, 16)}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// The daemon runs as nobody.
	if err := os.Chmod(n.path, 0o777); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(n.messages)
				return
			}
			n.messages <- string(buf[:k])
		}
	}()
	return n
}

// expect waits for a message with the field (READY=1, ...), skipping others.
func (n *notifySocket) expect(t *testing.T, field string, timeout time.Duration, exited <-chan error, stderr *bytes.Buffer) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case msg := <-n.messages:
			sc := bufio.NewScanner(strings.NewReader(msg))
			for sc.Scan() {
				if sc.Text() == field {
					return
				}
			}
		case err := <-exited:
			t.Fatalf("daemon exited (%v) before sending %s; stderr: %s", err, field, stderr.String())
		case <-deadline:
			t.Fatalf("no %s on NOTIFY_SOCKET within %v (Type=notify would time out); stderr: %s", field, timeout, stderr.String())
		}
	}
}

func copyFile(from, to string, mode os.FileMode) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, mode)
}

func freeAddress(t *testing.T) string { return testenv.FreeAddress(t) }

func get(url string) (string, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(body), err
}
