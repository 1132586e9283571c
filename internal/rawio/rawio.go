// Package rawio reads and writes TCP sockets without telling the Go
// scheduler that a system call is under way.
//
// Go's net package brackets every read and write with entersyscall and
// exitsyscall. On a non-blocking socket the call never blocks, but the
// bracket is not free: the first one after the process was idle wakes the
// runtime's monitor thread (sysmon), which then polls every 20 µs while the
// process works, and a write that stays in the kernel for longer than one
// of those polls (loopback delivery runs the receiver's TCP stack in the
// writer's call) has its P handed to another thread. A cache member that
// answers peer lookups wakes up for a few microseconds of work at a time,
// so on a busy machine that overhead was half of its CPU. Raw calls skip
// it; waiting for readiness and deadlines stay with the runtime poller
// (syscall.RawConn), exactly as for net.Conn.
package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn is a TCP connection whose Read and Write are raw system calls.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
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
	return &Conn{TCPConn: tc, rc: rc}
}

// Read reads up to len(p) bytes, waiting in the poller while none are
// ready.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case 0:
				n = int(r)
				return true
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
	})
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

// Write writes all of p, waiting in the poller while the socket buffer is
// full.
func (c *Conn) Write(p []byte) (int, error) {
	written := 0
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for written < len(p) {
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[written])), uintptr(len(p)-written))
			switch e {
			case 0:
				written += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if err != nil {
		return written, c.opError("write", err)
	}
	if errno != 0 {
		return written, c.opError("write", os.NewSyscallError("write", errno))
	}
	return written, nil
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

// Listener accepts connections with raw reads and writes.
type Listener struct{ net.Listener }

// Accept waits for the next connection and wraps it.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
