package deploytest

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
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

	"github.com/sysobsd/sysobsd/internal/cgroups"
	"github.com/sysobsd/sysobsd/internal/testenv"
)

// The image of deploy/kubernetes, built offline with podman and run as the
// DaemonSet runs it: its flags come from daemonset.yaml (podmanFlags). It
// must label the calls of a workload in another podman container with that
// container's id, exactly: one container started before the daemon (its
// cgroup read from /proc/<pid>/cgroup), counted while it runs and again once
// it has exited and its cgroup is gone, and one started after (its cgroup
// from the kernel's records), counted once it has exited. Stopped as
// Kubernetes stops a pod (SIGTERM), the daemon must exit 0.
func TestPodmanImageCountsOtherContainersExactly(t *testing.T) {
	testenv.RequireRoot(t)
	pm := newPodman(t)
	cgroup2, err := cgroups.FindMount("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("this host has no cgroup2 mount, so no container label to test: %v", err)
	}
	t.Parallel()

	dir := t.TempDir()
	workloadImage := pm.build(t, "workload", workloadContainerfile, map[string]string{"workload": testenv.BuildWorkload(t, dir)})
	daemonImage := pm.build(t, "sysobsd", repo("deploy", "kubernetes", "Dockerfile"), map[string]string{"build/sysobsd": binary(t)})

	// Started before the daemon: one round done, so it has exec'd and named
	// itself, and the daemon finds it running.
	const beforeCalls, afterCalls = 4321, 1234
	before := pm.startGated(t, uniquePodmanComm("pmpre"), beforeCalls, workloadImage)

	configDir := filepath.Join(dir, "config")
	if err := os.Mkdir(configDir, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeAddress(t)
	flags, args := podmanFlags(t, cgroup2, configDir, addr)
	daemon := "sysobsd-" + strconv.Itoa(rand.IntN(1000000))
	pm.run(t, append(append(append([]string{"run", "--detach", "--name", daemon}, flags...), daemonImage), args...)...)
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := pm.command("logs", daemon).CombinedOutput()
			t.Logf("logs of the daemon's container %s:\n%s", daemon, logs)
		}
	})
	metrics := "http://" + addr + "/metrics"
	var state string
	up := testenv.Eventually(60*time.Second, func() bool {
		if _, err := get(metrics); err == nil {
			return true
		}
		out, _ := pm.command("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}", daemon).Output()
		state = strings.TrimSpace(string(out))
		return !strings.HasPrefix(state, "running") && !strings.HasPrefix(state, "created") && !strings.HasPrefix(state, "configured")
	})
	if _, err := get(metrics); !up || err != nil {
		t.Fatalf("the daemon's container serves no %s (state: %s): %v", metrics, state, err)
	}

	before.round(t)
	expectCount(t, metrics, before.comm, before.id, beforeCalls, "running, started before the daemon")

	afterComm := uniquePodmanComm("pmpost")
	create := append(append([]string{"create"}, containerFlags(t)...), workloadImage, "threads", afterComm, "1", strconv.Itoa(afterCalls))
	afterID := pm.inspectID(t, pm.run(t, create...))
	pm.run(t, "start", "--attach", afterID)
	expectCount(t, metrics, afterComm, afterID, afterCalls, "exited, started after the daemon")

	before.stop(t)
	expectCount(t, metrics, before.comm, before.id, beforeCalls, "exited, started before the daemon")

	pm.run(t, "stop", "--time", "20", daemon)
	if code := pm.run(t, "inspect", "--format", "{{.State.ExitCode}}", daemon); code != "0" {
		t.Errorf("the daemon exited %s after SIGTERM, want 0", code)
	}
	logs, err := pm.command("logs", daemon).CombinedOutput()
	if err != nil {
		t.Fatalf("podman logs %s: %v: %s", daemon, err, logs)
	}
	if strings.Contains(string(logs), `"level":"error"`) || strings.Contains(string(logs), "operation not permitted") {
		t.Errorf("errors in the daemon's container:\n%s", logs)
	}
}

// workloadContainerfile is the workload's image: the static program alone.
const workloadContainerfile = `FROM scratch
COPY workload /workload
ENTRYPOINT ["/workload"]
`

// podman runs podman on a store of the test's own (images, containers and
// state in a temporary directory), removed with everything in it when the
// test ends. vfs, so that nothing is mounted there once the containers are
// removed.
type podman struct {
	bin    string
	global []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	bin := lookPath(t, "podman", "podman")
	lookPath(t, "runc", "runc")
	// Not t.TempDir: podman refuses a runroot of more than 50 characters.
	dir, err := os.MkdirTemp("", "sysobsd-podman")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove podman's store: %v", err)
		}
	})
	pm := &podman{
		bin: bin,
		global: []string{
			"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
			"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs", "--events-backend", "none",
			// crun refuses hosts where cgroup v1 is the main hierarchy and
			// cgroup2 is mounted beside it (Debian 12 with cgroup v1 at
			// boot); runc handles both.
			"--runtime", "runc",
		},
	}
	t.Cleanup(func() {
		for _, args := range [][]string{{"rm", "--all", "--force", "--time", "0"}, {"rmi", "--all", "--force"}} {
			if out, err := pm.command(args...).CombinedOutput(); err != nil {
				t.Errorf("podman %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
	})
	return pm
}

func (pm *podman) command(args ...string) *exec.Cmd {
	return exec.Command(pm.bin, append(slices.Clone(pm.global), args...)...)
}

// run runs podman and returns its standard output, trimmed.
func (pm *podman) run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := pm.command(args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("podman %s: %v: %s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// build builds an image offline from containerfile (a path, or the text of
// one) in a fresh context holding files (context path → file to copy).
func (pm *podman) build(t *testing.T, name, containerfile string, files map[string]string) string {
	t.Helper()
	context := filepath.Join(t.TempDir(), name)
	for to, from := range files {
		to = filepath.Join(context, to)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := copyFile(from, to, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.HasPrefix(containerfile, "/") {
		text := containerfile
		containerfile = filepath.Join(context, "Containerfile")
		if err := os.WriteFile(containerfile, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	image := "localhost/" + name + ":podman-test"
	pm.run(t, "build", "--pull=never", "--network=none", "--file", containerfile, "--tag", image, context)
	return image
}

func (pm *podman) inspectID(t *testing.T, container string) string {
	t.Helper()
	return pm.run(t, "inspect", "--format", "{{.Id}}", container)
}

// containerFlags are what every container of the test needs on a host like
// the CI's: rlimits within the hard limits podman's runtime has. By default
// podman asks for more open files and processes than that; where it runs
// without CAP_SYS_RESOURCE (a sandboxed CI runner: 20000 files, and conmon
// at 32768 processes) runc then fails with "error setting rlimit type 7:
// operation not permitted" (type 6 for processes).
func containerFlags(t *testing.T) []string {
	t.Helper()
	var nofile syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	return []string{
		"--ulimit", fmt.Sprintf("nofile=%d:%d", min(1024, nofile.Max), nofile.Max),
		// Root is exempt from RLIMIT_NPROC (the kernel lets init's user
		// fork past it), so this limits nothing here.
		"--ulimit", "nproc=1024:1024",
	}
}

// gated is a workload container making calls rounds at a time: for each byte
// on its standard input, calls getppid, then "k" on its standard output.
type gated struct {
	comm, id string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	stdout   *bufio.Reader
}

func (pm *podman) startGated(t *testing.T, comm string, calls int, image string) *gated {
	t.Helper()
	name := comm + "-" + strconv.Itoa(rand.IntN(1000000))
	args := append(append([]string{"run", "--interactive", "--name", name}, containerFlags(t)...),
		image, "gated", comm, strconv.Itoa(calls))
	g := &gated{comm: comm, cmd: pm.command(args...)}
	var err error
	if g.stdin, err = g.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	g.stdout = bufio.NewReader(stdout)
	var stderr strings.Builder
	g.cmd.Stderr = &stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.stdin.Close()
		g.cmd.Process.Kill()
		g.cmd.Wait()
	})
	// podman run prints nothing before the container's own output: the
	// first round tells it started.
	g.round(t)
	g.id = pm.inspectID(t, name)
	return g
}

// round makes one round of calls and waits for it to end.
func (g *gated) round(t *testing.T) {
	t.Helper()
	if _, err := g.stdin.Write([]byte{'r'}); err != nil {
		t.Fatalf("workload %s: %v", g.comm, err)
	}
	b, err := g.stdout.ReadByte()
	if err != nil || b != 'k' {
		t.Fatalf("workload %s: read %q, %v; stderr: %s", g.comm, b, err, g.cmd.Stderr)
	}
}

// stop closes the workload's standard input and waits for its container to
// exit.
func (g *gated) stop(t *testing.T) {
	t.Helper()
	g.stdin.Close()
	if err := g.cmd.Wait(); err != nil {
		t.Fatalf("workload %s: %v; stderr: %s", g.comm, err, g.cmd.Stderr)
	}
}

// uniquePodmanComm is a process name no other process on the host has.
func uniquePodmanComm(prefix string) string {
	return fmt.Sprintf("%s%06d", prefix, rand.IntN(1000000))
}

// expectCount scrapes until the getppid count of comm in container is want,
// and fails if it is not within 20 s.
func expectCount(t *testing.T, metrics, comm, container string, want int, when string) {
	t.Helper()
	series := fmt.Sprintf(`sysobsd_syscalls_total{comm=%q,container=%q,syscall="getppid"}`, comm, container)
	var got, body string
	var err error
	ok := testenv.Eventually(20*time.Second, func() bool {
		body, err = get(metrics)
		got = ""
		for _, line := range strings.Split(body, "\n") {
			if v, found := strings.CutPrefix(line, series+" "); found {
				got = v
			}
		}
		return got == strconv.Itoa(want)
	})
	if ok {
		return
	}
	var same []string
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(line, fmt.Sprintf("comm=%q", comm)) && strings.Contains(line, `syscall="getppid"`) {
			same = append(same, line)
		}
	}
	t.Fatalf("%s (%s) = %q, want %d (scrape error: %v); the series of comm %s:\n%s", series, when, got, want, err, comm, strings.Join(same, "\n"))
}

// daemonSetSeccomp is the one field of the DaemonSet podFlags needs that
// kubernetes_test.go does not read.
type daemonSetSeccomp struct {
	Template struct {
		Spec struct {
			Containers []struct {
				SecurityContext struct {
					SeccompProfile struct {
						Type string `yaml:"type"`
					} `yaml:"seccompProfile"`
				} `yaml:"securityContext"`
			} `yaml:"containers"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

// podmanFlags translates the DaemonSet's pod into podman run's flags and
// the container's arguments: host PID namespace, root with only its
// capabilities, its seccomp profile, a read-only root file system, its
// memory limit and its read-only mounts, the host's /sys/fs/cgroup being
// wherever cgroup2 is mounted (cgroup2). The ConfigMap is configDir, with a
// configuration that turns the container label on; the daemon listens on
// addr, in the host's network namespace, for the test to scrape. A field
// the translation does not know fails the test.
func podmanFlags(t *testing.T, cgroup2, configDir, addr string) (flags, args []string) {
	t.Helper()
	_, objects := k8sObjects(t)
	ds := spec[daemonSetSpec](t, objects["DaemonSet"])
	pod := ds.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers in the DaemonSet, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext

	flags = []string{
		// Kubernetes cannot give a pod the host's cgroup namespace (so
		// its container label is empty, docs/fleet.md); podman can, and
		// must where it would make a private one (cgroup v2 hosts):
		// /proc/<pid>/cgroup of the processes already running then shows
		// the host's paths.
		"--cgroupns=host",
		"--network=host",
		// Kubernetes mounts no tmpfs on a read-only root; podman would.
		"--read-only-tmpfs=false",
	}
	flags = append(flags, containerFlags(t)...)
	if pod.HostPID {
		flags = append(flags, "--pid=host")
	}
	if sc.RunAsUser != nil {
		flags = append(flags, "--user="+strconv.Itoa(*sc.RunAsUser))
	}
	if sc.Privileged != nil && *sc.Privileged {
		flags = append(flags, "--privileged")
	}
	for _, capability := range sc.Capabilities.Drop {
		flags = append(flags, "--cap-drop="+strings.ToLower(capability))
	}
	for _, capability := range sc.Capabilities.Add {
		flags = append(flags, "--cap-add=CAP_"+capability)
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		flags = append(flags, "--read-only")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		flags = append(flags, "--security-opt=no-new-privileges")
	}
	seccomp := spec[daemonSetSeccomp](t, objects["DaemonSet"]).Template.Spec.Containers[0].SecurityContext.SeccompProfile.Type
	switch seccomp {
	case "Unconfined":
		flags = append(flags, "--security-opt=seccomp=unconfined")
	case "RuntimeDefault":
		// podman's default profile (containers-common's), which allows
		// bpf() only with CAP_SYS_ADMIN: the daemon would fail to load.
	default:
		t.Fatalf("seccompProfile.type %q: no podman equivalent in this test", seccomp)
	}
	if limit := c.Resources.Limits["memory"]; limit != "" {
		n, ok := strings.CutSuffix(limit, "Mi")
		if !ok {
			t.Fatalf("memory limit %q: this test reads Mi only", limit)
		}
		flags = append(flags, "--memory="+n+"m")
	}

	for _, m := range c.VolumeMounts {
		source := ""
		for _, v := range pod.Volumes {
			switch {
			case v.Name != m.Name:
			case v.HostPath != nil && v.HostPath.Path == "/sys/fs/cgroup":
				source = cgroup2
			case v.HostPath != nil:
				source = v.HostPath.Path
			case v.ConfigMap != nil:
				source = configDir
			}
		}
		if source == "" {
			t.Fatalf("volume mount %s: no hostPath or configMap volume of that name", m.Name)
		}
		option := ""
		if m.ReadOnly {
			option = ":ro"
		}
		flags = append(flags, "--volume="+source+":"+m.MountPath+option)
	}

	for _, a := range c.Args {
		switch {
		case strings.HasPrefix(a, "--web.listen-address="):
			a = "--web.listen-address=" + addr
		case strings.HasPrefix(a, "--config.file="):
			writeContainerLabelConfig(t, filepath.Join(configDir, filepath.Base(strings.TrimPrefix(a, "--config.file="))))
		}
		args = append(args, a)
	}
	return flags, args
}

// writeContainerLabelConfig writes the DaemonSet's configuration
// (deploy/kubernetes/sysobsd.yml) to path with the container label turned on.
func writeContainerLabelConfig(t *testing.T, path string) {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join(kubernetesDir, "sysobsd.yml"))
	if err != nil {
		t.Fatal(err)
	}
	labels := regexp.MustCompile(`(?m)^labels:.*$`)
	if !labels.Match(shipped) {
		t.Fatalf("%s: no top-level labels: line to add the container label to", filepath.Join(kubernetesDir, "sysobsd.yml"))
	}
	config := labels.ReplaceAll(shipped, []byte("labels: [comm, container]"))
	if err := os.WriteFile(path, config, 0o644); err != nil {
		t.Fatal(err)
	}
}
