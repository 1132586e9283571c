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
// (syscall.RawConn), exactly as for net.Conn. Linux only: elsewhere
// connections are left as they are.
package rawio

import "net"

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
