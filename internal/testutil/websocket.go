package testutil

// A minimal WebSocket (RFC 6455) origin and client, enough to prove that a
// proxy tunnels an upgraded connection byte for byte: the opening handshake
// (§4), and unfragmented frames (§5.2) masked from the client (§5.3).

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	OpText   = 0x1
	OpBinary = 0x2
	OpClose  = 0x8
	OpPing   = 0x9
	OpPong   = 0xA
)

// websocketGUID is appended to the client's key to make the accept value
// (RFC 6455 §1.3).
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxFrame bounds a test frame's payload.
const maxFrame = 1 << 20

// WebSocketAccept is the Sec-WebSocket-Accept value for a client's key:
// base64(SHA-1(key + GUID)).
func WebSocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// WebSocketOrigin is an origin on 127.0.0.1 for tunnel tests. It answers a
// WebSocket opening handshake with 101, sends a text frame "welcome <path>"
// in the same write as the 101, then echoes every data frame, answers a
// ping with a pong and a close with a close. A handshake for /refuse is
// answered 403. Any other request is answered 200 "plain <path>",
// cacheable for a minute, on a keep-alive connection.
type WebSocketOrigin struct {
	Addr     string
	Upgrades atomic.Int64 // handshakes answered 101
	Plain    atomic.Int64 // requests answered 200

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	seen  []*fasthttp.RequestHeader // handshakes' headers, copied
	wg    sync.WaitGroup
}

// StartWebSocketOrigin serves a WebSocketOrigin until the test ends, when
// it closes every connection and waits for their goroutines.
func StartWebSocketOrigin(t testing.TB) *WebSocketOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &WebSocketOrigin{Addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.mu.Lock()
			o.conns[c] = struct{}{}
			o.wg.Add(1)
			o.mu.Unlock()
			go o.serve(c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		o.mu.Lock()
		for c := range o.conns {
			_ = c.Close()
		}
		o.mu.Unlock()
		o.wg.Wait()
	})
	return o
}

// Handshakes returns copies of the headers of the handshakes received.
func (o *WebSocketOrigin) Handshakes() []*fasthttp.RequestHeader {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*fasthttp.RequestHeader(nil), o.seen...)
}

func (o *WebSocketOrigin) serve(c net.Conn) {
	defer func() {
		_ = c.Close()
		o.mu.Lock()
		delete(o.conns, c)
		o.mu.Unlock()
		o.wg.Done()
	}()
	br := bufio.NewReader(c)
	for range 1000 { // requests on one keep-alive connection
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		var req fasthttp.Request
		if err := req.Read(br); err != nil {
			return
		}
		h := &req.Header
		key := string(h.Peek("Sec-WebSocket-Key"))
		if !strings.EqualFold(string(h.Peek("Upgrade")), "websocket") || key == "" {
			body := "plain " + string(h.RequestURI())
			o.Plain.Add(1)
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
				return
			}
			continue
		}
		seen := &fasthttp.RequestHeader{}
		h.CopyTo(seen)
		o.mu.Lock()
		o.seen = append(o.seen, seen)
		o.mu.Unlock()
		if string(h.RequestURI()) == "/refuse" {
			_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\nX-Refused: yes\r\n\r\nrefused")
			return
		}
		o.Upgrades.Add(1)
		head := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + WebSocketAccept(key) + "\r\n\r\n"
		welcome := appendFrame([]byte(head), OpText, []byte("welcome "+string(h.RequestURI())), false)
		if _, err := c.Write(welcome); err != nil {
			return
		}
		o.echo(c, br)
		return
	}
}

// echo answers frames until a close, an error or a protocol violation.
func (o *WebSocketOrigin) echo(c net.Conn, br *bufio.Reader) {
	for range 100000 {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		op, payload, masked, err := readFrame(br)
		if err != nil {
			return
		}
		if !masked { // RFC 6455 §5.1: a server closes on an unmasked frame
			_, _ = c.Write(appendFrame(nil, OpClose, []byte{0x03, 0xea}, false)) // 1002
			return
		}
		switch op {
		case OpClose:
			_, _ = c.Write(appendFrame(nil, OpClose, payload, false))
			return
		case OpPing:
			op = OpPong
		}
		if _, err := c.Write(appendFrame(nil, op, payload, false)); err != nil {
			return
		}
	}
}

// appendFrame appends one final frame; a client's is masked.
func appendFrame(dst []byte, op byte, payload []byte, mask bool) []byte {
	dst = append(dst, 0x80|op)
	var mbit byte
	if mask {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, mbit|byte(n))
	case n < 1<<16:
		dst = append(dst, mbit|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, mbit|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if !mask {
		return append(dst, payload...)
	}
	var key [4]byte
	_, _ = rand.Read(key[:])
	dst = append(dst, key[:]...)
	for i, b := range payload {
		dst = append(dst, b^key[i%4])
	}
	return dst
}

// readFrame reads one unfragmented frame and unmasks it.
func readFrame(br *bufio.Reader) (op byte, payload []byte, masked bool, err error) {
	var hdr [2]byte
	if _, err = io.ReadFull(br, hdr[:]); err != nil {
		return 0, nil, false, err
	}
	if hdr[0]&0x80 == 0 {
		return 0, nil, false, errors.New("fragmented frame")
	}
	op, masked = hdr[0]&0x0f, hdr[1]&0x80 != 0
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(br, b[:]); err != nil {
			return 0, nil, false, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(br, b[:]); err != nil {
			return 0, nil, false, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > maxFrame {
		return 0, nil, false, fmt.Errorf("frame of %d bytes", n)
	}
	var key [4]byte
	if masked {
		if _, err = io.ReadFull(br, key[:]); err != nil {
			return 0, nil, false, err
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(br, payload); err != nil {
		return 0, nil, false, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return op, payload, masked, nil
}

// WebSocketClient is a client's end of a connection that asked to switch
// to WebSocket.
type WebSocketClient struct {
	Conn net.Conn
	// Response is the answer to the handshake: a 101 whose
	// Sec-WebSocket-Accept matched, or whatever else the server sent.
	Response *fasthttp.Response
	br       *bufio.Reader
}

// DialWebSocket connects to addr, sends a WebSocket opening handshake for
// host and target with the extra header lines, and reads the answer. It
// fails t if there is none, or if a 101 does not accept the handshake's
// key. The connection is closed when the test ends.
func DialWebSocket(t testing.TB, addr, host, target string, header ...string) *WebSocketClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return WebSocketHandshake(t, c, host, target, header...)
}

// DialWebSocketTLS is DialWebSocket over TLS with cfg.
func DialWebSocketTLS(t testing.TB, addr string, cfg *tls.Config, host, target string, header ...string) *WebSocketClient {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return WebSocketHandshake(t, c, host, target, header...)
}

// WebSocketHandshake is DialWebSocket on a connection already open, which
// it closes when the test ends.
func WebSocketHandshake(t testing.TB, c net.Conn, host, target string, header ...string) *WebSocketClient {
	t.Helper()
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n"
	for _, h := range header {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	ws := &WebSocketClient{Conn: c, br: bufio.NewReader(c), Response: &fasthttp.Response{}}
	if err := ws.Response.Read(ws.br); err != nil {
		t.Fatalf("handshake for %s: reading the answer: %v", target, err)
	}
	if ws.Response.StatusCode() == fasthttp.StatusSwitchingProtocols {
		if got := string(ws.Response.Header.Peek("Sec-WebSocket-Accept")); got != WebSocketAccept(key) {
			t.Fatalf("handshake for %s: Sec-WebSocket-Accept %q, want %q", target, got, WebSocketAccept(key))
		}
	}
	return ws
}

// Reader reads the connection, after what the handshake's answer took.
func (w *WebSocketClient) Reader() *bufio.Reader { return w.br }

// Send writes one masked frame.
func (w *WebSocketClient) Send(op byte, payload []byte) error {
	_ = w.Conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
	_, err := w.Conn.Write(appendFrame(nil, op, payload, true))
	return err
}

// Receive reads one frame, waiting up to 20 s.
func (w *WebSocketClient) Receive() (op byte, payload []byte, err error) {
	_ = w.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	op, payload, masked, err := readFrame(w.br)
	if err == nil && masked {
		err = errors.New("a server's frame is masked")
	}
	return op, payload, err
}

// Echo sends a text frame and fails t unless the same text comes back.
func (w *WebSocketClient) Echo(t testing.TB, text string) {
	t.Helper()
	if err := w.Send(OpText, []byte(text)); err != nil {
		t.Fatalf("send %q: %v", text, err)
	}
	op, got, err := w.Receive()
	if err != nil || op != OpText || string(got) != text {
		t.Fatalf("echo of %q: opcode %d, %q, %v", text, op, got, err)
	}
}

// Closed waits up to timeout for the server to close the connection, and
// reports whether it did (bytes still arriving are read and dropped).
func (w *WebSocketClient) Closed(timeout time.Duration) bool {
	_ = w.Conn.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, w.br)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}
