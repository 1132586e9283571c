package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// serviceLinkVar reports whether name=value is one of the variables the
// kubelet puts into every container for each Service of the pod's
// namespace (unless the pod sets enableServiceLinks: false), for a Service
// whose name begins with "ringcache-" or is "ringcache". Kubernetes derives
// the prefix from the Service's name, upper-cased with '-' as '_': a
// Service named ringcache with port 8080 named http gives
//
//	RINGCACHE_SERVICE_HOST=10.0.0.11
//	RINGCACHE_SERVICE_PORT=8080
//	RINGCACHE_SERVICE_PORT_HTTP=8080          (one per named port)
//	RINGCACHE_PORT=tcp://10.0.0.11:8080       (Docker links: the first port)
//	RINGCACHE_PORT_8080_TCP=tcp://10.0.0.11:8080
//	RINGCACHE_PORT_8080_TCP_PROTO=tcp
//	RINGCACHE_PORT_8080_TCP_PORT=8080
//	RINGCACHE_PORT_8080_TCP_ADDR=10.0.0.11
//
// and one named ringcache-peers the same with RINGCACHE_PEERS_ in front.
// Both the name and the value must have Kubernetes' form: a variable named
// like one but set by hand (RINGCACHE_ADMIN_PORT=9091, a guess at a
// setting) is not one, and is reported like any unknown variable.
func serviceLinkVar(name, value string) bool {
	const service = "RINGCACHE" // the prefix without its '_'
	if !strings.HasPrefix(name, service+"_") {
		return false
	}
	// The Service's part of the name may itself hold _PORT or _SERVICE
	// (a Service named ringcache-port-forward): try every split.
	for i := len(service); i < len(name); i++ {
		if name[i] == '_' && serviceEnvName(name[:i]) && serviceSuffix(name[i+1:], value) {
			return true
		}
	}
	return false
}

// serviceEnvName reports whether s is a Service name as Kubernetes spells
// it in variable names: a DNS label (RFC 1035: letters, digits and '-',
// starting with a letter and ending with a letter or digit, at most 63
// characters) upper-cased, '-' turned into '_'.
func serviceEnvName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[len(s)-1] == '_' || !isUpper(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isUpper(c) && !isDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

// portEnvName reports whether s is a Service port's name (RFC 6335: at
// most 15 letters, digits and '-', starting and ending with a letter or
// digit) as Kubernetes spells it in variable names.
func portEnvName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s[0] == '_' || s[len(s)-1] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isUpper(c) && !isDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

// serviceSuffix reports whether rest (what follows the Service's part and
// its '_') and value are one of the variables in serviceLinkVar's list.
func serviceSuffix(rest, value string) bool {
	if rest == "SERVICE_HOST" {
		return isIP(value)
	}
	if rest == "SERVICE_PORT" {
		return isPort(value)
	}
	if portName, ok := strings.CutPrefix(rest, "SERVICE_PORT_"); ok {
		return portEnvName(portName) && isPort(value)
	}
	if rest == "PORT" {
		_, _, ok := linkURL(value)
		return ok
	}
	rest, ok := strings.CutPrefix(rest, "PORT_")
	if !ok {
		return false
	}
	// <port>_<PROTO>[_PROTO|_PORT|_ADDR]
	port, rest, _ := strings.Cut(rest, "_")
	proto, field, _ := strings.Cut(rest, "_")
	if !isPort(port) || !linkProto(proto) {
		return false
	}
	switch field {
	case "":
		p, hostPort, ok := linkURL(value)
		_, vport, _ := net.SplitHostPort(hostPort)
		return ok && p == strings.ToLower(proto) && vport == port
	case "PROTO":
		return value == strings.ToLower(proto)
	case "PORT":
		return value == port
	case "ADDR":
		return isIP(value)
	}
	return false
}

// linkURL splits a Docker link address, tcp://10.0.0.11:8080 or
// udp://[fd00::1]:53, into its protocol and host:port.
func linkURL(v string) (proto, hostPort string, ok bool) {
	proto, hostPort, ok = strings.Cut(v, "://")
	if !ok || !linkProto(strings.ToUpper(proto)) || proto != strings.ToLower(proto) {
		return "", "", false
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil || !isIP(host) || !isPort(port) {
		return "", "", false
	}
	return proto, hostPort, true
}

func linkProto(p string) bool { return p == "TCP" || p == "UDP" || p == "SCTP" }

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func isPort(s string) bool {
	if s == "" || s[0] == '0' {
		return false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && n > 0
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
