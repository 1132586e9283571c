package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunWritesTables(t *testing.T) {
	out := filepath.Join(t.TempDir(), "sim.md")
	var stderr bytes.Buffer
	if code := run([]string{"-members", "3,12", "-keys", "5000", "-rate", "100", "-o", out}, nil, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{"**Share spread**", "**12 members**", "| two crashes at once | 2 |", "copy time at 100 MB/s", "Simulated in"} {
		if !strings.Contains(md, want) {
			t.Errorf("output lacks %q:\n%s", want, md)
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"-members", "1,x", "-replicas", "0", "-rate", "0"}, nil, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, want := range []string{"-members", "R must", "rate"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q lacks %q", stderr.String(), want)
		}
	}
}
