package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blackHole accepts connections and never reads from them nor answers,
// holding them until the test ends: an origin that takes a request body
// nowhere.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// procStatus returns a field of /proc/<pid>/status in bytes (the kB values).
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc status for the node: %v", err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /proc/%d/status", field, pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// TestProcessRequestBodiesBoundMemory is the attack of the issue: 40
// connections each send 15 MiB of a declared 16 MiB POST to a node whose
// origin never reads, so every body is in flight at once. fasthttp used to
// read each body whole before the handler ran (RSS from 24 to 665 MiB);
// streamed, the node holds a few KiB per connection, and the rest waits in
// the sockets, where the senders' writes stall.
func TestProcessRequestBodiesBoundMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const (
		conns    = 40
		declared = 16 << 20
		sent     = 15 << 20
		piece    = 256 << 10
		// stall is how long a write may make no progress before the sender
		// counts its body as held back.
		stall = 2 * time.Second
		// maxPeak leaves a wide margin above the bounded node (a few tens of
		// MiB) and far below the unbounded one (600 MiB and more).
		maxPeak = 200 << 20
	)
	bin := buildBinary(t)
	srv := startChild(t, bin, "serve", "--listen", "127.0.0.1:0", "--admin", "",
		"--origin", "http://"+blackHole(t), "--cache-size", "64MiB")
	addr := waitMatch(t, srv.stderr, regexp.MustCompile(`listen=(127\.0\.0\.1:\d+)`), "the serve process to log its address")
	pid := srv.cmd.Process.Pid
	t.Logf("node RSS at start: %d MiB", procStatus(t, pid, "VmRSS")>>20)

	header := []byte(fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", declared))
	chunk := bytes.Repeat([]byte("b"), piece)
	var written atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(15 * time.Second) // the whole attack, however the node behaves
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			t.Cleanup(func() { c.Close() }) // held open while RSS is measured
			if _, err := c.Write(header); err != nil {
				t.Errorf("write header: %v", err)
				return
			}
			for n := 0; n < sent; n += piece {
				d := time.Now().Add(stall)
				if d.After(end) {
					d = end
				}
				_ = c.SetWriteDeadline(d)
				if _, err := c.Write(chunk); err != nil {
					return // the node holds the rest back: what we want
				}
				written.Add(piece)
			}
		}()
	}
	wg.Wait()
	rss, peak := procStatus(t, pid, "VmRSS"), procStatus(t, pid, "VmHWM")
	t.Logf("clients got %d MiB of %d MiB written; node RSS %d MiB, peak %d MiB",
		written.Load()>>20, conns*sent>>20, rss>>20, peak>>20)
	if peak > maxPeak {
		t.Fatalf("node peak RSS %d MiB with %d bodies in flight, want under %d MiB", peak>>20, conns, maxPeak>>20)
	}
}
