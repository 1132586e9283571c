package streamconn_test

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/streamconn"
)

// dialPair returns a tracked client connection to a loopback listener and
// the server's end of it. Both are closed when the test ends.
func dialPair(t testing.TB, tab *streamconn.Table) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		raw.Close()
		t.Fatal("accept failed")
	}
	client = tab.Track(raw)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// fakeAddrConn is a pipe end that claims a TCP local address, so that two
// connections can share one.
type fakeAddrConn struct {
	net.Conn
	laddr *net.TCPAddr
}

func (c fakeAddrConn) LocalAddr() net.Addr { return c.laddr }

func pipeWithAddr(t *testing.T, laddr *net.TCPAddr) net.Conn {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return fakeAddrConn{Conn: a, laddr: laddr}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// A read deadline already in the past stands for fasthttp's response
// deadline having passed while the caller still reads the body.
func TestStreamingReplacesFixedDeadline(t *testing.T) {
	tests := []struct {
		name      string
		streaming bool
		rearm     bool // a new round trip starts after Streaming
		wantRead  bool
	}{
		{"fixed deadline cuts the read", false, false, false},
		{"streaming reads within the idle timeout", true, false, true},
		{"next round trip restores the fixed deadline", true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tab streamconn.Table
			c, srv := dialPair(t, &tab)
			if _, err := srv.Write([]byte("body")); err != nil {
				t.Fatal(err)
			}
			if err := c.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if tc.streaming {
				tab.Streaming(c.LocalAddr(), time.Minute)
			}
			if tc.rearm {
				if err := c.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			_, err := io.ReadFull(c, buf)
			switch {
			case tc.wantRead && err != nil:
				t.Fatalf("read: %v", err)
			case tc.wantRead && string(buf) != "body":
				t.Fatalf("read %q, want %q", buf, "body")
			case !tc.wantRead && !isTimeout(err):
				t.Fatalf("read error %v, want a timeout", err)
			}
		})
	}
}

func TestStreamingStalledReadTimesOut(t *testing.T) {
	var tab streamconn.Table
	c, _ := dialPair(t, &tab)
	if err := c.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	tab.Streaming(c.LocalAddr(), 50*time.Millisecond)
	read := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		read <- err
	}()
	select {
	case err := <-read:
		if !isTimeout(err) {
			t.Fatalf("read error %v, want a timeout", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a stalled read never timed out")
	}
}

func TestStreamingIgnoresUnknownAddresses(t *testing.T) {
	var tab streamconn.Table
	c, srv := dialPair(t, &tab)
	tab.Streaming(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, time.Minute)
	tab.Streaming(&net.UnixAddr{Name: "x", Net: "unix"}, time.Minute)
	tab.Streaming(nil, time.Minute)
	// c was not switched: its past deadline still applies.
	if _, err := srv.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("read error %v, want a timeout", err)
	}
}

func TestTrackNonTCPConnUnwrapped(t *testing.T) {
	var tab streamconn.Table
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := tab.Track(a); got != a {
		t.Errorf("Track wrapped a pipe: %T", got)
	}
	if n := tab.Len(); n != 0 {
		t.Errorf("Len = %d, want 0", n)
	}
}

func TestCloseForgets(t *testing.T) {
	var tab streamconn.Table
	c1, _ := dialPair(t, &tab)
	c2, _ := dialPair(t, &tab)
	if n := tab.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c1.Close() // a second Close must not disturb the table
	if n := tab.Len(); n != 1 {
		t.Fatalf("after one Close: Len = %d, want 1", n)
	}
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	if n := tab.Len(); n != 0 {
		t.Fatalf("after both Close: Len = %d, want 0", n)
	}
}

// A closed connection's local address can be reused by a new one before
// the old one's Close is done with the table: the new one must stay.
func TestCloseKeepsNewerConnOnSameAddress(t *testing.T) {
	var tab streamconn.Table
	laddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	old := tab.Track(pipeWithAddr(t, laddr))
	newer := tab.Track(pipeWithAddr(t, laddr))
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if n := tab.Len(); n != 1 {
		t.Fatalf("closing the old conn dropped the newer one: Len = %d, want 1", n)
	}
	if err := newer.Close(); err != nil {
		t.Fatal(err)
	}
	if n := tab.Len(); n != 0 {
		t.Fatalf("Len = %d, want 0", n)
	}
}

// BenchmarkStreaming measures the lookup done once per streamed response.
func BenchmarkStreaming(b *testing.B) {
	var tab streamconn.Table
	c, _ := dialPair(b, &tab)
	for range 64 { // other open connections
		dialPair(b, &tab)
	}
	la := c.LocalAddr()
	b.ReportAllocs()
	for b.Loop() {
		tab.Streaming(la, time.Minute)
	}
}

// BenchmarkRead measures a read of a buffered byte with and without the
// idle deadline pushed first.
func BenchmarkRead(b *testing.B) {
	for _, streaming := range []bool{false, true} {
		name := "fixed"
		if streaming {
			name = "idle"
		}
		b.Run(name, func(b *testing.B) {
			var tab streamconn.Table
			c, srv := dialPair(b, &tab)
			if streaming {
				tab.Streaming(c.LocalAddr(), time.Minute)
			}
			chunk := make([]byte, 64<<10)
			buf := make([]byte, 1)
			avail := 0
			b.ReportAllocs()
			for b.Loop() {
				if avail == 0 {
					b.StopTimer()
					if _, err := srv.Write(chunk); err != nil {
						b.Fatal(err)
					}
					avail = len(chunk)
					b.StartTimer()
				}
				n, err := c.Read(buf)
				if err != nil {
					b.Fatal(err)
				}
				avail -= n
			}
		})
	}
}
