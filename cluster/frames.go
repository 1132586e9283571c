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
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/internal/rawio"
)

// FramesALPN is the TLS application protocol of the members' frame
// exchange: lookups (a member asks a key's holder for the entry and, when
// it is there, serves the request itself through its own hit path) and
// replica copies. A forwarded hit then costs a small frame each way on a
// connection that stays open with many calls in flight, instead of a
// second HTTP exchange; writes are batched (memcached's pipelined gets):
// the server answers everything it has read and flushes once, and callers
// writing together share one flush.
//
// Frames, big-endian, on a connection whose mutual TLS made both ends
// members (n counts what follows it):
//
//	request:  u32 n | u32 id | u8 op | payload
//	response: u32 n | u32 id | u8 status | i64 sender-now | payload
//
//	opGet  payload: u32 max-entry | key         answer: statusFound + entry, or statusMissing/statusTooLarge
//	opPut  payload: i64 sender-now | entries    answer: statusOK + u32 accepted | u32 rejected
//
// max-entry is the largest encoded entry the asker takes; a larger one is
// answered statusTooLarge and the asker forwards the request instead (the
// owner then streams it). Entries in a put are uvarint-length-prefixed
// encodings. sender-now is the sender's clock (unix nanoseconds), so the
// receiver reads entries' times on its own clock. An id is the asker's
// slot for the call; answers come in any order.
const FramesALPN = "ringcache-frames/1"

const (
	opGet = 1
	opPut = 2

	statusFound    = 0 // an entry follows
	statusMissing  = 1 // nothing stored under the key (or only a pass marker)
	statusTooLarge = 2 // stored, but over the asker's max-entry
	statusBad      = 3 // the request made no sense
	statusOK       = 4 // a put was applied; counts follow

	requestHead  = 4 + 4 + 1     // n, id, op
	responseHead = 4 + 4 + 1 + 8 // n, id, status, sender-now

	// maxKeyBytes bounds a key in a lookup: a cache key is a host, path and
	// query, far below it.
	maxKeyBytes = 64 << 10
	// framesSlots is how many calls one connection carries at once; a
	// caller beyond it waits for a slot.
	framesSlots = 1024
	// framesBuffer sizes each connection's read and write buffers: many
	// frames per system call under load. A slot keeps an answer buffer up
	// to this size from call to call.
	framesBuffer = 64 << 10
	// framesRedial paces redialling a peer that refused the exchange (a
	// member of another release) or could not be reached.
	framesRedial = time.Second
	// dialGrace is how long from its start a dial keeps hedged callers
	// (lookups with another holder to ask) waiting: a handshake on a LAN
	// takes milliseconds, and one that has not completed by then is most
	// likely to a peer that accepts connections but does not run (a
	// paused process), which would hold them for the whole timeout.
	dialGrace = 100 * time.Millisecond
)

var (
	// errFramesClosed: the connection ended; the call's fate is unknown.
	errFramesClosed = errors.New("peer connection closed")
	// errFramesTimeout: the peer did not answer in time; the connection
	// is dropped, since a stalled peer may stall everything behind it.
	errFramesTimeout = errors.New("peer did not answer in time")
	// errFramesDown: the peer was unreachable or refused the exchange
	// recently, so no dial was tried.
	errFramesDown = errors.New("peer exchange unavailable")
	// errFramesDialing: a hedged caller did not wait for the dial in
	// flight, which goes on without it. Not the peer's failure (yet).
	errFramesDialing = errors.New("peer exchange still connecting")
)

// --- the server's side ---

// ServeFrames answers frames on the connections ln accepts (the FramesALPN
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
		head    [requestHead]byte
		payload []byte
		out     = make([]byte, responseHead, framesBuffer) // the answer: its head, then its payload
	)
	// The largest request: a put batch, or one entry larger than a batch.
	maxPayload := max(HandoffBatchBytes, s.maxEntry) + 1<<20
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
		size := int64(binary.BigEndian.Uint32(head[0:4])) - (requestHead - 4)
		id := binary.BigEndian.Uint32(head[4:8])
		op := head[8]
		if size < 0 || size > maxPayload || (op != opGet && op != opPut) {
			s.malformed.Add(1)
			s.answer(bw, id, statusBad, out[:responseHead])
			_ = bw.Flush()
			return // the framing may be lost: end the connection
		}
		if int64(br.Buffered()) < size && !deadline {
			_ = c.SetReadDeadline(time.Now().Add(s.timeout))
			deadline = true
		}
		payload = grow(payload, int(size))
		if _, err := io.ReadFull(br, payload); err != nil {
			return
		}
		if deadline {
			_ = c.SetReadDeadline(time.Time{})
			deadline = false
		}
		var status byte
		switch op {
		case opGet:
			status, out = s.get(payload, out[:responseHead])
		case opPut:
			status, out = s.put(payload, out[:responseHead])
		}
		s.answer(bw, id, status, out)
		if status == statusBad {
			_ = bw.Flush()
			return
		}
		if cap(out) > framesBuffer {
			out = make([]byte, responseHead, framesBuffer) // do not keep a freak entry's buffer
		}
		if cap(payload) > framesBuffer {
			payload = nil
		}
	}
}

// get answers a lookup, appending the entry (if any) to out.
func (s *PeerServer) get(payload, out []byte) (byte, []byte) {
	if len(payload) <= 4 || len(payload)-4 > maxKeyBytes {
		s.malformed.Add(1)
		return statusBad, out
	}
	maxEntry := int(binary.BigEndian.Uint32(payload[:4]))
	s.lookups.Add(1)
	e, ok := s.local.Get(payload[4:])
	switch {
	case !ok:
		return statusMissing, out
	case e.EncodedSize() > maxEntry:
		return statusTooLarge, out
	}
	s.hits.Add(1)
	return statusFound, e.AppendBinary(out)
}

// put takes the copies of a batch, as a handoff batch's: each is kept
// unless this node holds a newer one, or an invalidation came after it was
// fetched (Local.Accept).
func (s *PeerServer) put(payload, out []byte) (byte, []byte) {
	if len(payload) < 8 {
		s.malformed.Add(1)
		return statusBad, out
	}
	skew := s.now() - int64(binary.BigEndian.Uint64(payload[:8]))
	accepted, rejected, malformed := s.accept(payload[8:], skew)
	s.replicasIn.Add(accepted)
	var counts [8]byte
	binary.BigEndian.PutUint32(counts[0:4], uint32(accepted))
	binary.BigEndian.PutUint32(counts[4:8], uint32(rejected+malformed))
	return statusOK, append(out, counts[:]...)
}

// answer writes one response frame: frame holds room for the head, then
// the payload if any.
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

// framesClient is one peer's end of the exchange: one connection, dialled
// on first use and again after it fails.
type framesClient struct {
	addr     string
	tls      *tls.Config // the peer client config, offering FramesALPN only
	timeout  time.Duration
	maxEntry int64

	mu         sync.Mutex
	conn       *framesConn
	dialing    chan struct{}      // closed when the dial in flight ends; nil: none
	dialStart  time.Time          // when the dial in flight started
	cancelDial context.CancelFunc // the dial in flight's
	dialErr    error              // why the last dial failed
	downTill   time.Time          // no dial before: the last one failed
	closed     bool               // the peer left, or its set was closed: no more dials
}

func newFramesClient(addr string, peerTLS *tls.Config, timeout time.Duration, maxEntry int64) *framesClient {
	cfg := peerTLS.Clone()
	cfg.NextProtos = []string{FramesALPN}
	return &framesClient{addr: addr, tls: cfg, timeout: timeout, maxEntry: min(maxEntry, 1<<32-1)}
}

// startGet sends a lookup of key, taking entries of at most maxEntry
// encoded bytes (<= 0: the client's limit), and returns its call. A
// hedged lookup (see connect) does not wait long for a dial.
func (f *framesClient) startGet(ctx context.Context, key []byte, maxEntry int64, hedged bool) (*call, error) {
	if len(key) == 0 || len(key) > maxKeyBytes {
		return nil, fmt.Errorf("lookup key of %d bytes", len(key))
	}
	c, err := f.connect(ctx, hedged)
	if err != nil {
		return nil, err
	}
	if maxEntry <= 0 || maxEntry > f.maxEntry {
		maxEntry = f.maxEntry
	}
	var arg [4]byte
	binary.BigEndian.PutUint32(arg[:], uint32(maxEntry))
	return c.send(ctx, opGet, arg[:], key)
}

// put sends a batch of encoded entries and waits for the counts.
func (f *framesClient) put(ctx context.Context, now int64, batch []byte) (accepted, rejected int, err error) {
	c, err := f.connect(ctx, false)
	if err != nil {
		return 0, 0, err
	}
	var arg [8]byte
	binary.BigEndian.PutUint64(arg[:], uint64(now))
	cl, err := c.send(ctx, opPut, arg[:], batch)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Release()
	if err := cl.wait(ctx, f.timeout); err != nil {
		return 0, 0, err
	}
	if cl.status != statusOK || len(cl.buf) != 8 {
		return 0, 0, fmt.Errorf("peer answered a put with status %d", cl.status)
	}
	return int(binary.BigEndian.Uint32(cl.buf[0:4])), int(binary.BigEndian.Uint32(cl.buf[4:8])), nil
}

// connect returns the open connection, dialling one if there is none. One
// dial runs at a time, in the background, and callers wait for it until
// ctx ends. A hedged caller, which has another holder to ask, waits only
// while the dial is younger than dialGrace (errFramesDialing), so that it
// does not wait on a peer that accepts connections but never completes a
// handshake (a paused process) for the whole timeout.
func (f *framesClient) connect(ctx context.Context, hedged bool) (*framesConn, error) {
	f.mu.Lock()
	if c := f.conn; c != nil && !c.failed() {
		f.mu.Unlock()
		return c, nil
	}
	f.conn = nil
	if f.closed {
		f.mu.Unlock()
		return nil, errFramesClosed
	}
	done := f.dialing
	if done == nil {
		if time.Now().Before(f.downTill) {
			f.mu.Unlock()
			return nil, errFramesDown
		}
		done = f.dialLocked()
	}
	var giveUp <-chan time.Time
	if hedged {
		left := time.Until(f.dialStart.Add(dialGrace))
		if left <= 0 {
			f.mu.Unlock()
			return nil, errFramesDialing
		}
		t := time.NewTimer(left) // dials are rare: this allocation is not per lookup
		defer t.Stop()
		giveUp = t.C
	}
	f.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-giveUp:
		return nil, errFramesDialing
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.conn != nil:
		return f.conn, nil
	case f.closed:
		return nil, errFramesClosed
	case f.dialErr != nil:
		return nil, f.dialErr
	}
	return nil, errFramesDown
}

// dialDone returns the channel closed when the dial in flight ends, nil
// when none is.
func (f *framesClient) dialDone() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dialing
}

// prime starts dialling the connection, if none is open or being dialled,
// and returns without waiting.
func (f *framesClient) prime() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if (f.conn != nil && !f.conn.failed()) || f.dialing != nil || f.closed || time.Now().Before(f.downTill) {
		return
	}
	f.dialLocked()
}

// dialLocked starts a dial and returns the channel closed when it ends.
// f.mu must be held and no dial in flight.
func (f *framesClient) dialLocked() chan struct{} {
	done := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	f.dialing, f.cancelDial, f.dialStart = done, cancel, time.Now()
	go func() {
		c, err := dialFrames(ctx, f.addr, f.tls, f.timeout)
		cancel()
		f.mu.Lock()
		f.dialing, f.cancelDial, f.dialErr = nil, nil, err
		switch {
		case err != nil:
			f.downTill = time.Now().Add(framesRedial)
		case f.closed:
			c.fail(errFramesClosed)
		default:
			f.conn = c
		}
		f.mu.Unlock()
		close(done)
	}()
	return done
}

// close closes the connection, if any, for good, and stops a dial in
// flight; calls in flight fail.
func (f *framesClient) close() {
	f.mu.Lock()
	c := f.conn
	f.conn, f.closed = nil, true
	if f.cancelDial != nil {
		f.cancelDial()
	}
	f.mu.Unlock()
	if c != nil {
		c.fail(errFramesClosed)
	}
}

func dialFrames(ctx context.Context, addr string, cfg *tls.Config, timeout time.Duration) (*framesConn, error) {
	if timeout > 0 { // for the connection and the handshake, as tls.Dialer's
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial frames at %s: %w", addr, err)
	}
	// Lookups are small and many: raw reads and writes (see rawio).
	tc := tls.Client(rawio.Wrap(nc), cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("dial frames at %s: %w", addr, err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != FramesALPN {
		_ = tc.Close()
		return nil, fmt.Errorf("dial frames at %s: the peer does not speak %s (it agreed on %q)", addr, FramesALPN, p)
	}
	return newFramesConn(tc, timeout), nil
}

// newFramesConn starts the asker's end of the exchange on nc, whose peer
// is authenticated.
func newFramesConn(nc net.Conn, timeout time.Duration) *framesConn {
	c := &framesConn{nc: nc, timeout: timeout, bw: bufio.NewWriterSize(nc, framesBuffer), closed: make(chan struct{}), tokens: make(chan struct{}, framesSlots)}
	c.calls = make([]call, framesSlots)
	c.free = make([]uint32, 0, framesSlots)
	for i := range c.calls {
		cl := &c.calls[i]
		cl.conn, cl.idx = c, uint32(i)
		cl.done = make(chan struct{}, 1)
		cl.timer = time.NewTimer(time.Hour)
		cl.timer.Stop()
		c.free = append(c.free, uint32(framesSlots-1-i))
		c.tokens <- struct{}{}
	}
	c.flush = make(chan struct{}, 1)
	go c.read(bufio.NewReaderSize(nc, framesBuffer))
	go c.flusher()
	return c
}

// flusher writes out what callers buffered. It yields once before each
// flush so that callers already runnable (requests that arrived together)
// write their frames first: one TLS record and one system call then carry
// them all, where a flush per caller would cost one each — with
// GOMAXPROCS=1 no two callers ever overlap, so nothing else would batch.
func (c *framesConn) flusher() {
	for {
		select {
		case <-c.flush:
		case <-c.closed:
			return
		}
		runtime.Gosched()
		c.wmu.Lock()
		c.flushQueued = false
		err := c.bw.Flush()
		c.wmu.Unlock()
		if err != nil {
			c.fail(fmt.Errorf("send: %w", err))
			return
		}
	}
}

// framesConn is one connection with up to framesSlots calls in flight.
type framesConn struct {
	nc      net.Conn
	timeout time.Duration
	wmu     sync.Mutex // guards bw and flushQueued
	bw      *bufio.Writer
	// flushQueued: the flusher was signalled and has not flushed yet, so
	// a frame written now goes out with that flush.
	flushQueued bool
	flush       chan struct{}
	calls       []call
	// A caller takes a token, then the most recently freed call: the
	// same few calls, whose answer buffers have grown, serve a steady load.
	tokens chan struct{}
	freeMu sync.Mutex
	free   []uint32 // a stack of free calls' indexes

	closeOnce sync.Once
	closed    chan struct{}
	err       error // why it closed; set before closed is closed
}

// call states.
const (
	callFree      = iota
	callWaiting   // the request is out; the caller waits
	callReceiving // the reader is reading the answer into the call's buffer
	callDone      // the answer (or the connection's failure) is in
	callOrphaned  // the caller no longer wants the answer: the reader frees the call
	callAbandoned // the caller gave up; the connection is failing
)

// call is one request in flight and, once answered, its answer: the status,
// the sender's clock and the payload in buf, the call's own buffer, reused
// from call to call. done carries one signal per call; the timer bounds
// the wait. All of it is made once per connection, so a call allocates
// nothing.
type call struct {
	conn   *framesConn
	idx    uint32
	head   [requestHead]byte // here, not on a stack it would escape from
	state  atomic.Int32
	status byte
	now    int64
	buf    []byte
	err    error
	done   chan struct{}
	timer  *time.Timer
	sent   time.Time // when the request went out, for the peer's latency
	// While orphaned: late is told how long an answer that came within
	// grace took (the peer was slower than the other, not down).
	late  func(time.Duration)
	grace time.Duration
}

func (c *framesConn) failed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// send writes one request, payload a then b, and returns its call, which
// the caller must wait for (or orphan) and then Release.
func (c *framesConn) send(ctx context.Context, op byte, a, b []byte) (*call, error) {
	select {
	case <-c.tokens:
	case <-c.closed:
		return nil, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.freeMu.Lock()
	idx := c.free[len(c.free)-1]
	c.free = c.free[:len(c.free)-1]
	c.freeMu.Unlock()
	cl := &c.calls[idx]
	cl.err, cl.sent = nil, time.Now()
	cl.state.Store(callWaiting)
	binary.BigEndian.PutUint32(cl.head[0:4], uint32(requestHead-4+len(a)+len(b)))
	binary.BigEndian.PutUint32(cl.head[4:8], idx)
	cl.head[8] = op
	// The flusher sends it, with whatever other callers write meanwhile.
	c.wmu.Lock()
	_, err := c.bw.Write(cl.head[:])
	if err == nil {
		_, err = c.bw.Write(a)
	}
	if err == nil {
		_, err = c.bw.Write(b)
	}
	if err == nil && !c.flushQueued {
		c.flushQueued = true
		c.flush <- struct{}{} // never blocks: queued only when the flusher took the last signal
	}
	c.wmu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("send: %w", err))
	}
	return cl, nil
}

// wait waits for the answer within timeout. On timeout (or ctx's end) the
// call is abandoned and the connection failed: a peer that let it wait
// this long may never answer, and calls behind it would wait as long.
func (cl *call) wait(ctx context.Context, timeout time.Duration) error {
	cl.timer.Reset(timeout)
	select {
	case <-cl.done:
	case <-ctx.Done():
		cl.abandon(ctx.Err())
	case <-cl.timer.C:
		cl.abandon(errFramesTimeout)
	}
	cl.timer.Stop()
	return cl.err
}

// abandon gives up a call whose answer has not started to arrive, failing
// the connection. If the answer is already being read, it waits for it:
// the read is bounded by a deadline.
func (cl *call) abandon(why error) {
	if cl.state.CompareAndSwap(callWaiting, callAbandoned) {
		cl.err = why
		cl.conn.fail(why)
		return
	}
	<-cl.done
}

// orphan gives up a call its caller no longer needs (another member's
// answer came first): the reader frees it when its answer comes, and tells
// late (if not nil) how long an answer that came within grace took, so
// that the peer's observed latency counts its slow answers too. If none
// comes within grace, stalled is called (the caller pauses the peer: it
// is not just slower than the other, it is not answering); if none comes
// within the connection's timeout, the connection is failed.
func (cl *call) orphan(grace time.Duration, stalled func(), late func(time.Duration)) {
	grace = min(grace, cl.conn.timeout)
	cl.late, cl.grace = late, grace // before the state says orphaned: the reader reads them after
	if cl.state.CompareAndSwap(callWaiting, callOrphaned) {
		time.AfterFunc(grace, func() {
			if cl.state.Load() != callOrphaned {
				return // answered
			}
			if stalled != nil {
				stalled()
			}
			time.AfterFunc(cl.conn.timeout-grace, func() {
				if cl.state.CompareAndSwap(callOrphaned, callAbandoned) {
					cl.conn.fail(errFramesTimeout)
				}
			})
		})
		return
	}
	<-cl.done // answered meanwhile (or being read): free it now
	if late != nil && cl.err == nil {
		late(time.Since(cl.sent))
	}
	cl.Release()
}

// Release gives the call back once its answer was used; whatever borrowed
// its buffer must not be used after it.
func (cl *call) Release() {
	if cl.state.Load() == callAbandoned {
		return // its connection is closing; the call is never reused
	}
	if cap(cl.buf) > framesBuffer {
		cl.buf = nil // do not keep a freak answer's buffer
	}
	cl.late = nil
	cl.state.Store(callFree)
	c := cl.conn
	c.freeMu.Lock()
	c.free = append(c.free, cl.idx)
	c.freeMu.Unlock()
	c.tokens <- struct{}{}
}

// fail closes the connection and ends every call waiting on it.
func (c *framesConn) fail(err error) {
	c.closeOnce.Do(func() {
		c.err = err
		close(c.closed)
		_ = c.nc.Close()
		for i := range c.calls {
			cl := &c.calls[i]
			if cl.state.CompareAndSwap(callWaiting, callDone) {
				cl.err = err
				cl.done <- struct{}{}
			}
		}
	})
}

// read delivers answers to their calls until the connection fails.
func (c *framesConn) read(br *bufio.Reader) {
	var head [responseHead]byte
	for {
		if _, err := io.ReadFull(br, head[:4]); err != nil {
			c.fail(fmt.Errorf("read answer: %w", err))
			return
		}
		if br.Buffered() < responseHead-4 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.timeout))
			_, err := io.ReadFull(br, head[4:])
			_ = c.nc.SetReadDeadline(time.Time{})
			if err != nil {
				c.fail(fmt.Errorf("read answer: %w", err))
				return
			}
		} else if _, err := io.ReadFull(br, head[4:]); err != nil {
			c.fail(fmt.Errorf("read answer: %w", err))
			return
		}
		size := int64(binary.BigEndian.Uint32(head[0:4])) - (responseHead - 4)
		id := binary.BigEndian.Uint32(head[4:8])
		if id >= uint32(len(c.calls)) || size < 0 {
			c.fail(fmt.Errorf("answer for call %d of %d bytes: %w", id, size, cache.ErrMalformed))
			return
		}
		cl := &c.calls[id]
		orphaned := false
		if !cl.state.CompareAndSwap(callWaiting, callReceiving) {
			if !cl.state.CompareAndSwap(callOrphaned, callReceiving) {
				c.fail(fmt.Errorf("answer for call %d, which waits for none: %w", id, cache.ErrMalformed))
				return
			}
			orphaned = true
		}
		cl.status, cl.now = head[8], int64(binary.BigEndian.Uint64(head[9:17]))
		cl.buf = grow(cl.buf, int(size))
		var err error
		if int64(br.Buffered()) < size {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.timeout))
			_, err = io.ReadFull(br, cl.buf)
			_ = c.nc.SetReadDeadline(time.Time{})
		} else {
			_, err = io.ReadFull(br, cl.buf)
		}
		if err != nil {
			cl.err = fmt.Errorf("read answer: %w", err)
		}
		if orphaned {
			late, d := cl.late, time.Since(cl.sent)
			if err != nil || d > cl.grace {
				late = nil // failed, or counted as a stall
			}
			cl.state.Store(callDone)
			cl.Release()
			if late != nil {
				late(d)
			}
		} else {
			cl.state.Store(callDone)
			cl.done <- struct{}{}
		}
		if err != nil {
			c.fail(err)
			return
		}
	}
}
