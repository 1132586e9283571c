package examples

// Tests of the Kubernetes example, kubernetes/ringcache-sidecar.yaml: the
// sidecar's environment, resolved as the kubelet does, must be a valid
// configuration, and the Services, probes, grace periods and security
// context must fit it.

import (
	"io"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// Kubernetes objects, reduced to the fields the test reads.
type k8sEnvVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sSecurity struct {
	RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	RunAsUser                *int  `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	Env            []k8sEnvVar `yaml:"env"`
	ReadinessProbe *k8sProbe   `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe   `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop struct {
			Sleep struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	SecurityContext k8sSecurity `yaml:"securityContext"`
}

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		// Service
		ClusterIP                string         `yaml:"clusterIP"`
		PublishNotReadyAddresses bool           `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]any `yaml:"selector"` // Deployment: matchLabels
		Ports                    []struct {
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
			Protocol   string `yaml:"protocol"`
		} `yaml:"ports"`
		// Deployment
		Replicas int `yaml:"replicas"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds *int           `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               k8sSecurity    `yaml:"securityContext"`
				Containers                    []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// The downward API values the test pretends the pod has.
var k8sFields = map[string]string{
	"status.podIP":       "10.244.1.7",
	"metadata.name":      "web-5d9c7b-x2x9q",
	"metadata.namespace": "default",
}

var k8sVarRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// k8sEnv resolves a container's env as the kubelet does: $(VAR) expands
// variables defined earlier in the list; secret values come from secret.
func k8sEnv(t *testing.T, env []k8sEnvVar, secrets map[string]k8sObject, secret func(name, key string) string) []string {
	t.Helper()
	var out []string
	defined := map[string]string{}
	for _, e := range env {
		v := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			var ok bool
			if v, ok = k8sFields[e.ValueFrom.FieldRef.FieldPath]; !ok {
				t.Fatalf("env %s: unexpected fieldPath %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, ok := secrets[ref.Name]
			if !ok {
				t.Fatalf("env %s: no Secret %s in the manifest", e.Name, ref.Name)
			}
			if _, ok := s.StringData[ref.Key]; !ok {
				t.Fatalf("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			v = secret(ref.Name, ref.Key)
		default:
			// The kubelet leaves an unknown $(VAR) as it is: a silent bug.
			for _, m := range k8sVarRef.FindAllStringSubmatch(v, -1) {
				if _, ok := defined[m[1]]; !ok {
					t.Errorf("env %s=%s: $(%s) is not defined earlier in env", e.Name, v, m[1])
				}
			}
			v = k8sVarRef.ReplaceAllStringFunc(v, func(ref string) string {
				return defined[ref[2:len(ref)-1]]
			})
		}
		defined[e.Name] = v
		out = append(out, e.Name+"="+v)
	}
	return out
}

// containerPort resolves a probe's or Service's port (number or name).
func containerPort(t *testing.T, c k8sContainer, p any) int {
	t.Helper()
	switch p := p.(type) {
	case int:
		return p
	case string:
		for _, cp := range c.Ports {
			if cp.Name == p {
				return cp.ContainerPort
			}
		}
		t.Fatalf("container %s has no port named %q", c.Name, p)
	}
	t.Fatalf("port %v: want a number or a name", p)
	return 0
}

func TestKubernetesExample(t *testing.T) {
	dec := yaml.NewDecoder(strings.NewReader(readFile(t, "kubernetes/ringcache-sidecar.yaml")))
	var objs []k8sObject
	for range 100 { // bounded: the file holds a handful of objects
		var o k8sObject
		err := dec.Decode(&o)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("ringcache-sidecar.yaml: %v", err)
		}
		objs = append(objs, o)
	}
	secrets := map[string]k8sObject{}
	var services, deployments []k8sObject
	for _, o := range objs {
		switch o.Kind {
		case "Secret":
			secrets[o.Metadata.Name] = o
		case "Service":
			services = append(services, o)
		case "Deployment":
			deployments = append(deployments, o)
		}
	}
	if len(deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(deployments))
	}
	dep := deployments[0]
	pod := dep.Spec.Template.Spec
	labels := dep.Spec.Template.Metadata.Labels
	if dep.Spec.Replicas != 3 {
		t.Errorf("replicas %d, want 3", dep.Spec.Replicas)
	}
	selects := func(sel map[string]any) bool {
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	if ml, _ := dep.Spec.Selector["matchLabels"].(map[string]any); !selects(ml) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", dep.Spec.Selector, labels)
	}

	var rc, app *k8sContainer
	for i := range pod.Containers {
		c := &pod.Containers[i]
		switch {
		case len(c.Args) > 0 && c.Args[0] == "serve":
			rc = c
		case len(c.Args) > 0 && c.Args[0] == "origin":
			app = c
		}
	}
	if rc == nil || app == nil {
		t.Fatalf("want an app container (origin) and a ringcache sidecar (serve) in one pod, got %d containers", len(pod.Containers))
	}

	env := append(imageEnv(t), k8sEnv(t, rc.Env, secrets, func(string, string) string { return newSecret() })...)
	cfg, err := loadConfig(nil, env, io.Discard)
	if err != nil {
		t.Fatalf("the sidecar's environment is not a valid configuration: %v", err)
	}

	t.Run("placeholder secrets are refused", func(t *testing.T) {
		env := append(imageEnv(t), k8sEnv(t, rc.Env, secrets, func(name, key string) string { return secrets[name].StringData[key] })...)
		_, err := loadConfig(nil, env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "peer_secret") || !strings.Contains(err.Error(), "gossip_key") {
			t.Errorf("with the manifest's placeholder secrets config.Load says %v; want peer_secret and gossip_key refused", err)
		}
	})

	t.Run("membership", func(t *testing.T) {
		if cfg.NodeName != k8sFields["metadata.name"] {
			t.Errorf("node name %q, want the pod name from the downward API", cfg.NodeName)
		}
		if cfg.Gossip == "" {
			t.Fatal("no gossip address: every pod would run alone")
		}
		// An IP, as cluster.Options requires: the pod's own.
		if want := net.JoinHostPort(k8sFields["status.podIP"], portOf(cfg.Gossip)); cfg.Advertise != want {
			t.Errorf("advertise %q, want %q (status.podIP and the gossip port)", cfg.Advertise, want)
		}
		var headless []k8sObject
		for _, s := range services {
			if s.Spec.ClusterIP == "None" {
				headless = append(headless, s)
			}
		}
		if len(cfg.Join) == 0 {
			t.Fatal("no join address")
		}
		for _, j := range cfg.Join {
			host, p, _ := net.SplitHostPort(j)
			label, _, _ := strings.Cut(host, ".")
			var svc *k8sObject
			for i := range headless {
				if headless[i].Metadata.Name == label {
					svc = &headless[i]
				}
			}
			if svc == nil {
				t.Errorf("join %s names no headless Service (clusterIP: None)", j)
				continue
			}
			if !svc.Spec.PublishNotReadyAddresses {
				t.Errorf("Service %s: publishNotReadyAddresses must be true, or starting pods cannot find each other", label)
			}
			if !selects(svc.Spec.Selector) {
				t.Errorf("Service %s selector %v does not select the pods %v", label, svc.Spec.Selector, labels)
			}
			protos := map[string]bool{}
			for _, sp := range svc.Spec.Ports {
				if strconv.Itoa(sp.Port) == p {
					protos[orDefault(sp.Protocol, "TCP")] = true
				}
			}
			if !protos["TCP"] || !protos["UDP"] {
				t.Errorf("Service %s: want port %s over TCP and UDP (serf uses both), got %v", label, p, protos)
			}
			if p != portOf(cfg.Gossip) {
				t.Errorf("join port %s, but the sidecar gossips on %s", p, cfg.Gossip)
			}
		}
		ports := map[string]bool{}
		for _, cp := range rc.Ports {
			ports[strconv.Itoa(cp.ContainerPort)+"/"+orDefault(cp.Protocol, "TCP")] = true
		}
		for _, want := range []string{portOf(cfg.Listen) + "/TCP", portOf(cfg.Admin) + "/TCP", portOf(cfg.Gossip) + "/TCP", portOf(cfg.Gossip) + "/UDP"} {
			if !ports[want] {
				t.Errorf("sidecar container ports lack %s", want)
			}
		}
	})

	t.Run("app behind the sidecar", func(t *testing.T) {
		listen := listenFlag(t, app.Args)
		o, err := url.Parse(cfg.Origin)
		if err != nil {
			t.Fatal(err)
		}
		if ip := net.ParseIP(o.Hostname()); ip == nil || !ip.IsLoopback() || o.Port() != portOf(listen) {
			t.Errorf("origin %s: want the app container on the pod's loopback, %s", cfg.Origin, listen)
		}
		for _, s := range services {
			if s.Spec.ClusterIP == "None" {
				continue
			}
			for _, sp := range s.Spec.Ports {
				if got := containerPort(t, *rc, sp.TargetPort); strconv.Itoa(got) != portOf(cfg.Listen) {
					t.Errorf("Service %s sends clients to port %d, not the cache's %s", s.Metadata.Name, got, cfg.Listen)
				}
			}
		}
	})

	t.Run("probes on the admin /healthz", func(t *testing.T) {
		for name, p := range map[string]*k8sProbe{"readiness": rc.ReadinessProbe, "liveness": rc.LivenessProbe} {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("no %s httpGet probe", name)
				continue
			}
			if got := containerPort(t, *rc, p.HTTPGet.Port); p.HTTPGet.Path != "/healthz" || strconv.Itoa(got) != portOf(cfg.Admin) {
				t.Errorf("%s probe GET :%d%s, want :%s/healthz", name, got, p.HTTPGet.Path, portOf(cfg.Admin))
			}
		}
		// The kubelet probes the pod IP: a loopback admin listener (the
		// image's default) would fail every probe.
		if h, _, _ := net.SplitHostPort(cfg.Admin); net.ParseIP(h).IsLoopback() {
			t.Errorf("admin=%s: the kubelet cannot probe a loopback listener; set RINGCACHE_ADMIN", cfg.Admin)
		}
	})

	t.Run("termination leaves time for handoff", func(t *testing.T) {
		// serf's leave broadcast and propagation delay come on top of
		// shutdown_timeout (cluster.Membership.Leave).
		const leave = 6 * time.Second
		if pod.TerminationGracePeriodSeconds == nil {
			t.Fatal("terminationGracePeriodSeconds unset (30 s default)")
		}
		grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		preStop := time.Duration(rc.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		if need := preStop + cfg.ShutdownTimeout + leave; grace < need {
			t.Errorf("terminationGracePeriodSeconds %s < preStop %s + shutdown_timeout %s + leave %s", grace, preStop, cfg.ShutdownTimeout, leave)
		}
		appStop := time.Duration(app.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		if appStop < preStop+cfg.ShutdownTimeout || appStop >= grace {
			t.Errorf("app preStop %s: want the app to outlive the cache's drain (%s) within the grace period %s", appStop, preStop+cfg.ShutdownTimeout, grace)
		}
	})

	t.Run("security context", func(t *testing.T) {
		if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Error("pod securityContext.runAsNonRoot is not true")
		}
		for _, c := range pod.Containers {
			sc := c.SecurityContext
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
			}
		}
	})
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
