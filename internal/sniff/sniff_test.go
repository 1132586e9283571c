package sniff

import (
	"bufio"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testTimeout = 10 * time.Second

func listen(t *testing.T, o Options) (addr string, plain, tlsSide net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sides := Split(ln, 2, FirstByte, o)
	plain, tlsSide = sides[0], sides[1]
	t.Cleanup(func() { plain.Close(); tlsSide.Close() })
	return ln.Addr().String(), plain, tlsSide
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
}

// accept returns the next connection of ln, failing after testTimeout.
func accept(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.c
	case <-time.After(testTimeout):
		t.Fatal("no connection accepted")
		return nil
	}
}

// Plain text and TLS on one port each reach their side whole, the sniffed
// first byte included.
func TestSplit(t *testing.T) {
	addr, plain, tlsSide := listen(t, Options{})

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	sc := accept(t, plain)
	line, err := bufio.NewReader(sc).ReadString('\n')
	sc.Close()
	if err != nil || line != "GET / HTTP/1.1\r\n" {
		t.Fatalf("plain side read %q, %v", line, err)
	}

	cert := selfSigned(t)
	done := make(chan error, 1)
	go func() {
		tc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			_, err = io.WriteString(tc, "hello over tls")
			tc.Close()
		}
		done <- err
	}()
	srv := tls.Server(accept(t, tlsSide), &tls.Config{Certificates: []tls.Certificate{cert}})
	defer srv.Close()
	_ = srv.SetDeadline(time.Now().Add(testTimeout))
	got, err := io.ReadAll(srv)
	if err != nil || string(got) != "hello over tls" {
		t.Fatalf("tls side read %q, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("client: %v", err)
	}
}

// A connection that never speaks is closed after Timeout, and connections
// beyond MaxPending are closed at once: idle sockets cannot pile up.
func TestSilentAndPending(t *testing.T) {
	addr, _, _ := listen(t, Options{Timeout: 200 * time.Millisecond, MaxPending: 1})
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// The first takes the only pending slot; the next is closed without a
	// wait (its read ends with EOF long before the first one's timeout).
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(testTimeout))
	start := time.Now()
	if _, err := second.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data from an over-limit connection")
	}
	// The silent first is closed once its Timeout passes.
	_ = first.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := first.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("silent connection: %v, want EOF from the server's close", err)
	}
	if d := time.Since(start); d >= testTimeout {
		t.Fatalf("silent connection closed after %v", d)
	}
}

// Closing one side leaves the other serving; closing both closes the
// listener, and Accept on a closed side fails.
func TestClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sides := Split(ln, 2, FirstByte, Options{})
	plain, tlsSide := sides[0], sides[1]
	if err := tlsSide.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsSide.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed side: %v", err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "x"); err != nil {
		t.Fatal(err)
	}
	accept(t, plain).Close()
	c.Close()
	if err := plain.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("the listener still accepts after both sides closed")
	}
}

// TestALPN: TLS connections go to the listener of the protocol their
// handshake agreed on, handshake done; one that agreed on none to the last.
func TestALPN(t *testing.T) {
	cert := selfSigned(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"a/1", "b/1"}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sides := Split(ln, 3, ALPN(cfg, "a/1", "b/1"), Options{})
	defer func() {
		for _, s := range sides {
			s.Close()
		}
	}()
	for want, protos := range [][]string{{"a/1"}, {"b/1"}, nil} {
		done := make(chan error, 1)
		go func() {
			c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: protos})
			if err == nil {
				_, err = io.WriteString(c, "x")
				c.Close()
			}
			done <- err
		}()
		c := accept(t, sides[want])
		tc, ok := c.(*tls.Conn)
		if !ok || !tc.ConnectionState().HandshakeComplete {
			t.Fatalf("protocols %v: side %d got %T without a finished handshake", protos, want, c)
		}
		c.Close()
		if err := <-done; err != nil {
			t.Fatalf("protocols %v: client: %v", protos, err)
		}
	}
}

// TestRequireTLS: TLS goes on to the next classifier; plain text gets the
// answer given, readable by the client, and is closed.
func TestRequireTLS(t *testing.T) {
	cert := selfSigned(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const answer = "HTTP/1.1 400 Bad Request\r\nContent-Length: 6\r\nConnection: close\r\n\r\nHTTPS\n"
	sides := Split(ln, 1, RequireTLS(ALPN(cfg), []byte(answer)), Options{})
	defer sides[0].Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: a-long-enough-header-to-stay-unread\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != answer {
		t.Fatalf("plain client read %q, %v; want %q and EOF", got, err, answer)
	}

	done := make(chan error, 1)
	go func() {
		tc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			_, err = io.WriteString(tc, "x")
			tc.Close()
		}
		done <- err
	}()
	sc := accept(t, sides[0])
	if tc, ok := sc.(*tls.Conn); !ok || !tc.ConnectionState().HandshakeComplete {
		t.Fatalf("TLS client reached the side as %T without a finished handshake", sc)
	}
	sc.Close()
	if err := <-done; err != nil {
		t.Fatalf("TLS client: %v", err)
	}
}

// TestFirstByteNetConn: a sniffed connection leads to the one beneath, as
// a *tls.Conn does, so that wrappers under the split can be found.
func TestFirstByteNetConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _, _ = b.Write([]byte("G")) }()
	c, side, err := FirstByte(a, time.Now().Add(testTimeout))
	if err != nil || side != 0 {
		t.Fatalf("FirstByte: side %d, %v", side, err)
	}
	under, ok := c.(interface{ NetConn() net.Conn })
	if !ok || under.NetConn() != a {
		t.Fatalf("%T leads to %v, want the sniffed connection", c, under)
	}
}
