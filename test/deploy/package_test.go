package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sysobsd/sysobsd/internal/testenv"
)

// What the .deb must hold, and which of it are conffiles.
var (
	packageFiles = []string{
		"/usr/bin/sysobsd",
		"/lib/systemd/system/sysobsd.service",
		"/lib/systemd/system/sysobsd.socket",
		"/etc/sysobsd/sysobsd.yml",
		"/etc/default/sysobsd",
		"/usr/share/doc/sysobsd/copyright",
		"/usr/share/doc/sysobsd/changelog.Debian.gz",
	}
	conffiles = []string{"/etc/default/sysobsd", "/etc/sysobsd/sysobsd.yml"}
)

func TestPackageContents(t *testing.T) {
	lookPath(t, "dpkg-deb", "dpkg")
	deb := debPackage(t)
	if got, want := filepath.Base(deb), "sysobsd_"+debianVersion+"_"+dpkgArch(t)+".deb"; got != want {
		t.Errorf("package file %s, want %s", got, want)
	}
	out, err := run(t, "dpkg-deb", "--contents", deb)
	if err != nil {
		t.Fatalf("dpkg-deb --contents: %v\n%s", err, out)
	}
	modes := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// -rwxr-xr-x root/root 15253666 2026-11-28 16:21 ./usr/bin/sysobsd
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb --contents: unexpected line %q", line)
		}
		if f[1] != "root/root" {
			t.Errorf("%s is owned by %s, want root/root", f[5], f[1])
		}
		modes[strings.TrimPrefix(f[5], ".")] = f[0]
	}
	for _, f := range packageFiles {
		want := "-rw-r--r--"
		if f == "/usr/bin/sysobsd" {
			want = "-rwxr-xr-x"
		}
		if got, ok := modes[f]; !ok {
			t.Errorf("%s is not in the package", f)
		} else if got != want {
			t.Errorf("%s has mode %s, want %s", f, got, want)
		}
	}
	// The packaged configuration is the example one, byte for byte.
	example, err := os.ReadFile(repo("deploy", "sysobsd.yml"))
	if err != nil {
		t.Fatal(err)
	}
	packaged, err := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -xOf - ./etc/sysobsd/sysobsd.yml`, "sh", deb).Output()
	if err != nil {
		t.Fatalf("extract sysobsd.yml: %v", err)
	}
	if string(packaged) != string(example) {
		t.Errorf("/etc/sysobsd/sysobsd.yml differs from deploy/sysobsd.yml")
	}

	out, err = run(t, "dpkg-deb", "--info", deb, "conffiles")
	if err != nil {
		t.Fatalf("dpkg-deb --info conffiles: %v\n%s", err, out)
	}
	got := strings.Fields(out)
	slices.Sort(got)
	if !slices.Equal(got, conffiles) {
		t.Errorf("conffiles %v, want %v", got, conffiles)
	}
	for field, want := range map[string]string{"Package": "sysobsd", "Version": debianVersion, "Architecture": dpkgArch(t)} {
		out, err := run(t, "dpkg-deb", "--field", deb, field)
		if err != nil || strings.TrimSpace(out) != want {
			t.Errorf("%s: %q (%v), want %q", field, strings.TrimSpace(out), err, want)
		}
	}
}

func dpkgArch(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		t.Fatalf("dpkg --print-architecture: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// Errors fail; warnings are logged (see the report of the last run).
func TestPackageHasNoLintianErrors(t *testing.T) {
	lintian := lookPath(t, "lintian", "lintian")
	deb := debPackage(t)
	t.Parallel()
	out, err := run(t, lintian, "--fail-on", "none", deb)
	if err != nil {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
	var errors, warnings []string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "E: "):
			errors = append(errors, line)
		case strings.HasPrefix(line, "W: "):
			warnings = append(warnings, line)
		}
	}
	if len(errors) > 0 {
		t.Errorf("lintian errors:\n%s", strings.Join(errors, "\n"))
	}
	if len(warnings) > 0 {
		t.Logf("lintian warnings:\n%s", strings.Join(warnings, "\n"))
	}
}

// As an admin would: install, run, edit the configuration, reinstall,
// remove (the edit stays), purge (nothing stays).
func TestPackageInstallRemovePurge(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to install a package (run `sudo make test`)")
	}
	lookPath(t, "dpkg", "dpkg")
	if status := packageStatus(t); status != "" {
		testenv.Skip(t, "a sysobsd package is installed on this machine ("+status+"); the test would replace it")
	}
	for _, f := range []string{"/usr/bin/sysobsd", "/etc/sysobsd"} {
		if _, err := os.Stat(f); err == nil {
			testenv.Skip(t, f+" exists outside any package; the test would overwrite it")
		}
	}
	deb := debPackage(t)
	t.Parallel()
	t.Cleanup(func() {
		if packageStatus(t) != "" {
			dpkg(t, "--purge", "sysobsd")
		}
	})

	dpkg(t, "--install", deb)
	if status := packageStatus(t); status != "install ok installed" {
		t.Fatalf("after dpkg -i: status %q", status)
	}
	for _, f := range packageFiles {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("after dpkg -i: %v", err)
		}
	}
	out, err := exec.Command("/usr/bin/sysobsd", "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "sysobsd, version") {
		t.Errorf("/usr/bin/sysobsd --version: %v: %s", err, out)
	}
	out, err = exec.Command("/usr/bin/sysobsd", "--config.check", "--config.file=/etc/sysobsd/sysobsd.yml").CombinedOutput()
	if err != nil {
		t.Errorf("the packaged configuration is not valid: %v: %s", err, out)
	}
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		// The installed units, with the binary now in place.
		out, err := exec.Command(analyze, "verify", "--man=no", "/lib/systemd/system/sysobsd.service", "/lib/systemd/system/sysobsd.socket").CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify of the installed units: %v\n%s", err, out)
		}
	}

	const edit = "\n# edited by the admin\n"
	appendFile(t, "/etc/sysobsd/sysobsd.yml", edit)
	// Reinstalling (postinst with the old version: the upgrade path) keeps
	// the edit without asking.
	dpkg(t, "--install", deb)
	assertContains(t, "/etc/sysobsd/sysobsd.yml", edit)

	dpkg(t, "--remove", "sysobsd")
	if status := packageStatus(t); status != "deinstall ok config-files" {
		t.Errorf("after dpkg -r: status %q", status)
	}
	for _, f := range []string{"/usr/bin/sysobsd", "/lib/systemd/system/sysobsd.service", "/lib/systemd/system/sysobsd.socket"} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("after dpkg -r: %s is still there", f)
		}
	}
	assertContains(t, "/etc/sysobsd/sysobsd.yml", edit)

	dpkg(t, "--purge", "sysobsd")
	if status := packageStatus(t); status != "" {
		t.Errorf("after dpkg -P: status %q", status)
	}
	for _, f := range []string{"/etc/sysobsd", "/etc/default/sysobsd",
		"/etc/systemd/system/sysobsd.service", "/etc/systemd/system/sysobsd.socket", // deb-systemd-helper's masks
		"/var/lib/systemd/deb-systemd-helper-enabled/sysobsd.service.dsh-also"} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("after dpkg -P: %s is still there", f)
		}
	}
}

// packageStatus is dpkg's status of sysobsd, "" when dpkg knows nothing of it.
func packageStatus(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "--show", "--showformat=${Status}", "sysobsd").Output()
	if err != nil {
		return "" // not installed, or never was
	}
	status := strings.TrimSpace(string(out))
	if status == "unknown ok not-installed" {
		return ""
	}
	return status
}

// dpkg runs dpkg, waiting out another dpkg or apt holding the lock (on a
// fresh CI machine, unattended-upgrades may).
func dpkg(t *testing.T, args ...string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		// No fsync per file: this is a test, not an upgrade of a live system.
		cmd := exec.Command("dpkg", append([]string{"--force-unsafe-io"}, args...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err == nil {
			return
		}
		if strings.Contains(string(out), "lock") && time.Now().Before(deadline) {
			time.Sleep(2 * time.Second)
			continue
		}
		t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func assertContains(t *testing.T, path, text string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if !strings.Contains(string(data), text) {
		t.Errorf("%s lost the admin's edit %q", path, text)
	}
}
