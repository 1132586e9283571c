package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringcache/ringcache/cache"
)

// FramesALPN is the TLS application protocol of the lookup exchange: a
// member asks a key's owner for the entry and, when it is there, serves
// the request itself through its own hit path. A forwarded hit then costs
// a small frame each way on a connection that stays open with many
// lookups in flight, instead of a second HTTP exchange; writes are batched
// (memcached's pipelined gets): the owner answers everything it has read
// and flushes once, and callers writing together share one flush.
//
// Frames, big-endian, on a connection whose mutual TLS made both ends
// members:
//
//	request:  u32 n | u32 id | u8 op=get | u32 max-entry | key        (n counts what follows it)
//	response: u32 n | u32 id | u8 status | i64 owner-now | entry?
//
// max-entry is the largest encoded entry the asker takes; a larger one is
// answered statusTooLarge and the asker forwards the request instead (the
// owner then streams it). owner-now is the owner's clock (unix
// nanoseconds), so the asker can read the entry's times on its own clock.
// An id is the asker's slot for the call; answers may come in any order.
const FramesALPN = "ringcache-frames/1"

const (
	opGet = 1

	statusFound    = 0 // an entry follows
	statusMissing  = 1 // nothing stored under the key (or only a pass marker)
	statusTooLarge = 2 // stored, but over the asker's max-entry
	statusBad      = 3 // the request made no sense

	requestHead  = 4 + 4 + 1 + 4 // n, id, op, max-entry
	responseHead = 4 + 4 + 1 + 8 // n, id, status, owner-now

	// maxKeyBytes bounds a key in a request frame: a cache key is a host,
	// path and query, far below it.
	maxKeyBytes = 64 << 10
	// framesSlots is how many lookups one connection carries at once; a
	// caller beyond it waits for a slot.
	framesSlots = 1024
	// framesBuffer sizes each connection's read and write buffers: many
	// frames per system call under load.
	framesBuffer = 64 << 10
	// framesRedial paces redialling a peer that refused the exchange (a
	// member of another release) or could not be reached.
	framesRedial = time.Second
)

var (
	// errFramesClosed: the connection ended; the call's fate is unknown.
	errFramesClosed = errors.New("peer lookup connection closed")
	// errFramesTimeout: the owner did not answer in time; the connection
	// is dropped, since a stalled peer may stall everything behind it.
	errFramesTimeout = errors.New("peer lookup timed out")
	// errFramesDown: the peer was unreachable or refused the exchange
	// recently, so no dial was tried.
	errFramesDown = errors.New("peer lookup unavailable")
)

// Lookup results, for Peer.Get.
const (
	// LookupFound: the owner holds an entry; it was decoded into the
	// caller's Entry.
	LookupFound = iota
	// LookupMissing: the owner holds nothing usable under the key.
	LookupMissing
	// LookupTooLarge: the owner holds an entry larger than the caller
	// takes.
	LookupTooLarge
)

// --- the owner's side ---

// ServeFrames answers lookups on the connections ln accepts (the FramesALPN
// side of the peer listener, handshake done) until ln is closed; then it
// closes the connections it serves and returns once they are done.
func (s *PeerServer) ServeFrames(ln net.Listener) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveFramesConn(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
	mu.Lock()
	for c := range conns {
		_ = c.Close()
	}
	mu.Unlock()
	wg.Wait()
}

// serveFramesConn answers one connection's requests in order, flushing
// when it has answered all it has read.
func (s *PeerServer) serveFramesConn(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, framesBuffer)
	bw := bufio.NewWriterSize(c, framesBuffer)
	var (
		head [requestHead]byte
		key  []byte
		out  = make([]byte, responseHead, framesBuffer) // the answer: its head, then the entry
	)
	deadline := false // a read deadline is set: clear it once the frame is in
	for {
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
		if _, err := io.ReadFull(br, head[:4]); err != nil {
			return // the asker hung up, or the listener closed
		}
		// The rest of a frame whose first bytes came must follow at once:
		// a half-written frame is an error, not a wait.
		if br.Buffered() < requestHead-4 {
			_ = c.SetReadDeadline(time.Now().Add(s.timeout))
			deadline = true
		}
		if _, err := io.ReadFull(br, head[4:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(head[0:4])
		id := binary.BigEndian.Uint32(head[4:8])
		op := head[8]
		maxEntry := int64(binary.BigEndian.Uint32(head[9:13]))
		keyLen := int64(n) - (requestHead - 4)
		if op != opGet || keyLen <= 0 || keyLen > maxKeyBytes {
			s.malformed.Add(1)
			s.answer(bw, id, statusBad, out[:responseHead])
			_ = bw.Flush()
			return // the framing may be lost: end the connection
		}
		if int64(br.Buffered()) < keyLen && !deadline {
			_ = c.SetReadDeadline(time.Now().Add(s.timeout))
			deadline = true
		}
		key = grow(key, int(keyLen))
		if _, err := io.ReadFull(br, key); err != nil {
			return
		}
		if deadline {
			_ = c.SetReadDeadline(time.Time{})
			deadline = false
		}
		s.lookups.Add(1)
		e, ok := s.local.Get(key)
		status := byte(statusFound)
		switch {
		case !ok:
			status = statusMissing
		case int64(e.EncodedSize()) > maxEntry:
			status = statusTooLarge
		default:
			s.hits.Add(1)
			out = e.AppendBinary(out[:responseHead])
		}
		if status != statusFound {
			out = out[:responseHead]
		}
		s.answer(bw, id, status, out)
		if cap(out) > framesBuffer {
			out = make([]byte, responseHead, framesBuffer) // do not keep a freak entry's buffer
		}
	}
}

// answer writes one response frame: frame holds room for the head, then
// the entry if any.
func (s *PeerServer) answer(bw *bufio.Writer, id uint32, status byte, frame []byte) {
	binary.BigEndian.PutUint32(frame[0:4], uint32(len(frame)-4))
	binary.BigEndian.PutUint32(frame[4:8], id)
	frame[8] = status
	binary.BigEndian.PutUint64(frame[9:17], uint64(s.now()))
	_, _ = bw.Write(frame)
}

// grow returns b resized to n, reallocating only when it is too small.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// --- the asker's side ---

// framesClient is one peer's end of the lookup exchange: one connection,
// dialled on first use and again after it fails.
type framesClient struct {
	addr     string
	tls      *tls.Config // the peer client config, offering FramesALPN only
	timeout  time.Duration
	maxEntry int64

	mu       sync.Mutex
	conn     *framesConn
	downTill time.Time // no dial before: the last one failed
	closed   bool      // the peer left, or its set was closed: no more dials
}

func newFramesClient(addr string, peerTLS *tls.Config, timeout time.Duration, maxEntry int64) *framesClient {
	cfg := peerTLS.Clone()
	cfg.NextProtos = []string{FramesALPN}
	return &framesClient{addr: addr, tls: cfg, timeout: timeout, maxEntry: min(maxEntry, 1<<32-1)}
}

// get asks the peer for key and, when it holds an entry of at most
// maxEntry encoded bytes (<= 0: the client's limit), leaves the encoding in
// *buf (grown as needed) and decodes it into e, which then borrows *buf.
// It returns the lookup result and the owner's clock.
func (f *framesClient) get(ctx context.Context, key []byte, maxEntry int64, e *cache.Entry, buf *[]byte) (int, int64, error) {
	if len(key) == 0 || len(key) > maxKeyBytes {
		return 0, 0, fmt.Errorf("lookup key of %d bytes", len(key))
	}
	c, err := f.connect()
	if err != nil {
		return 0, 0, err
	}
	if maxEntry <= 0 || maxEntry > f.maxEntry {
		maxEntry = f.maxEntry
	}
	status, ownerNow, err := c.call(ctx, key, maxEntry, buf, f.timeout)
	if err != nil {
		return 0, 0, err
	}
	switch status {
	case statusFound:
		if err := cache.DecodeEntryInto(e, *buf); err != nil {
			return 0, 0, err
		}
		return LookupFound, ownerNow, nil
	case statusMissing:
		return LookupMissing, ownerNow, nil
	case statusTooLarge:
		return LookupTooLarge, ownerNow, nil
	}
	return 0, 0, fmt.Errorf("peer answered lookup status %d", status)
}

// connect returns the open connection, dialling one if there is none.
func (f *framesClient) connect() (*framesConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.conn; c != nil && !c.failed() {
		return c, nil
	}
	f.conn = nil
	if f.closed {
		return nil, errFramesClosed
	}
	if time.Now().Before(f.downTill) {
		return nil, errFramesDown
	}
	c, err := dialFrames(f.addr, f.tls, f.timeout)
	if err != nil {
		f.downTill = time.Now().Add(framesRedial)
		return nil, err
	}
	f.conn = c
	return c, nil
}

// close closes the connection, if any, for good; calls in flight fail.
func (f *framesClient) close() {
	f.mu.Lock()
	c := f.conn
	f.conn, f.closed = nil, true
	f.mu.Unlock()
	if c != nil {
		c.fail(errFramesClosed)
	}
}

func dialFrames(addr string, cfg *tls.Config, timeout time.Duration) (*framesConn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial lookups at %s: %w", addr, err)
	}
	tc := raw.(*tls.Conn)
	if p := tc.ConnectionState().NegotiatedProtocol; p != FramesALPN {
		_ = tc.Close()
		return nil, fmt.Errorf("dial lookups at %s: the peer does not speak %s (it agreed on %q)", addr, FramesALPN, p)
	}
	return newFramesConn(tc, timeout), nil
}

// newFramesConn starts the asker's end of the exchange on c, whose peer is
// authenticated.
func newFramesConn(nc net.Conn, timeout time.Duration) *framesConn {
	c := &framesConn{c: nc, bw: bufio.NewWriterSize(nc, framesBuffer), closed: make(chan struct{}), free: make(chan uint32, framesSlots)}
	c.slots = make([]slot, framesSlots)
	for i := range c.slots {
		c.slots[i].done = make(chan struct{}, 1)
		c.slots[i].timer = time.NewTimer(time.Hour)
		c.slots[i].timer.Stop()
		c.free <- uint32(i)
	}
	go c.read(bufio.NewReaderSize(nc, framesBuffer), timeout)
	return c
}

// framesConn is one connection with up to framesSlots lookups in flight.
type framesConn struct {
	c       net.Conn
	wmu     sync.Mutex // guards bw
	bw      *bufio.Writer
	writers atomic.Int32 // callers between wanting to write and having written
	slots   []slot
	free    chan uint32 // indexes of free slots

	closeOnce sync.Once
	closed    chan struct{}
	err       error // why it closed; set before closed is closed
}

// slot states.
const (
	slotFree      = iota
	slotWaiting   // the request is out; the caller waits
	slotReceiving // the reader is reading the answer into the caller's buffer
	slotDone      // the answer (or the connection's failure) is in
	slotAbandoned // the caller gave up; the connection is failing
)

// slot is one call in flight. done carries one signal per call; the timer
// bounds the wait. Both are made once per connection, so a call
// allocates nothing.
type slot struct {
	head     [requestHead]byte // the request's head: here, not on a stack it would escape from
	state    atomic.Int32
	buf      *[]byte // the caller's, for the answer's entry
	status   byte
	ownerNow int64
	err      error
	done     chan struct{}
	timer    *time.Timer
}

func (c *framesConn) failed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// call sends one lookup and waits for its answer.
func (c *framesConn) call(ctx context.Context, key []byte, maxEntry int64, buf *[]byte, timeout time.Duration) (byte, int64, error) {
	var idx uint32
	select {
	case idx = <-c.free:
	case <-c.closed:
		return 0, 0, c.err
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	s := &c.slots[idx]
	s.buf, s.err = buf, nil
	s.state.Store(slotWaiting)

	head := s.head[:]
	binary.BigEndian.PutUint32(head[0:4], uint32(requestHead-4+len(key)))
	binary.BigEndian.PutUint32(head[4:8], idx)
	head[8] = opGet
	binary.BigEndian.PutUint32(head[9:13], uint32(maxEntry))
	// Callers writing at the same time share one flush: the last of them
	// flushes what all wrote.
	c.writers.Add(1)
	c.wmu.Lock()
	_, err := c.bw.Write(head)
	if err == nil {
		_, err = c.bw.Write(key)
	}
	if c.writers.Add(-1) == 0 && err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("send lookup: %w", err))
	}

	s.timer.Reset(timeout)
	select {
	case <-s.done:
	case <-ctx.Done():
		c.abandon(s, ctx.Err())
	case <-s.timer.C:
		c.abandon(s, errFramesTimeout)
	}
	s.timer.Stop()
	if s.state.Load() == slotAbandoned {
		return 0, 0, s.err // the slot stays taken: its connection is closing
	}
	status, now, err := s.status, s.ownerNow, s.err
	s.buf = nil
	s.state.Store(slotFree)
	c.free <- idx
	return status, now, err
}

// abandon gives up a call whose answer has not started to arrive, failing
// the connection: a peer that let it wait this long may never answer, and
// calls behind it would wait as long. If the answer is already being
// read, it waits for it: the read is bounded by a deadline.
func (c *framesConn) abandon(s *slot, why error) {
	if s.state.CompareAndSwap(slotWaiting, slotAbandoned) {
		s.err = why
		c.fail(why)
		return
	}
	<-s.done
}

// fail closes the connection and ends every call waiting on it.
func (c *framesConn) fail(err error) {
	c.closeOnce.Do(func() {
		c.err = err
		close(c.closed)
		_ = c.c.Close()
		for i := range c.slots {
			s := &c.slots[i]
			if s.state.CompareAndSwap(slotWaiting, slotDone) {
				s.err = err
				s.done <- struct{}{}
			}
		}
	})
}

// read delivers answers to their slots until the connection fails.
func (c *framesConn) read(br *bufio.Reader, timeout time.Duration) {
	var head [responseHead]byte
	for {
		if _, err := io.ReadFull(br, head[:4]); err != nil {
			c.fail(fmt.Errorf("read lookup answer: %w", err))
			return
		}
		if br.Buffered() < responseHead-4 {
			_ = c.c.SetReadDeadline(time.Now().Add(timeout))
			_, err := io.ReadFull(br, head[4:])
			_ = c.c.SetReadDeadline(time.Time{})
			if err != nil {
				c.fail(fmt.Errorf("read lookup answer: %w", err))
				return
			}
		} else if _, err := io.ReadFull(br, head[4:]); err != nil {
			c.fail(fmt.Errorf("read lookup answer: %w", err))
			return
		}
		n := int64(binary.BigEndian.Uint32(head[0:4]))
		id := binary.BigEndian.Uint32(head[4:8])
		size := n - (responseHead - 4)
		if id >= uint32(len(c.slots)) || size < 0 {
			c.fail(fmt.Errorf("lookup answer for slot %d of %d bytes: %w", id, size, cache.ErrMalformed))
			return
		}
		s := &c.slots[id]
		if !s.state.CompareAndSwap(slotWaiting, slotReceiving) {
			c.fail(fmt.Errorf("lookup answer for slot %d, which waits for none: %w", id, cache.ErrMalformed))
			return
		}
		s.status, s.ownerNow = head[8], int64(binary.BigEndian.Uint64(head[9:17]))
		*s.buf = grow(*s.buf, int(size))
		var err error
		if int64(br.Buffered()) < size {
			_ = c.c.SetReadDeadline(time.Now().Add(timeout))
			_, err = io.ReadFull(br, *s.buf)
			_ = c.c.SetReadDeadline(time.Time{})
		} else {
			_, err = io.ReadFull(br, *s.buf)
		}
		if err != nil {
			s.err = fmt.Errorf("read lookup answer: %w", err)
		}
		s.state.Store(slotDone)
		s.done <- struct{}{}
		if err != nil {
			c.fail(err)
			return
		}
	}
}
