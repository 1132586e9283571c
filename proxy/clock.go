package proxy

import (
	"sync/atomic"
	"time"
)

// Clock is a coarse clock read with one atomic load. On virtual machines
// without a fast TSC, time.Now costs a few hundred nanoseconds: a third of
// a cache hit. HTTP ages count whole seconds, so a clock that moves every
// millisecond loses nothing.
//
// It ticks only while it is read: after parkAfter ticks without a reader
// it parks, and the next Now reads the time itself and restarts it. An
// idle node (a sidecar waiting for traffic) then sleeps instead of waking
// a thousand times a second.
type Clock struct {
	now    atomic.Int64
	read   atomic.Bool // Now ran since the last tick
	parked atomic.Bool // no ticks: Now reads the time and wakes the ticker
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
}

// parkAfter is how many ticks without a reader park the clock.
const parkAfter = 64

// NewClock starts a clock that advances every resolution while read.
func NewClock(resolution time.Duration) *Clock {
	c := &Clock{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	c.now.Store(time.Now().UnixNano())
	go c.run(resolution)
	return c
}

func (c *Clock) run(resolution time.Duration) {
	defer close(c.done)
	t := time.NewTicker(resolution)
	defer t.Stop()
	unread := 0
	for {
		select {
		case now := <-t.C:
			c.now.Store(now.UnixNano())
			if c.read.Swap(false) {
				unread = 0
				continue
			}
			if unread++; unread < parkAfter {
				continue
			}
			t.Stop()
			c.parked.Store(true)
			select {
			case <-c.wake:
			case <-c.stop:
				return
			}
			unread = 0
			t.Reset(resolution)
		case <-c.stop:
			return
		}
	}
}

// Now returns the time in unix nanoseconds, at most one resolution old.
func (c *Clock) Now() int64 {
	if c.parked.Load() {
		now := time.Now().UnixNano()
		c.now.Store(now)
		if c.parked.CompareAndSwap(true, false) {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
		return now
	}
	if !c.read.Load() {
		c.read.Store(true) // one write per tick, not per read
	}
	return c.now.Load()
}

// Stop ends the clock's goroutine; Now keeps returning the last time.
func (c *Clock) Stop() {
	close(c.stop)
	<-c.done
}
