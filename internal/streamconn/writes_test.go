package streamconn

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// idlePipe returns a writeConn over one end of a synchronous pipe (every
// write waits for the reader) and the other end.
func idlePipe(t *testing.T, idle time.Duration) (*writeConn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return &writeConn{Conn: a, idle: idle}, b
}

// TestIdleWritesSlowReader: a write far longer than idle completes while
// the reader keeps taking bytes, and the owner's deadline counts as a start.
func TestIdleWritesSlowReader(t *testing.T) {
	const idle = 500 * time.Millisecond
	w, r := idlePipe(t, idle)
	got := make(chan int64, 1)
	go func() {
		// 16 KiB per 10ms: 1 MiB takes some 640ms, more than idle. The
		// ticker paces a slow reader; it does not wait for a condition.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var n int64
		buf := make([]byte, 16<<10)
		for n < 1<<20 {
			<-tick.C
			k, err := r.Read(buf)
			n += int64(k)
			if err != nil {
				break
			}
		}
		got <- n
	}()
	if err := w.SetWriteDeadline(time.Now().Add(idle)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := w.Write(make([]byte, 1<<20)); err != nil {
		t.Fatalf("write cut after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}
	if n := <-got; n != 1<<20 {
		t.Fatalf("reader got %d bytes", n)
	}
}

// TestIdleWritesStalledReader: a reader that stops makes the write fail
// about idle later.
func TestIdleWritesStalledReader(t *testing.T) {
	const idle = 200 * time.Millisecond
	w, r := idlePipe(t, idle)
	go func() { _, _ = io.ReadFull(r, make([]byte, 100)) }() // then stops
	start := time.Now()
	_, err := w.Write(make([]byte, 1<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a stalled reader: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 10*idle {
		t.Fatalf("cut after %s, want about %s", d, idle)
	}
}

// TestIdleWritesZeroDeadline: the owner's "no deadline" stands.
func TestIdleWritesZeroDeadline(t *testing.T) {
	w, _ := idlePipe(t, time.Millisecond)
	if err := w.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := w.extend(); err != nil || w.moved.Load() != writeOff {
		t.Fatalf("extend moved a cleared deadline (err %v)", err)
	}
	if err := w.SetWriteDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if w.moved.Load() == writeOff {
		t.Fatal("a new deadline did not turn the moves back on")
	}
}
