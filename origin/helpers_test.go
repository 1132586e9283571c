package origin

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringcache/ringcache/internal/testutil"

	"github.com/ringcache/ringcache/origin/demo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.FasthttpHousekeeping()...) }

// testNow is the pinned time the demo origin runs at in tests.
var testNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// flakyListener closes accepted connections while broken, which the client
// sees as a transport failure, and counts accepts.
type flakyListener struct {
	net.Listener
	broken   atomic.Bool
	accepted atomic.Int64
}

func (l *flakyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.accepted.Add(1)
		if !l.broken.Load() {
			return c, nil
		}
		_ = c.Close()
	}
}

// startServer runs a demo origin on a fresh 127.0.0.1 port with the pinned
// clock and shuts it down when the test ends.
func startServer(t testing.TB) (*demo.Server, *flakyListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln}
	s := demo.New(demo.Options{Clock: func() time.Time { return testNow }})
	testutil.Serve(t, fl, s.Serve, s.Shutdown)
	return s, fl
}

// freeAddr returns a 127.0.0.1 address nothing listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
	return addr
}
