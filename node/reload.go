package node

import (
	"github.com/ringcache/ringcache/config"
)

// Reload moves the node to next as far as that can happen while it runs
// and returns the settings applied and those that differ but need a
// restart (config.Reload decides which are which). It also re-reads the
// TLS files at once, as "tls_files" (tls_cert, tls_key),
// "peer_tls_files" and "origin_tls_files" (origin_tls_* and the tls files
// of origins); files that do not load are logged and the current ones
// stay. (The node reloads them by itself too, within seconds of a
// change on disk: a signal is never needed.) Without Options.LogLevel,
// log_level needs a restart too.
func (n *Node) Reload(next config.Config) (applied, restart []string) {
	if n.clientTLS != nil {
		if err := n.clientTLS.Reload(); err != nil {
			n.log.Error("TLS files not reloaded; keeping the current certificate", "err", err)
		} else {
			applied = append(applied, "tls_files")
		}
	}
	if n.peerTLS != nil {
		if err := n.peerTLS.Reload(); err != nil {
			n.log.Error("peer TLS files not reloaded; keeping the current certificates", "err", err)
		} else {
			applied = append(applied, "peer_tls_files")
		}
	}
	if len(n.originTLS) > 0 {
		ok := true
		for _, f := range n.originTLS {
			if err := f.Reload(); err != nil {
				n.log.Error("origin TLS files not reloaded; keeping the current ones", "err", err)
				ok = false
			}
		}
		if ok {
			applied = append(applied, "origin_tls_files")
		}
	}
	if n.logLevel == nil && next.LogLevel != n.cfg.LogLevel {
		restart = append(restart, "log_level")
		next.LogLevel = n.cfg.LogLevel // nothing to apply it to
	}
	cfg, changed, skipped := config.Reload(n.cfg, next)
	n.cfg = cfg
	n.apply()
	return append(applied, changed...), append(restart, skipped...)
}

// setAdminToken makes tok the admin token. The pointer stored is to a
// copy: admin requests read it while Reload rewrites n.cfg.
func (n *Node) setAdminToken(tok string) { n.adminToken.Store(&tok) }

// apply puts the live settings of n.cfg into effect.
func (n *Node) apply() {
	if n.logLevel != nil {
		_ = n.logLevel.UnmarshalText([]byte(n.cfg.LogLevel))
	}
	n.setAdminToken(n.cfg.AdminToken)
	n.proxy.SetPurgeAllow(prefixes(n.cfg.PurgeAllow))
	n.proxy.SetPolicy(policy(n.cfg))
	n.proxy.SetRules(n.cfg.Rules)
}
