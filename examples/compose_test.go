package examples

// Tests of the Docker Compose example, compose/compose.yaml: every node's
// environment, on top of the image's, must be a valid configuration forming
// one cluster, and the app's healthcheck must pass against a demo origin.

import (
	"io"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringcache/ringcache/config"
	"go.yaml.in/yaml/v3"
)

// checkAppHealthcheck runs argv (a ringcache healthcheck command line) against
// a live demo origin started with app (the app's command line), as the app
// container would run both.
func checkAppHealthcheck(t *testing.T, argv, app []string) {
	t.Helper()
	listen := listenFlag(t, app)
	if len(argv) < 2 || argv[1] != "healthcheck" {
		t.Fatalf("healthcheck %q: want [binary healthcheck --url ...]", argv)
	}
	raw, ok := flagValue(argv[2:], "url")
	if !ok {
		t.Fatalf("healthcheck %q: the app has no admin listener; pass --url", argv)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if portOf(u.Host) != portOf(listen) {
		t.Errorf("app healthcheck probes %s, but the app listens on %s", u.Host, listen)
	}
	// The app listens on a free loopback port here, and the probe follows it.
	u.Host = startApp(t, app)
	args, _ := setFlag(argv[1:], "url", u.String())
	if code, stderr := runRingcache(t, args, nil); code != 0 {
		t.Errorf("app healthcheck against a demo origin exits %d: %s", code, stderr)
	}
}

// composeNetworks is a service's networks: a list of names or a map.
type composeNetworks map[string]composeAttachment

type composeAttachment struct {
	IPv4 string `yaml:"ipv4_address"`
}

func (n *composeNetworks) UnmarshalYAML(v *yaml.Node) error {
	if v.Kind == yaml.SequenceNode {
		var names []string
		if err := v.Decode(&names); err != nil {
			return err
		}
		*n = composeNetworks{}
		for _, name := range names {
			(*n)[name] = composeAttachment{}
		}
		return nil
	}
	var m map[string]composeAttachment
	if err := v.Decode(&m); err != nil {
		return err
	}
	*n = m
	return nil
}

type composeService struct {
	Image           string            `yaml:"image"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Networks        composeNetworks   `yaml:"networks"`
	Ports           []string          `yaml:"ports"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Healthcheck     struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
}

// interpolation is Compose's ${NAME}, ${NAME:?message} and friends.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}`)

func TestComposeExample(t *testing.T) {
	var cf composeFile
	if err := yaml.Unmarshal([]byte(readFile(t, "compose/compose.yaml")), &cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	base := imageEnv(t)

	type node struct {
		service string
		svc     composeService
		cfg     config.Config
	}
	var nodes []node
	for _, name := range slices.Sorted(maps.Keys(cf.Services)) {
		svc := cf.Services[name]
		if len(svc.Command) == 0 || svc.Command[0] != "serve" {
			continue
		}
		env := slices.Clone(base)
		for k, v := range svc.Environment {
			for _, m := range interpolation.FindAllStringSubmatch(v, -1) {
				if !strings.HasPrefix(m[2], ":?") {
					t.Errorf("%s: %s=%s: a missing secret must stop compose (${%s:?message})", name, k, v, m[1])
				}
			}
			env = append(env, k+"="+interpolation.ReplaceAllStringFunc(v, func(string) string { return newSecret() }))
		}
		cfg, err := loadConfig(nil, env, io.Discard)
		if err != nil {
			t.Errorf("service %s: its environment is not a valid configuration: %v", name, err)
			continue
		}
		nodes = append(nodes, node{name, svc, cfg})
	}
	if len(nodes) != 3 {
		t.Fatalf("%d valid ringcache services (command serve), want 3", len(nodes))
	}

	byService := map[string]node{}
	names := map[string]bool{}
	published := 0
	for _, n := range nodes {
		byService[n.service] = n
		if names[n.cfg.NodeName] {
			t.Errorf("node name %s used twice", n.cfg.NodeName)
		}
		names[n.cfg.NodeName] = true
		if len(n.svc.Ports) > 0 {
			published++
		}
		for _, p := range n.svc.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s beyond the host's loopback", n.service, p)
			}
		}
	}
	if published != 1 {
		t.Errorf("%d ringcache services publish ports, want 1", published)
	}

	for _, n := range nodes {
		t.Run(n.service, func(t *testing.T) {
			if n.cfg.Gossip == "" {
				t.Fatal("no RINGCACHE_GOSSIP: the node would run alone")
			}
			// cluster.Options accepts only an IP address to advertise, and
			// without one a node on 0.0.0.0 publishes an unusable peer address.
			adv, err := netip.ParseAddrPort(n.cfg.Advertise)
			if err != nil {
				t.Fatalf("RINGCACHE_ADVERTISE=%q: want IP:port: %v", n.cfg.Advertise, err)
			}
			onNet := false
			for netName, att := range n.svc.Networks {
				if att.IPv4 != adv.Addr().String() {
					continue
				}
				for _, c := range cf.Networks[netName].IPAM.Config {
					if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Contains(adv.Addr()) {
						onNet = true
					}
				}
			}
			if !onNet {
				t.Errorf("advertised %s is not this service's ipv4_address within its network's subnet", adv.Addr())
			}
			if portOf(n.cfg.Advertise) != portOf(n.cfg.Gossip) {
				t.Errorf("advertise %s and gossip %s differ in port", n.cfg.Advertise, n.cfg.Gossip)
			}

			o, err := url.Parse(n.cfg.Origin)
			if err != nil {
				t.Fatal(err)
			}
			app, ok := cf.Services[o.Hostname()]
			if !ok {
				t.Fatalf("origin %s names no service", n.cfg.Origin)
			}
			listen := listenFlag(t, app.Command)
			if o.Port() != portOf(listen) {
				t.Errorf("origin %s, but the app listens on %s", n.cfg.Origin, listen)
			}

			if d, err := time.ParseDuration(n.svc.StopGracePeriod); err != nil || d <= n.cfg.ShutdownTimeout {
				t.Errorf("stop_grace_period %q: want more than shutdown_timeout %s", n.svc.StopGracePeriod, n.cfg.ShutdownTimeout)
			}

			for _, j := range n.cfg.Join {
				host, p, _ := net.SplitHostPort(j)
				target, ok := byService[host]
				switch {
				case !ok:
					t.Errorf("join %s names no ringcache service", j)
				case host == n.service:
					t.Errorf("join %s is the node itself", j)
				case p != portOf(target.cfg.Gossip):
					t.Errorf("join %s, but %s gossips on %s", j, host, target.cfg.Gossip)
				}
			}
		})
	}

	// Following joins from any node must reach every other: one cluster.
	parent := map[string]string{}
	var findRoot func(string) string
	findRoot = func(s string) string {
		if p, ok := parent[s]; ok && p != s {
			return findRoot(p)
		}
		return s
	}
	for _, n := range nodes {
		for _, j := range n.cfg.Join {
			host, _, _ := net.SplitHostPort(j)
			if _, ok := byService[host]; ok {
				parent[findRoot(n.service)] = findRoot(host)
			}
		}
	}
	for _, n := range nodes[1:] {
		if findRoot(n.service) != findRoot(nodes[0].service) {
			t.Errorf("%s and %s never join each other's cluster", n.service, nodes[0].service)
		}
	}

	t.Run("app", func(t *testing.T) {
		o, _ := url.Parse(nodes[0].cfg.Origin)
		app := cf.Services[o.Hostname()]
		if len(app.Healthcheck.Test) < 2 || app.Healthcheck.Test[0] != "CMD" {
			t.Fatalf("app healthcheck %q: want [CMD /ringcache healthcheck --url ...] (the image's own probes an admin port the origin lacks)", app.Healthcheck.Test)
		}
		checkAppHealthcheck(t, app.Healthcheck.Test[1:], app.Command)
	})
}
