package clustertest

import (
	"testing"

	"github.com/ringcache/ringcache/internal/testutil"
)

// CertFiles are the PEM files of one member's peer TLS.
type CertFiles = testutil.CertFiles

// Certs writes a fresh CA and, for each name, a certificate it signs (usable
// as server and client, valid for an hour) into dir, and returns the files
// per name (see testutil.Certs).
func Certs(t testing.TB, dir string, names ...string) map[string]CertFiles {
	t.Helper()
	return testutil.Certs(t, dir, names...)
}
