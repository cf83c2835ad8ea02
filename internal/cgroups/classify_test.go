package cgroups

import (
	"strings"
	"testing"
)

const (
	ctr  = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
	node = "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"
	// The kubelet's systemd driver writes a pod's uid with "_" for "-" in slice names.
	podUID        = "543ca024-9a37-4c57-aeb0-994115189cca"
	podUIDInSlice = "543ca024_9a37_4c57_aeb0_994115189cca"
	podSlice      = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDInSlice + ".slice"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		unit      string
		container string
	}{
		{"root", "/", "", ""},
		{"empty", "", "", ""},
		{"service", "/system.slice/nginx.service", "nginx.service", ""},
		{"trailing slash", "/system.slice/nginx.service/", "nginx.service", ""},
		{"no leading slash", "system.slice/nginx.service", "nginx.service", ""},
		{"sub-cgroup a service made", "/system.slice/nginx.service/worker", "nginx.service", ""},
		{"process directly in a slice", "/system.slice", "system.slice", ""},
		{"login session", "/user.slice/user-1000.slice/session-2.scope", "session-2.scope", ""},
		{"user manager's own unit", "/user.slice/user-1000.slice/user@1000.service/init.scope", "init.scope", ""},
		{"user unit", "/user.slice/user-1000.slice/user@1000.service/app.slice/app-org.gnome.Terminal.slice/vte-spawn-" + podUID + ".scope",
			"vte-spawn-" + podUID + ".scope", ""},
		{"init", "/init.scope", "init.scope", ""},
		{"socket", "/system.slice/sshd.socket", "sshd.socket", ""},
		{"mount helper", "/system.slice/mnt-data.mount", "mnt-data.mount", ""},
		{"root mount", "/system.slice/-.mount", "-.mount", ""},
		{"swap", "/system.slice/dev-zram0.swap", "dev-zram0.swap", ""},
		{"escaped instance", `/system.slice/system-systemd\x2dfsck.slice/systemd-fsck@dev-disk-by\x2duuid-0a3b.service`,
			"systemd-fsck@dev-disk-by-uuid-0a3b.service", ""},
		{"escaped mount", `/system.slice/home-alice\x2dwork\x20stuff.mount`, "home-alice-work stuff.mount", ""},
		{"escaped slice only", `/system.slice/system-getty\x2dstatic.slice`, "system-getty-static.slice", ""},
		// go-systemd decodes only \x00-\x7f, so UTF-8 stays escaped (and the label valid UTF-8).
		{"non-ASCII stays escaped", `/system.slice/home-jos\xc3\xa9.mount`, `home-jos\xc3\xa9.mount`, ""},
		{"cgroupfs clash escape", "/system.slice/_cpu.service", "cpu.service", ""},
		{"bare suffix is not a unit", "/system.slice/.service", "system.slice", ""},
		{"suffix inside a name", "/system.slice/nginx.service.d", "system.slice", ""},

		{"docker cgroupfs", "/docker/" + ctr, "", ctr},
		{"docker cgroupfs trailing slash", "/docker/" + ctr + "/", "", ctr},
		{"docker systemd", "/system.slice/docker-" + ctr + ".scope", "docker-" + ctr + ".scope", ctr},
		{"kubepods cgroupfs", "/kubepods/burstable/pod" + podUID + "/" + ctr, "", ctr},
		{"kubepods cgroupfs guaranteed", "/kubepods/pod" + podUID + "/" + ctr, "", ctr},
		{"kubepods pod level", "/kubepods/besteffort/pod" + podUID, "", ""},
		{"containerd systemd", podSlice + "/cri-containerd-" + ctr + ".scope", "cri-containerd-" + ctr + ".scope", ctr},
		{"cri-o systemd", podSlice + "/crio-" + ctr + ".scope", "crio-" + ctr + ".scope", ctr},
		{"cri-o monitor is not the container", podSlice + "/crio-conmon-" + ctr + ".scope", "crio-conmon-" + ctr + ".scope", ""},
		{"cri-o pod level", podSlice, "kubepods-burstable-pod" + podUIDInSlice + ".slice", ""},
		{"containerd cgroupfs under systemd kubelet",
			"/system.slice/containerd.service/kubepods-burstable-pod" + podUIDInSlice + ".slice:cri-containerd:" + ctr,
			"containerd.service", ctr},
		{"podman", "/machine.slice/libpod-" + ctr + ".scope", "libpod-" + ctr + ".scope", ctr},
		{"podman --systemd payload", "/machine.slice/libpod-" + ctr + ".scope/container", "libpod-" + ctr + ".scope", ctr},
		{"podman monitor", "/machine.slice/libpod-conmon-" + ctr + ".scope", "libpod-conmon-" + ctr + ".scope", ""},
		{"rootless podman", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + ctr + ".scope",
			"libpod-" + ctr + ".scope", ctr},
		{"podman cgroupfs", "/libpod_parent/libpod-" + ctr, "", ctr},
		{"systemd in a container", "/system.slice/docker-" + ctr + ".scope/system.slice/nginx.service", "nginx.service", ctr},
		{"kind: deepest container wins",
			"/system.slice/docker-" + node + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + podUIDInSlice + ".slice/cri-containerd-" + ctr + ".scope",
			"cri-containerd-" + ctr + ".scope", ctr},

		{"64 chars not hex", "/docker/" + strings.Repeat("g", 64), "", ""},
		{"63 hex", "/system.slice/docker-" + ctr[:63] + ".scope", "docker-" + ctr[:63] + ".scope", ""},
		{"65 hex", "/docker/" + ctr + "0", "", ""},
		{"uppercase hex", "/docker/" + strings.ToUpper(ctr), "", ""},
		{"uppercase hex scope", "/system.slice/docker-" + strings.ToUpper(ctr) + ".scope", "docker-" + strings.ToUpper(ctr) + ".scope", ""},
		{"colon form not hex", "/system.slice/containerd.service/pod.slice:cri-containerd:" + ctr[:63] + "x", "containerd.service", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := Identity{Path: tt.path, Unit: tt.unit, Container: tt.container}
			if got := Classify(tt.path); got != want {
				t.Errorf("Classify(%q)\n got %+v\nwant %+v", tt.path, got, want)
			}
		})
	}
}
