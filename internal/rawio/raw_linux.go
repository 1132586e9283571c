package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a TCP connection whose Read and Write are raw system calls.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
	// Each direction keeps its buffer, result and callback here, made once
	// in Wrap: a closure made per call would escape into RawConn and cost
	// an allocation on every read and write. The mutexes make concurrent
	// calls in one direction take turns, as the descriptor's own locks do.
	rmu     sync.Mutex
	r       op
	readFn  func(uintptr) bool
	wmu     sync.Mutex
	w       op
	writeFn func(uintptr) bool
}

// op is one call's state: the bytes to move, how many moved, and the
// error that ended it.
type op struct {
	p     []byte
	n     int
	errno syscall.Errno
}

// Wrap returns c with raw reads and writes when it is a TCP connection,
// else c itself.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &Conn{TCPConn: tc, rc: rc}
	rw.readFn, rw.writeFn = rw.read, rw.write
	return rw
}

// Read reads up to len(p) bytes, waiting in the poller while none are
// ready.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.r = op{p: p}
	err := c.rc.Read(c.readFn)
	n, errno := c.r.n, c.r.errno
	c.r.p = nil // do not keep the caller's buffer
	if err != nil {
		return 0, c.opError("read", err)
	}
	if errno != 0 {
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// read is the poller's callback for Read: false to wait for readiness.
func (c *Conn) read(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.r.p[0])), uintptr(len(c.r.p)))
		switch e {
		case 0:
			c.r.n = int(r)
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.r.errno = e
			return true
		}
	}
}

// Write writes all of p, waiting in the poller while the socket buffer is
// full.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.w = op{p: p}
	err := c.rc.Write(c.writeFn)
	written, errno := c.w.n, c.w.errno
	c.w.p = nil
	if err != nil {
		return written, c.opError("write", err)
	}
	if errno != 0 {
		return written, c.opError("write", os.NewSyscallError("write", errno))
	}
	return written, nil
}

// write is the poller's callback for Write: false to wait until the socket
// takes more.
func (c *Conn) write(fd uintptr) bool {
	for c.w.n < len(c.w.p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&c.w.p[c.w.n])), uintptr(len(c.w.p)-c.w.n))
		switch e {
		case 0:
			c.w.n += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.w.errno = e
			return true
		}
	}
	return true
}

// opError shapes err as net.Conn methods do, so that callers' checks
// (net.Error's Timeout, errors.Is with os.ErrDeadlineExceeded or
// net.ErrClosed) see what they would see from the TCPConn.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
