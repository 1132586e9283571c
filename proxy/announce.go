package proxy

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/ringcache/ringcache/cache"
)

// Invalidations made on this node reach the other members in batches: one
// broadcast per batch, not one per unsafe request.
const (
	announceDelay   = 5 * time.Millisecond // how long a batch collects
	announceMax     = 4096                 // keys waiting; more are dropped
	announceTimeout = 5 * time.Second      // per broadcast
)

// announcer queues primary keys invalidated here for the other members.
type announcer struct {
	mu      sync.Mutex
	keys    [][]byte
	sending bool // a sender goroutine is running
}

// announce queues key for the other members. Past announceMax waiting keys
// it drops the key and counts it: the copies elsewhere then live out their
// hot TTL, as they would without the announcement.
func (p *Proxy) announce(key []byte) {
	if p.opt.Peers == nil {
		return
	}
	a := &p.announced
	a.mu.Lock()
	if len(a.keys) >= announceMax {
		a.mu.Unlock()
		p.m.announcements.WithLabelValues("dropped").Inc()
		return
	}
	a.keys = append(a.keys, bytes.Clone(key))
	start := !a.sending
	a.sending = true
	a.mu.Unlock()
	if start {
		p.bg.Add(1)
		go p.sendAnnouncements()
	}
}

// sendAnnouncements broadcasts the queued keys batch by batch until the
// queue stays empty for announceDelay.
func (p *Proxy) sendAnnouncements() {
	defer p.bg.Done()
	a := &p.announced
	t := time.NewTimer(announceDelay)
	defer t.Stop()
	for {
		<-t.C
		a.mu.Lock()
		keys := a.keys
		a.keys = nil
		if len(keys) == 0 {
			a.sending = false
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), announceTimeout)
		_, err := p.opt.Peers.Broadcast(ctx, cache.Purge{Keys: keys, At: p.now()})
		cancel()
		if err != nil {
			p.m.announcements.WithLabelValues("failed").Add(float64(len(keys)))
			p.log.Warn("invalidation not announced to every member", "keys", len(keys), "err", err)
		} else {
			p.m.announcements.WithLabelValues("sent").Add(float64(len(keys)))
		}
		t.Reset(announceDelay)
	}
}
