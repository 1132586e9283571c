package node

import (
	"slices"

	"github.com/ringcache/ringcache/config"
)

// reloadable lists the settings a running node applies on SIGHUP; any
// other change needs a restart.
var reloadable = []string{
	"log_level", "admin_token", "admin_token_file", "purge_allow",
	"default_ttl", "max_heuristic_ttl", "strip_set_cookie",
}

// Reload applies what can change live from next and returns the settings
// applied and those that differ but need a restart. It also re-reads the
// peer TLS files, so rotated certificates take effect (as "peer_tls_files");
// files that do not load are logged and the current ones stay.
func (n *Node) Reload(next config.Config) (applied, skipped []string) {
	if n.peerTLS != nil {
		if err := n.peerTLS.Reload(); err != nil {
			n.log.Error("peer TLS files not reloaded; keeping the current certificates", "err", err)
		} else {
			applied = append(applied, "peer_tls_files")
		}
	}
	for _, name := range config.Changed(n.cfg, next) {
		if !slices.Contains(reloadable, name) {
			skipped = append(skipped, name)
			continue
		}
		if name == "log_level" && n.logLevel == nil {
			skipped = append(skipped, name)
			continue
		}
		applied = append(applied, name)
	}
	if n.logLevel != nil {
		_ = n.logLevel.UnmarshalText([]byte(next.LogLevel))
	}
	n.adminToken.Store(&next.AdminToken)
	n.proxy.SetPurgeAllow(prefixes(next.PurgeAllow))
	n.proxy.SetPolicy(policy(next))
	// Keep the reloaded values, so the next reload compares with them.
	n.cfg.LogLevel, n.cfg.AdminToken, n.cfg.PurgeAllow = next.LogLevel, next.AdminToken, next.PurgeAllow
	n.cfg.DefaultTTL, n.cfg.MaxHeuristicTTL, n.cfg.StripSetCookie = next.DefaultTTL, next.MaxHeuristicTTL, next.StripSetCookie
	n.cfg.AdminTokenFile = next.AdminTokenFile
	return applied, skipped
}
