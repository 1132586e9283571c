package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLogLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.log")
	log := `time=2026-12-02T10:00:00.000Z level=INFO msg="snapshot written" snapshot=/tmp/s entries=10 bytes=1234 took=1.5s MB/s=1
time=2026-12-02T10:00:01.000Z level=INFO msg="snapshot loaded" snapshot="/tmp/a b" entries=7 took=12ms
time=2026-12-02T10:00:02.000Z level=INFO msg="snapshot written" snapshot=/tmp/s entries=11 bytes=1300 took=2s MB/s=1
`
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := logLine(path, "snapshot written")
	if err != nil || w["entries"] != "11" || w["took"] != "2s" {
		t.Fatalf("last write: %v, %v", w, err)
	}
	l, err := logLine(path, "snapshot loaded")
	if err != nil || l["snapshot"] != "/tmp/a b" || l["took"] != "12ms" {
		t.Fatalf("load: %v, %v", l, err)
	}
	if _, err := logLine(path, "snapshot moved into the store"); err == nil {
		t.Fatal("found a line that is not there")
	}
}

func TestResidentShare(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	// Just written, so in the page cache (unless the machine is short of
	// memory): the share is a number between 0 and 1 either way.
	if got := residentShare(path); got < 0 || got > 1 {
		t.Fatalf("residentShare = %v; want a share", got)
	}
	if got := residentShare(filepath.Join(t.TempDir(), "none")); got != -1 {
		t.Fatalf("residentShare of a missing file = %v; want -1", got)
	}
}
