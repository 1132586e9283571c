package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ringcache/ringcache/cache"
	"github.com/ringcache/ringcache/internal/testutil"
)

// TestGetConcurrent: many lookups in flight on one connection at once each
// get their own answer (ids route them), under the race detector too.
func TestGetConcurrent(t *testing.T) {
	nodes, r := startTestCluster(t, testutil.NewClock(), "a", "b")
	var keys [][]byte
	for i := range 200 {
		k := []byte(fmt.Sprintf("example.com/c/%d", i))
		if o, _ := r.Owner(k); o.Name != "b" {
			continue
		}
		nodes[1].local.st.Set(testEntry(string(k), 100+i, 0))
		keys = append(keys, k)
	}
	p, _ := nodes[0].peers.Owner(keys[0])
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			var f cache.Fetched
			for i := w; i < 20*len(keys); i += 16 {
				k := keys[i%len(keys)]
				found, err := p.Get(context.Background(), k, &f)
				if err != nil || !found || !bytes.Equal(f.Entry.Key(), k) {
					errs <- fmt.Errorf("Get(%s) = %v, %v, key %q", k, found, err, f.Entry.Key())
					return
				}
				f.Release()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := nodes[1].ps.Stats().LookupHits; n != uint64(20*len(keys)) {
		t.Fatalf("%d hits served, want %d", n, 20*len(keys))
	}
}

// TestGetRebasesTime: an entry stamped on an owner whose clock runs an hour
// ahead is read on the asker's clock.
func TestGetRebasesTime(t *testing.T) {
	clock := testutil.NewClock()
	nodes, r := startTestCluster(t, clock, "a", "b")
	nodes[1].ps.now = func() int64 { return clock.UnixNano() + int64(time.Hour) } // before any lookup
	key := keyOwnedBy(t, r, "b")
	e := testEntry(string(key), 10, 0)
	// Times the test store (on the real clock) keeps: what matters is
	// where they land on the asker's clock.
	e.ResponseTime, e.Expires = time.Now().UnixNano(), time.Now().Add(48*time.Hour).UnixNano()
	nodes[1].local.st.Set(e)
	p, _ := nodes[0].peers.Owner(key)
	var f cache.Fetched
	if found, err := p.Get(context.Background(), key, &f); !found || err != nil {
		t.Fatalf("Get = %v, %v", found, err)
	}
	if got, want := f.Entry.ResponseTime, e.ResponseTime-int64(time.Hour); got != want {
		t.Fatalf("ResponseTime moved by %v, want -1h", time.Duration(got-e.ResponseTime))
	}
	if got, want := f.Entry.Expires, e.Expires-int64(time.Hour); got != want {
		t.Fatalf("Expires moved by %v, want -1h", time.Duration(got-e.Expires))
	}
}

// silentPeer accepts members' lookup connections and, per connection,
// writes answer (may be a partial frame, or nothing) and then stalls, as a
// paused or wedged owner does.
func silentPeer(t *testing.T, answer []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(ln, testTLS().Server)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				buf := make([]byte, 512)
				if _, err := c.Read(buf); err == nil { // the request arrived
					_, _ = c.Write(answer)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		tl.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// TestGetStalledPeer: an owner that answers nothing, or half a frame, makes
// Get fail within the peer timeout, not hang, and pauses the peer.
func TestGetStalledPeer(t *testing.T) {
	for name, answer := range map[string][]byte{
		"silent":       nil,
		"half a frame": {0, 0, 0, 40, 0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			addr := silentPeer(t, answer)
			ps := NewPeerSet(PeerOptions{Self: "a", Signer: mustSigner(t, "a", testSecret), TLS: testTLS().Client,
				Timeout: 300 * time.Millisecond, IdleConnTimeout: 50 * time.Millisecond, Clock: testutil.NewClock().Now})
			defer ps.Close()
			r := newTestRing(t, Node{Name: "a", Addr: "127.0.0.1:1"}, Node{Name: "x", Addr: addr})
			ps.Update(nil, r)
			key := keyOwnedBy(t, r, "x")
			p, _ := ps.Owner(key)
			var f cache.Fetched
			start := time.Now()
			found, err := p.Get(context.Background(), key, &f)
			if err == nil || found {
				t.Fatalf("Get on a stalled peer = %v, %v", found, err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("Get took %v against a 300ms timeout", d)
			}
			if _, ok := ps.Owner(key); ok {
				t.Fatal("a stalled peer was not paused")
			}
		})
	}
}

// TestGetAllocs: the exchange allocates nothing on either side (both run
// in this process, and AllocsPerRun counts them all). It runs on a pipe:
// over TLS, Go's crypto/tls allocates one small reader per record it reads
// (atLeastReader in readFromUntil), so one per read call on each side —
// under load a read carries many frames.
func TestGetAllocs(t *testing.T) {
	if peerRaceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	local := newStoreLocal()
	key := []byte("example.com/allocs")
	local.st.Set(testEntry(string(key), 1024, 0))
	s := NewPeerServer(local, mustSigner(t, "b", testSecret), PeerServerOptions{})
	asker, owner := net.Pipe()
	served := make(chan struct{})
	go func() { defer close(served); s.serveFramesConn(owner) }()
	c := newFramesConn(asker, peerTestTimeout)
	defer func() { c.fail(errFramesClosed); <-served }()
	var f cache.Fetched
	var arg [4]byte
	binary.BigEndian.PutUint32(arg[:], 1<<20)
	get := func() {
		cl, err := c.send(context.Background(), opGet, arg[:], key)
		if err == nil {
			err = cl.wait(context.Background(), peerTestTimeout)
		}
		if err != nil || cl.status != statusFound {
			t.Fatalf("get = %v", err)
		}
		if err := cache.DecodeEntryInto(&f.Entry, cl.buf); err != nil {
			t.Fatal(err)
		}
		cl.Release()
	}
	get() // grow the buffers
	if n := testing.AllocsPerRun(200, get); n != 0 {
		t.Fatalf("a lookup allocates %.1f times, want 0", n)
	}
}
