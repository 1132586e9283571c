package examples

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// apache2 is the SHA-256 of the Apache License 2.0 as published, its
// appendix's copyright line still the template's (Debian ships it as
// /usr/share/common-licenses/Apache-2.0).
const apache2 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"

// The repository's LICENSE is the standard Apache-2.0 text with our
// copyright line in its appendix, and nothing else changed.
func TestLicense(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	const ours = "   Copyright 2026 The ringcache authors\n"
	text := string(b)
	if strings.Count(text, ours) != 1 {
		t.Fatalf("LICENSE lacks the line %q", ours)
	}
	text = strings.Replace(text, ours, "   Copyright [yyyy] [name of copyright owner]\n", 1)
	if sum := sha256.Sum256([]byte(text)); hex.EncodeToString(sum[:]) != apache2 {
		t.Errorf("LICENSE is not the standard Apache-2.0 text (sha256 %x without our copyright line)", sum)
	}
}
