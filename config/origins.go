package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ringcache/ringcache/origin"
	"go.yaml.in/yaml/v3"
)

// OriginPool is one entry of the origins setting: the servers of one site
// and the virtual hosts they serve. It is set in the config file only:
//
//	origins:
//	  - hosts: [www.example.org, "*.example.org"]
//	    servers: [https://10.0.0.1:8443, https://10.0.0.2:8443]
//	    balance: least_conns
//	    health_check: {path: /healthz, interval: 5s, timeout: 2s, status: 200, host: www.example.org}
//	    tls: {ca_file: /etc/ringcache/origin-ca.pem, server_name: www.example.org}
//
// Zero values mean the defaults of package origin.
type OriginPool struct {
	// Hosts are the virtual hosts the pool serves (origin.HostPattern):
	// names, or wildcards such as *.example.org. A pool without hosts is
	// the default pool, serving every host no pool lists; it replaces
	// origin, which is then left unset.
	Hosts []string
	// Servers are the base URLs of the pool's servers, each as origin is
	// written (origin.ParseURL); at least one.
	Servers []string
	// Balance is origin.RoundRobin or origin.LeastConns; "" is round robin.
	Balance string
	// HealthCheck is the optional active health check; a Path turns it on.
	HealthCheck origin.HealthCheck
	// TLS is the TLS of the pool's https servers.
	TLS origin.TLSFiles
}

// hasDefaultPool reports whether a pool of origins serves the hosts no
// other lists.
func (c *Config) hasDefaultPool() bool {
	for _, p := range c.Origins {
		if len(p.Hosts) == 0 {
			return true
		}
	}
	return false
}

// pools is the origins setting's value: a list of OriginPool, read from
// the config file's YAML only.
func pools(p *[]OriginPool) value { return &poolsValue{yamlOnly{"origins"}, p} }

type poolsValue struct {
	yamlOnly
	p *[]OriginPool
}

// String is what Reload and Changed compare, and what the log shows.
func (v *poolsValue) String() string {
	if len(*v.p) == 0 {
		return ""
	}
	return fmt.Sprintf("%+v", *v.p)
}

func (v *poolsValue) Type() string    { return "pools" }
func (v *poolsValue) take(from value) { *v.p = *from.(*poolsValue).p }

// setYAML reads the list of pools. Values that do not parse are left zero
// and reported; Config.originErrors checks the rest.
func (v *poolsValue) setYAML(r *yamlReader, n *yaml.Node) {
	items := r.sequence("origins", "a list of origin pools (- hosts: ..., servers: ...)", n)
	if len(items) == 0 {
		*v.p = nil
		return
	}
	out := make([]OriginPool, len(items))
	for i, pn := range items {
		at := fmt.Sprintf("origins[%d]", i)
		p := &out[i]
		r.mapping(at, "a mapping of hosts, servers, balance, health_check and tls", pn, []string{"hosts", "servers", "balance", "health_check", "tls"}, func(key string, v *yaml.Node) {
			switch key {
			case "hosts":
				p.Hosts = r.list(at+".hosts", v)
			case "servers":
				p.Servers = r.list(at+".servers", v)
			case "balance":
				p.Balance, _ = r.scalar(at+".balance", "string", v)
			case "health_check":
				readHealthCheck(r, at+".health_check", v, &p.HealthCheck)
			case "tls":
				readTLSFiles(r, at+".tls", v, &p.TLS)
			}
		})
	}
	*v.p = out
}

func readHealthCheck(r *yamlReader, path string, n *yaml.Node, h *origin.HealthCheck) {
	r.mapping(path, "a mapping (path: /healthz, interval: 5s, ...)", n, []string{"path", "interval", "timeout", "status", "host"}, func(key string, v *yaml.Node) {
		at := path + "." + key
		switch key {
		case "path":
			h.Path, _ = r.scalar(at, "string", v)
		case "interval":
			h.Interval = parsed(r, at, "duration", v, parseDuration)
		case "timeout":
			h.Timeout = parsed(r, at, "duration", v, parseDuration)
		case "status":
			h.Status = parsed(r, at, "int", v, func(s string) (int, error) {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil {
					return 0, errors.New("want a status code such as 200")
				}
				return n, nil
			})
		case "host":
			h.Host, _ = r.scalar(at, "string", v)
		}
	})
}

func readTLSFiles(r *yamlReader, path string, n *yaml.Node, t *origin.TLSFiles) {
	r.mapping(path, "a mapping (ca_file: ..., server_name: ...)", n, []string{"ca_file", "server_name", "cert_file", "key_file"}, func(key string, v *yaml.Node) {
		s, _ := r.scalar(path+"."+key, "string", v)
		switch key {
		case "ca_file":
			t.CAFile = s
		case "server_name":
			t.ServerName = s
		case "cert_file":
			t.CertFile = s
		case "key_file":
			t.KeyFile = s
		}
	})
}

// originErrors checks origins, and origin against it: every problem, each
// named by its key path (origins[1].servers[0]) with its value and, when
// read from the file, its line. src holds where values came from (nil:
// unknown); failed, the key paths already reported.
func (c *Config) originErrors(src map[string]source, failed map[string]bool) []error {
	var errs []error
	bad := func(path, value string, err error) {
		if failed[path] {
			return
		}
		s := src[path]
		if s.raw != "" {
			value = s.raw
		}
		errs = append(errs, &settingError{name: path, value: value, src: s, err: err})
	}
	// A mapping or a list has no one value to quote.
	badKey := func(path string, err error) {
		errs = append(errs, &settingError{name: path, noValue: true, src: src[path], err: err})
	}
	hosts := make(map[string]string) // pattern -> the key path that listed it first
	defaultPool := ""
	for i, p := range c.Origins {
		at := fmt.Sprintf("origins[%d]", i)
		switch n := len(p.Servers); {
		case n == 0:
			badKey(at+".servers", errors.New("must list at least one server URL"))
		case n > origin.MaxServers:
			badKey(at+".servers", fmt.Errorf("lists %d servers, at most %d", n, origin.MaxServers))
		}
		https := false
		servers := make(map[string]string)
		for j, s := range p.Servers {
			path := fmt.Sprintf("%s.servers[%d]", at, j)
			if err := originURL(s); s == "" || err != nil {
				if err == nil {
					err = errors.New("must not be empty")
				}
				bad(path, s, err)
				continue
			}
			https = https || isHTTPS(s)
			key := strings.TrimSuffix(strings.ToLower(s), "/")
			if first, dup := servers[key]; dup {
				bad(path, s, fmt.Errorf("listed twice in the pool (%s)", first))
				continue
			}
			servers[key] = path
		}
		for j, h := range p.Hosts {
			path := fmt.Sprintf("%s.hosts[%d]", at, j)
			norm, err := origin.HostPattern(h)
			if err != nil {
				bad(path, h, err)
				continue
			}
			if first, dup := hosts[norm]; dup {
				bad(path, h, fmt.Errorf("also listed as %s: a host belongs to one pool", first))
				continue
			}
			hosts[norm] = path
		}
		if len(p.Hosts) == 0 {
			switch {
			case defaultPool != "":
				badKey(at+".hosts", fmt.Errorf("missing: %s is the default pool already (the one without hosts)", defaultPool))
			case c.Origin != "":
				badKey(at+".hosts", fmt.Errorf("missing, which makes this the default pool, but origin is set too%s: give the pool hosts, or leave origin unset", src["origin"].short()))
			}
			if defaultPool == "" {
				defaultPool = at
			}
		}
		if err := optional(oneOf(origin.RoundRobin, origin.LeastConns))(p.Balance); err != nil {
			bad(at+".balance", p.Balance, err)
		}

		hc, hat := p.HealthCheck, at+".health_check"
		for _, fe := range hc.Problems() {
			value := map[string]string{"path": hc.Path, "interval": formatDuration(hc.Interval),
				"timeout": formatDuration(hc.Timeout), "status": strconv.Itoa(hc.Status)}[fe.Field]
			if fe.Field == "path" && hc.Path == "" {
				badKey(hat+".path", fe.Err)
				continue
			}
			bad(hat+"."+fe.Field, value, fe.Err)
		}
		if err := optional(hostName)(hc.Host); err != nil {
			bad(hat+".host", hc.Host, err)
		}

		tat := at + ".tls"
		if !p.TLS.IsZero() && !https && len(p.Servers) > 0 {
			badKey(tat, errors.New("has no effect: no server of the pool is https://"))
		}
		if err := optional(serverName)(p.TLS.ServerName); err != nil {
			bad(tat+".server_name", p.TLS.ServerName, err)
		}
		if (p.TLS.CertFile == "") != (p.TLS.KeyFile == "") {
			if p.TLS.CertFile == "" {
				badKey(tat+".cert_file", errors.New("missing: key_file is set, and a client certificate needs both"))
			} else {
				badKey(tat+".key_file", errors.New("missing: cert_file is set, and a client certificate needs both"))
			}
		}
	}
	return errs
}

// serverName accepts a name to verify a server's certificate by: a host
// name or an IP address, without a port.
func serverName(s string) error {
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	if strings.ContainsAny(s, " \t\r\n/?#@:[]*") {
		return errors.New("want a host name such as origin.internal (no port or scheme)")
	}
	return nil
}

// isHTTPS reports whether s is a valid https:// origin URL.
func isHTTPS(s string) bool {
	u, err := origin.ParseURL(s)
	return err == nil && u.Scheme == "https"
}
