// Command package builds sysobsd's Debian package (.deb) with nfpm: the
// static binary, the systemd units, the configuration as conffiles, and the
// maintainer scripts of deploy/package/debian.
//
//	go run ./deploy/package --version $(VERSION) --binary build/sysobsd --out dist/
//
// Run it from the repository root (make package does): the units and the
// example configuration are read from deploy/.
package main

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

const (
	name   = "sysobsd"
	docDir = "/usr/share/doc/" + name
	// The .invalid domain (RFC 2606) until the project has a list address;
	// release builds set DEBFULLNAME and DEBEMAIL, as Debian's tools read them.
	defaultMaintainer = "sysobsd maintainers <maintainers@sysobsd.invalid>"
	synopsis          = "per-process syscall counts for Prometheus, counted in the kernel"
	// The extended description: lines start with a space (deb-control(5)).
	description = synopsis + `
 sysobsd is strace -c for the whole machine, always on: an eBPF daemon that
 counts every syscall on the host in the kernel (calls, errors by errno and
 time spent) per process, and serves the totals as Prometheus metrics on
 port 10190.
 .
 Needs Linux 5.15 or later with BTF (CONFIG_DEBUG_INFO_BTF=y). The systemd
 unit runs it with CAP_BPF and CAP_PERFMON only; it is neither enabled nor
 started at installation: systemctl enable --now sysobsd.`
)

func main() {
	version := flag.String("version", "", "version, as git describe prints it (v1.2.3, v1.2.3-4-gabcdef0-dirty, abcdef0)")
	binary := flag.String("binary", "", "the static sysobsd binary to package (make build)")
	out := flag.String("out", "dist", "directory for the .deb")
	maintainer := flag.String("maintainer", maintainerFromEnv(), "Maintainer field and changelog signature, \"Name <address>\"")
	flag.Parse()
	if flag.NArg() > 0 || *version == "" || *binary == "" {
		fmt.Fprintln(os.Stderr, "usage: go run ./deploy/package --version VERSION --binary PATH [--out DIR]")
		os.Exit(2)
	}
	path, err := build(*version, *binary, *out, *maintainer)
	if err != nil {
		fmt.Fprintf(os.Stderr, "package: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

// build writes the .deb into out and returns its path.
func build(version, binary, out, maintainer string) (string, error) {
	arch, err := debianArch(binary)
	if err != nil {
		return "", err
	}
	debVersion, err := debianVersion(version)
	if err != nil {
		return "", err
	}
	for _, f := range []string{"deploy/sysobsd.yml", "deploy/systemd/sysobsd.service", "deploy/package/debian/postinst"} {
		if _, err := os.Stat(f); err != nil {
			return "", fmt.Errorf("%w; run from the repository root (make package)", err)
		}
	}
	tmp, err := os.MkdirTemp("", "sysobsd-package")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	changelog := filepath.Join(tmp, "changelog.Debian.gz")
	if err := writeChangelog(changelog, debVersion, version, maintainer, buildTime()); err != nil {
		return "", err
	}

	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode}}
	}
	conffile := func(src, dst string) *files.Content {
		c := file(src, dst, 0o644)
		c.Type = files.TypeConfig
		return c
	}
	info := &nfpm.Info{
		Name:          name,
		Arch:          arch,
		Platform:      "linux",
		Version:       debVersion,
		VersionSchema: "none", // debianVersion has done the mapping
		Release:       "1",
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    maintainer,
		Description:   description,
		MTime:         buildTime(),
		Overridables: nfpm.Overridables{
			Umask: 0o022,
			Contents: files.Contents{
				file(binary, "/usr/bin/sysobsd", 0o755),
				file("deploy/systemd/sysobsd.service", "/lib/systemd/system/sysobsd.service", 0o644),
				file("deploy/systemd/sysobsd.socket", "/lib/systemd/system/sysobsd.socket", 0o644),
				conffile("deploy/sysobsd.yml", "/etc/sysobsd/sysobsd.yml"),
				conffile("deploy/package/debian/default", "/etc/default/sysobsd"),
				file("deploy/package/debian/copyright", docDir+"/copyright", 0o644),
				file(changelog, docDir+"/changelog.Debian.gz", 0o644),
				file("docs/install.md", docDir+"/install.md", 0o644),
				// Go binaries are static by design; lintian knows that only
				// from a source package's Build-Depends, which nfpm has not.
				file("deploy/package/debian/lintian-overrides", "/usr/share/lintian/overrides/"+name, 0o644),
			},
			Scripts: nfpm.Scripts{
				PostInstall: "deploy/package/debian/postinst",
				PreRemove:   "deploy/package/debian/prerm",
				PostRemove:  "deploy/package/debian/postrm",
			},
		},
	}
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(out, deb.Default.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("build %s: %w", path, err)
	}
	return path, f.Close()
}

// debianArch names the binary's architecture as dpkg does; the BPF objects
// exist for these two only.
func debianArch(binary string) (string, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return "", fmt.Errorf("--binary %s: %w; build it first (make build)", binary, err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	}
	return "", fmt.Errorf("--binary %s: unsupported architecture %s; sysobsd is built for amd64 and arm64", binary, f.Machine)
}

// describe matches git describe's output: a tag, commits since it, the
// abbreviated hash, and whether the tree was dirty.
var describe = regexp.MustCompile(`^v?([0-9][0-9A-Za-z.]*)(?:-([0-9A-Za-z.]+?))??(?:-([0-9]+)-g([0-9a-f]+))?(-dirty)?$`)

// untagged matches git describe --always without a tag (a bare hash), or
// the Makefile's "dev" outside git.
var untagged = regexp.MustCompile(`^([0-9a-f]{7,40}|dev)(-dirty)?$`)

// debianVersion maps git describe's output to a Debian upstream version that
// sorts the same way: v1.2.3-rc1 → 1.2.3~rc1 (before 1.2.3), v1.2.3-4-gabc →
// 1.2.3+4.gabc (after it), a bare hash abc1234 → 0.0.0~git.abc1234 (before
// any release).
func debianVersion(v string) (string, error) {
	if m := untagged.FindStringSubmatch(v); m != nil {
		out := "0.0.0~git." + m[1]
		if m[2] != "" {
			out += "+dirty"
		}
		return out, nil
	}
	if m := describe.FindStringSubmatch(v); m != nil {
		out := m[1]
		if m[2] != "" {
			out += "~" + m[2]
		}
		if m[3] != "" {
			out += "+" + m[3] + ".g" + m[4]
		}
		if m[5] != "" {
			out += "+dirty"
		}
		return out, nil
	}
	return "", fmt.Errorf("--version %q: want git describe's output (v1.2.3, v1.2.3-4-gabcdef0, abcdef0, each optionally -dirty)", v)
}

// maintainerFromEnv follows dch(1): DEBFULLNAME and DEBEMAIL.
func maintainerFromEnv() string {
	fullName, email := os.Getenv("DEBFULLNAME"), os.Getenv("DEBEMAIL")
	if fullName == "" || email == "" {
		return defaultMaintainer
	}
	return fullName + " <" + email + ">"
}

// buildTime honours SOURCE_DATE_EPOCH, for reproducible packages.
func buildTime() time.Time {
	var sec int64
	if _, err := fmt.Sscan(os.Getenv("SOURCE_DATE_EPOCH"), &sec); err == nil {
		return time.Unix(sec, 0).UTC()
	}
	return time.Now().UTC().Truncate(time.Second)
}

// writeChangelog writes the one-entry Debian changelog that policy asks of
// every package, gzip -9n compressed.
func writeChangelog(path, debVersion, gitVersion, maintainer string, when time.Time) error {
	var text bytes.Buffer
	fmt.Fprintf(&text, "%s (%s-1) unstable; urgency=medium\n\n", name, debVersion)
	fmt.Fprintf(&text, "  * Built from sysobsd %s.\n\n", gitVersion)
	fmt.Fprintf(&text, " -- %s  %s\n", maintainer, when.Format(time.RFC1123Z))
	var gz bytes.Buffer
	w, err := gzip.NewWriterLevel(&gz, gzip.BestCompression) // no name, no mtime: gzip -n
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, &text); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, gz.Bytes(), 0o644)
}
