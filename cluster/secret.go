package cluster

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// One shared secret makes a member: the gossip key and the peer TLS key
// are derived from it, each for its own purpose, so an operator configures
// one value and a key for one purpose says nothing about the other.
const (
	purposeGossip  = "ringcache gossip key v1"
	purposePeerTLS = "ringcache peer tls ed25519 seed v1"
)

// derive returns n bytes derived from secret for purpose (HKDF-SHA256,
// RFC 5869). The secret is high-entropy by contract (MinSecretLen), so no
// salt is needed to spread it.
func derive(secret []byte, purpose string, n int) ([]byte, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("secret must be at least %d bytes (got %d)", MinSecretLen, len(secret))
	}
	return hkdf.Key(sha256.New, secret, nil, purpose, n)
}

// GossipKeyFromSecret returns the AES-256 key that encrypts and
// authenticates gossip (Options.GossipKey) for a cluster whose members
// share secret: a host that does not know the secret can neither join nor
// read the member list.
func GossipKeyFromSecret(secret []byte) ([]byte, error) {
	k, err := derive(secret, purposeGossip, 32)
	if err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	return k, nil
}
