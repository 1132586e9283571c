package origin

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// upgradeSeen is what an origin got on a connection Dial opened.
type upgradeSeen struct {
	host, uri, auth, upgrade string
	protos                   []string // ALPN offered, TLS only
	serverName               string
}

// acceptOne serves one connection of ln: it reads a request, answers 101
// and echoes one line, and reports what it saw.
func acceptOne(t *testing.T, ln net.Listener, hello chan *tls.ClientHelloInfo) <-chan upgradeSeen {
	t.Helper()
	seen := make(chan upgradeSeen, 1)
	go func() {
		defer close(seen)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		var req fasthttp.Request
		if err := req.Read(br); err != nil {
			t.Errorf("origin: reading the request: %v", err)
			return
		}
		s := upgradeSeen{host: string(req.Header.Host()), uri: string(req.Header.RequestURI()),
			auth: string(req.Header.Peek("Authorization")), upgrade: string(req.Header.Peek("Upgrade"))}
		if hello != nil {
			h := <-hello
			s.protos, s.serverName = h.SupportedProtos, h.ServerName
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		line, _ := br.ReadString('\n')
		_, _ = io.WriteString(c, line)
		seen <- s
	}()
	return seen
}

// upgradeRequest is a request as the proxy hands it to Dial: the client's
// target and Host.
func upgradeRequest(target, host string) *fasthttp.Request {
	req := &fasthttp.Request{}
	req.SetRequestURI(target)
	req.Header.SetHost(host)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	return req
}

// exchange writes req on c, expects a 101, and echoes a line through it.
func exchange(t *testing.T, c net.Conn, req *fasthttp.Request) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	bw := bufio.NewWriter(c)
	if err := req.Write(bw); err != nil || bw.Flush() != nil {
		t.Fatalf("writing the request: %v", err)
	}
	br := bufio.NewReader(c)
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil || resp.StatusCode() != 101 {
		t.Fatalf("answer: %v, status %d", err, resp.StatusCode())
	}
	_, _ = io.WriteString(c, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}
}

func TestClientDial(t *testing.T) {
	for _, preserve := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		seen := acceptOne(t, ln, nil)
		c := newClient(t, ClientOptions{URL: "http://" + ln.Addr().String(), PreserveHost: preserve})
		req := upgradeRequest("http://alice:pw@site.example/a/../b?x=1", "site.example")
		conn, err := c.Dial(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		exchange(t, conn, req)
		conn.Close()
		s := <-seen
		wantHost := ln.Addr().String()
		if preserve {
			wantHost = "site.example"
		}
		if s.host != wantHost || s.uri != "/a/../b?x=1" || s.auth != "" || s.upgrade != "echo" {
			t.Errorf("preserve_host %v: origin got Host %q, target %q, Authorization %q, Upgrade %q; want %q, /a/../b?x=1, none, echo",
				preserve, s.host, s.uri, s.auth, s.upgrade, wantHost)
		}
	}
}

func TestClientDialTLS(t *testing.T) {
	cert, roots := localhostCert(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	hello := make(chan *tls.ClientHelloInfo, 1)
	ln := tls.NewListener(raw, &tls.Config{
		Certificates: []tls.Certificate{cert},
		// The origin speaks HTTP/2 too: the tunnel must not end up on it.
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hello <- h
			return nil, nil
		},
	})
	seen := acceptOne(t, ln, hello)
	_, port, _ := net.SplitHostPort(raw.Addr().String())
	base := &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}}
	c := newClient(t, ClientOptions{URL: "https://localhost:" + port, TLSConfig: base})
	req := upgradeRequest("/ws", "site.example")
	conn, err := c.Dial(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("negotiated %q, want http/1.1", p)
	}
	exchange(t, conn, req)
	conn.Close()
	s := <-seen
	if !slices.Equal(s.protos, []string{"http/1.1"}) || s.serverName != "localhost" {
		t.Errorf("ClientHello offered %q for %q, want [http/1.1] for localhost", s.protos, s.serverName)
	}
	if !slices.Equal(base.NextProtos, []string{"h2"}) {
		t.Errorf("Dial changed the caller's TLS config: NextProtos %q", base.NextProtos)
	}
}

func TestClientDialFailures(t *testing.T) {
	c := newClient(t, ClientOptions{URL: "http://" + freeAddr(t), FailThreshold: 2, Cooldown: time.Hour})
	for i := range 2 {
		if _, err := c.Dial(context.Background(), upgradeRequest("/ws", "x")); err == nil || errors.Is(err, ErrUnavailable) {
			t.Fatalf("dial %d to a closed port: %v, want a connection error", i, err)
		}
	}
	if _, err := c.Dial(context.Background(), upgradeRequest("/ws", "x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after two failures: %v, want ErrUnavailable (the circuit is open)", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Dial(ctx, upgradeRequest("/ws", "x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
