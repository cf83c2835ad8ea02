package deploytest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sysobsd/sysobsd/internal/config"
)

// The parts of the Kubernetes objects these tests read; yaml.v3 ignores the
// rest, and a typo in a field named here shows as a missing value. (Checked
// once against the k8s.io/api and prometheus-operator types with strict
// decoding; those modules are too big to depend on for this.)
type (
	k8sObject struct {
		APIVersion string      `yaml:"apiVersion"`
		Kind       string      `yaml:"kind"`
		Metadata   k8sMetadata `yaml:"metadata"`
		Spec       yaml.Node   `yaml:"spec"`
	}
	k8sMetadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	}
	daemonSetSpec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata k8sMetadata `yaml:"metadata"`
			Spec     podSpec     `yaml:"spec"`
		} `yaml:"template"`
	}
	podSpec struct {
		HostPID     bool         `yaml:"hostPID"`
		HostNetwork bool         `yaml:"hostNetwork"`
		Tolerations []toleration `yaml:"tolerations"`
		Containers  []container  `yaml:"containers"`
		Volumes     []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
			HostPath *struct {
				Path string `yaml:"path"`
			} `yaml:"hostPath"`
		} `yaml:"volumes"`
	}
	container struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		SecurityContext struct {
			RunAsUser                *int  `yaml:"runAsUser"`
			RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
			Privileged               *bool `yaml:"privileged"`
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
			Capabilities             struct {
				Add  []string `yaml:"add"`
				Drop []string `yaml:"drop"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		Resources struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		VolumeMounts   []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
	}
	toleration struct {
		Operator string `yaml:"operator"`
		Key      string `yaml:"key"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	serviceSpec struct {
		ClusterIP string            `yaml:"clusterIP"`
		Selector  map[string]string `yaml:"selector"`
		Ports     []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	podMonitorSpec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		PodMetricsEndpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"podMetricsEndpoints"`
	}
	kustomization struct {
		Namespace          string   `yaml:"namespace"`
		Resources          []string `yaml:"resources"`
		ConfigMapGenerator []struct {
			Name  string   `yaml:"name"`
			Files []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
		Images []struct {
			Name    string `yaml:"name"`
			NewName string `yaml:"newName"`
			NewTag  string `yaml:"newTag"`
		} `yaml:"images"`
	}
)

var kubernetesDir = repo("deploy", "kubernetes")

// k8sObjects decodes every document of every manifest the kustomization
// lists, by kind; two objects of one kind fail the test.
func k8sObjects(t *testing.T) (kustomization, map[string]k8sObject) {
	t.Helper()
	var k kustomization
	decodeFile(t, filepath.Join(kubernetesDir, "kustomization.yaml"), func(d *yaml.Decoder) error { return d.Decode(&k) })
	objects := map[string]k8sObject{}
	for _, file := range k.Resources {
		decodeFile(t, filepath.Join(kubernetesDir, file), func(d *yaml.Decoder) error {
			for {
				var obj k8sObject
				err := d.Decode(&obj)
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				if obj.Kind == "" || obj.APIVersion == "" || obj.Metadata.Name == "" {
					t.Errorf("%s: a document without kind, apiVersion or metadata.name", file)
					continue
				}
				if _, dup := objects[obj.Kind]; dup {
					t.Errorf("%s: a second %s", file, obj.Kind)
				}
				objects[obj.Kind] = obj
			}
		})
	}
	return k, objects
}

func decodeFile(t *testing.T, path string, decode func(*yaml.Decoder) error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := yaml.NewDecoder(bytes.NewReader(data))
	if err := decode(d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func spec[T any](t *testing.T, obj k8sObject) T {
	t.Helper()
	var s T
	if err := obj.Spec.Decode(&s); err != nil {
		t.Fatalf("%s spec: %v", obj.Kind, err)
	}
	return s
}

func TestKubernetesManifests(t *testing.T) {
	k, objects := k8sObjects(t)
	for _, kind := range []string{"Namespace", "DaemonSet", "Service", "PodMonitor"} {
		if _, ok := objects[kind]; !ok {
			t.Fatalf("no %s in the kustomization's resources %v", kind, k.Resources)
		}
	}
	if got := objects["PodMonitor"].APIVersion; got != "monitoring.coreos.com/v1" {
		t.Errorf("PodMonitor apiVersion %s, want monitoring.coreos.com/v1", got)
	}
	if ns := objects["Namespace"]; ns.Metadata.Name != k.Namespace || ns.Metadata.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("Namespace %s (labels %v): want %s, with pod-security.kubernetes.io/enforce=privileged (hostPID, BPF)", ns.Metadata.Name, ns.Metadata.Labels, k.Namespace)
	}

	ds := spec[daemonSetSpec](t, objects["DaemonSet"])
	pod := ds.Template.Spec
	podLabels := ds.Template.Metadata.Labels
	if !subset(ds.Selector.MatchLabels, podLabels) || len(ds.Selector.MatchLabels) == 0 {
		t.Errorf("DaemonSet selector %v does not select its pods %v", ds.Selector.MatchLabels, podLabels)
	}
	if !pod.HostPID {
		t.Errorf("hostPID is not true: the kernel reports the host's pids, /proc must show them")
	}
	if !slices.Contains(pod.Tolerations, toleration{Operator: "Exists"}) {
		t.Errorf("no toleration {operator: Exists}: tainted nodes would run no sysobsd")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	imageSet := false
	for _, i := range k.Images {
		imageSet = imageSet || i.Name == c.Image
	}
	if !imageSet {
		t.Errorf("image %q has no entry in the kustomization's images (kustomize edit set image)", c.Image)
	}

	sc := c.SecurityContext
	add := slices.Sorted(slices.Values(sc.Capabilities.Add))
	if !slices.Equal(add, []string{"BPF", "PERFMON"}) {
		t.Errorf("capabilities.add %v, want exactly [BPF PERFMON]", sc.Capabilities.Add)
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("capabilities.drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	for name, got := range map[string]*bool{"readOnlyRootFilesystem": sc.ReadOnlyRootFilesystem} {
		if got == nil || !*got {
			t.Errorf("securityContext.%s is not true", name)
		}
	}
	for name, got := range map[string]*bool{"allowPrivilegeEscalation": sc.AllowPrivilegeEscalation, "privileged": sc.Privileged} {
		if got == nil || *got {
			t.Errorf("securityContext.%s is not false", name)
		}
	}
	// Without ambient capabilities (Kubernetes grants none), a non-root user
	// would start with an empty effective set.
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.RunAsNonRoot == nil || *sc.RunAsNonRoot {
		t.Errorf("want runAsUser: 0 and runAsNonRoot: false (the capabilities take effect for root only)")
	}
	if c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" || c.Resources.Requests["cpu"] == "" {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}

	// One port name, everywhere.
	if len(c.Ports) != 1 {
		t.Fatalf("container ports %+v, want one", c.Ports)
	}
	port := c.Ports[0]
	if port.ContainerPort != 10190 || !slices.Contains(c.Args, "--web.listen-address=:"+strconv.Itoa(port.ContainerPort)) {
		t.Errorf("containerPort %d and args %v disagree (want 10190, --web.listen-address=:10190)", port.ContainerPort, c.Args)
	}
	for name, p := range map[string]*probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port != port.Name {
			t.Errorf("%s does not probe HTTP on port %q", name, port.Name)
		}
	}
	svc := spec[serviceSpec](t, objects["Service"])
	if svc.ClusterIP != "None" {
		t.Errorf("Service clusterIP %q, want None (headless)", svc.ClusterIP)
	}
	if !subset(svc.Selector, podLabels) || len(svc.Selector) == 0 {
		t.Errorf("Service selector %v does not select the pods %v", svc.Selector, podLabels)
	}
	if len(svc.Ports) != 1 || svc.Ports[0].Name != port.Name || svc.Ports[0].TargetPort != port.Name || svc.Ports[0].Port != port.ContainerPort {
		t.Errorf("Service ports %+v, want one named %q, port %d, targetPort %q", svc.Ports, port.Name, port.ContainerPort, port.Name)
	}
	pm := spec[podMonitorSpec](t, objects["PodMonitor"])
	if !subset(pm.Selector.MatchLabels, podLabels) || len(pm.Selector.MatchLabels) == 0 {
		t.Errorf("PodMonitor selector %v does not select the pods %v", pm.Selector.MatchLabels, podLabels)
	}
	if len(pm.PodMetricsEndpoints) != 1 || pm.PodMetricsEndpoints[0].Port != port.Name || pm.PodMetricsEndpoints[0].Path != "/metrics" {
		t.Errorf("PodMonitor endpoints %+v, want port %q, path /metrics", pm.PodMetricsEndpoints, port.Name)
	}

	// What the daemon reads from the host, read-only.
	mounts := map[string]string{} // mount path → host path or config map
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("volume %s at %s is not readOnly", m.Name, m.MountPath)
		}
		for _, v := range pod.Volumes {
			switch {
			case v.Name != m.Name:
			case v.HostPath != nil:
				mounts[m.MountPath] = v.HostPath.Path
			case v.ConfigMap != nil:
				mounts[m.MountPath] = "configmap:" + v.ConfigMap.Name
			}
		}
	}
	for _, path := range []string{"/sys/fs/cgroup", "/sys/kernel/btf"} {
		if mounts[path] != path {
			t.Errorf("host %s is not mounted at %s (mounts: %v)", path, path, mounts)
		}
	}
	configFile := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			configFile = v
		}
	}
	if configFile == "" {
		t.Fatalf("no --config.file in args %v", c.Args)
	}
	generated := ""
	for _, g := range k.ConfigMapGenerator {
		if mounts[filepath.Dir(configFile)] == "configmap:"+g.Name && slices.Contains(g.Files, filepath.Base(configFile)) {
			generated = filepath.Join(kubernetesDir, filepath.Base(configFile))
		}
	}
	if generated == "" {
		t.Fatalf("--config.file=%s is not a file of a generated ConfigMap mounted at %s", configFile, filepath.Dir(configFile))
	}
	if _, err := config.Load(generated); err != nil {
		t.Errorf("the DaemonSet's configuration: %v", err)
	}
}

func subset(sub, of map[string]string) bool {
	for k, v := range sub {
		if of[k] != v {
			return false
		}
	}
	return true
}
