// Package node assembles a ringcache node from a config.Config, the way
// serf's agent package assembles an agent: the store, the origin client,
// the proxy, and in a cluster the membership, the ring, the peer clients
// and the peer server, with their listeners, admin endpoints and metrics.
// A Node starts with Start and stops with Shutdown (graceful: hand entries
// off, leave, drain) or Close (at once, as a crash would); Reload applies
// the settings that can change while it runs. cmd/ringcache parses
// arguments and calls it; tests start several nodes in one process.
package node
