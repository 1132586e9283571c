package cluster

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Peer authentication limits.
const (
	// MinSecretLen is the shortest shared secret NewSigner accepts.
	MinSecretLen = 16
	// AuthWindow is how far a request's timestamp may lie from the
	// receiver's clock, either way: it bounds both clock skew between
	// members and how long a captured request can be replayed.
	AuthWindow = 5 * time.Minute

	// maxAuthLen bounds the HeaderAuth value Verify will look at; a real one
	// is a node name plus about 60 bytes.
	maxAuthLen = 512
	macLen     = sha256.Size
	macB64Len  = 43 // base64.RawURLEncoding.EncodedLen(macLen)
	// maxTimestampDigits keeps the timestamp within int64.
	maxTimestampDigits = 18
)

var (
	headerAuthKey      = []byte(HeaderAuth)
	headerForwardedKey = []byte(HeaderForwarded)
)

// Signer signs requests to peers and verifies requests from them with a
// secret shared by every member: HeaderForwarded carries the sender's name
// and HeaderAuth carries "<name>:<unix-seconds>:<mac>", where mac is the
// unpadded base64url HMAC-SHA256 of
//
//	<name>|<unix-seconds>|<method>|<len(host)>|<host>|<body-digest>|<request-uri>
//
// host is the Host header and body-digest the base64url SHA-256 of the
// body, empty for an empty body. The host's length and the digest's fixed
// alphabet keep the message unambiguous whatever bytes the host and URI
// hold. So a request cannot be altered on its way; it can still be read
// (use PeerTLS or a private network) and replayed as it is within
// AuthWindow.
//
// A Signer is safe for concurrent use.
type Signer struct {
	name   string
	self   []byte // name, as bytes for the hot path
	secret []byte
	now    func() time.Time
	// macs pools *macState: an HMAC costs a few hundred bytes to set up,
	// and a forwarded request needs one on each side.
	macs sync.Pool
}

// macState is one pooled HMAC with scratch buffers for its input and output.
type macState struct {
	h    hash.Hash
	body hash.Hash // SHA-256 of the body, into digest
	msg  []byte
	sum  []byte
	got  [macLen]byte

	digest [sha256.Size]byte
}

// SignerOption changes how a Signer is built.
type SignerOption func(*Signer)

// SignerClock makes the Signer read the time from now instead of time.Now,
// both to stamp requests and to check their age.
func SignerClock(now func() time.Time) SignerOption {
	return func(s *Signer) { s.now = now }
}

// NewSigner returns a Signer that signs as self with secret, which must be
// at least MinSecretLen bytes. The secret is copied.
func NewSigner(self string, secret []byte, opts ...SignerOption) (*Signer, error) {
	var errs []error
	if err := checkName(self); err != nil {
		errs = append(errs, fmt.Errorf("peer signer: %w", err))
	}
	if len(secret) < MinSecretLen {
		errs = append(errs, fmt.Errorf("peer signer: secret must be at least %d bytes (got %d)", MinSecretLen, len(secret)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Signer{name: self, self: []byte(self), secret: bytes.Clone(secret), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	s.macs.New = func() any {
		return &macState{h: hmac.New(sha256.New, s.secret), body: sha256.New(), sum: make([]byte, 0, macLen)}
	}
	return s, nil
}

// Name is the node name the Signer signs as.
func (s *Signer) Name() string { return s.name }

// checkName refuses names that would make the signed message ambiguous
// ('|' separates its fields) or could not travel in a header.
func checkName(name string) error {
	if name == "" {
		return errors.New("node name is empty")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '|' || c < 0x20 || c == 0x7f {
			return fmt.Errorf("node name %q contains %q", name, c)
		}
	}
	return nil
}

// Sign stamps req with this node's name and a signature over its method,
// Host, body and request URI, replacing any previous stamp. All of them
// must be final: the receiver checks the request as it reads it.
func (s *Signer) Sign(req *fasthttp.Request) {
	h := &req.Header
	m := s.macs.Get().(*macState)
	ts := s.now().Unix()
	mac := m.compute(s.self, ts, h.Method(), h.Host(), req.Body(), h.RequestURI())
	// msg is free again once the MAC is computed: reuse it for the value.
	v := append(m.msg[:0], s.self...)
	v = append(v, ':')
	v = strconv.AppendInt(v, ts, 10)
	v = append(v, ':')
	v = base64.RawURLEncoding.AppendEncode(v, mac)
	m.msg = v
	h.SetCanonical(headerForwardedKey, s.self)
	h.SetCanonical(headerAuthKey, v) // copies v
	s.macs.Put(m)
}

// Verify checks the stamp Sign put on req and returns the sender's name. It
// fails for a missing or malformed stamp, a name that differs from
// HeaderForwarded, a timestamp outside AuthWindow, or a wrong signature
// (compared in constant time). It allocates only the returned name.
func (s *Signer) Verify(req *fasthttp.Request) (from string, ok bool) {
	h := &req.Header
	v := h.PeekCanonical(headerAuthKey)
	if len(v) == 0 || len(v) > maxAuthLen {
		return "", false
	}
	// Split from the right: the MAC and the timestamp hold no ':', the
	// name may.
	i := bytes.LastIndexByte(v, ':')
	if i < 0 {
		return "", false
	}
	j := bytes.LastIndexByte(v[:i], ':')
	if j <= 0 {
		return "", false
	}
	name, tsb, macb := v[:j], v[j+1:i], v[i+1:]
	if bytes.IndexByte(name, '|') >= 0 || !bytes.Equal(name, h.PeekCanonical(headerForwardedKey)) {
		return "", false
	}
	ts, ok := parseTimestamp(tsb)
	if !ok {
		return "", false
	}
	now := s.now().Unix()
	if d := now - ts; d > int64(AuthWindow/time.Second) || d < -int64(AuthWindow/time.Second) {
		return "", false
	}
	method := h.Method()
	if bytes.IndexByte(method, '|') >= 0 {
		return "", false // would make the signed message ambiguous
	}
	if len(macb) != macB64Len {
		return "", false
	}
	m := s.macs.Get().(*macState)
	defer s.macs.Put(m)
	if n, err := base64.RawURLEncoding.Decode(m.got[:], macb); err != nil || n != macLen {
		return "", false
	}
	if !hmac.Equal(m.compute(name, ts, method, h.Host(), req.Body(), h.RequestURI()), m.got[:]) {
		return "", false
	}
	return string(name), true
}

// Authenticate is Verify, so that a Signer can guard a PeerServer on its own.
func (s *Signer) Authenticate(req *fasthttp.Request) (string, bool) { return s.Verify(req) }

// compute returns the MAC of the signed message, in m.sum (valid until the
// next use of m).
func (m *macState) compute(name []byte, ts int64, method, host, body, uri []byte) []byte {
	msg := append(m.msg[:0], name...)
	msg = append(msg, '|')
	msg = strconv.AppendInt(msg, ts, 10)
	msg = append(msg, '|')
	msg = append(msg, method...)
	msg = append(msg, '|')
	msg = strconv.AppendInt(msg, int64(len(host)), 10)
	msg = append(msg, '|')
	msg = append(msg, host...)
	msg = append(msg, '|')
	if len(body) > 0 {
		m.body.Reset()
		m.body.Write(body)
		msg = base64.RawURLEncoding.AppendEncode(msg, m.body.Sum(m.digest[:0]))
	}
	msg = append(msg, '|')
	msg = append(msg, uri...)
	m.msg = msg
	m.h.Reset()
	m.h.Write(msg)
	m.sum = m.h.Sum(m.sum[:0])
	return m.sum
}

// parseTimestamp reads unsigned decimal seconds; anything else (sign,
// spaces, overflow) is refused rather than interpreted.
func parseTimestamp(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > maxTimestampDigits {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
