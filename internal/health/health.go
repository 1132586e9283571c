// Package health is passive health for one upstream (the origin, a peer):
// it learns from the outcome of real requests and never sends its own.
// After Threshold consecutive failures the upstream is paused; once the
// pause is over requests may probe it, a failed probe pauses it again for
// twice as long (up to MaxPause), and a success ends it all. It plays the
// part of Caddy's passive health checks and circuit breaker for both the
// origin client and the peer clients, so the two cannot drift apart.
package health

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Monitor.
type Config struct {
	// Threshold is the number of consecutive failures that pauses the
	// upstream. Zero means 1; negative never pauses (Failure and Success
	// then do nothing).
	Threshold int
	// Pause is how long the first pause lasts. Must be > 0.
	Pause time.Duration
	// MaxPause caps the doubling of the pause after each failed probe.
	// Must be >= Pause; equal to it, the pause stays fixed.
	MaxPause time.Duration
	// Clock is the time source. Nil means time.Now.
	Clock func() time.Time
}

// Monitor tracks one upstream's passive health. It is safe for concurrent
// use. Asking about a healthy upstream (Healthy, Available, Allow) and
// recording its successes cost one atomic load and allocate nothing: the
// lock is only taken to record a failure, to end a pause, or to claim a
// probe while paused.
type Monitor struct {
	threshold int64 // <0 disables
	first     time.Duration
	max       time.Duration
	now       func() time.Time
	// epoch is the origin of until: with time.Now, durations since it are
	// monotonic, so a step of the wall clock neither ends a pause early nor
	// makes it last for the size of the step.
	epoch time.Time

	open  atomic.Bool
	fails atomic.Int64 // consecutive failures; >= threshold (so > 0) while open
	until atomic.Int64 // while open: the pause's end, in nanoseconds since epoch

	mu    sync.Mutex    // serializes state changes
	pause time.Duration // while open: the current pause
}

// New returns a Monitor for a healthy upstream. It panics if c's pauses are
// out of range: callers apply their options' defaults first, so that is a
// wiring mistake.
func New(c Config) *Monitor {
	if c.Pause <= 0 || c.MaxPause < c.Pause {
		panic(fmt.Sprintf("health: pause %v, max pause %v: want 0 < pause <= max pause", c.Pause, c.MaxPause))
	}
	m := &Monitor{threshold: int64(c.Threshold), first: c.Pause, max: c.MaxPause, now: c.Clock}
	if m.threshold == 0 {
		m.threshold = 1
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.epoch = m.now()
	return m
}

func (m *Monitor) since() int64 { return int64(m.now().Sub(m.epoch)) }

// Healthy reports whether no pause is in force or pending: the upstream has
// not failed Threshold times in a row since its last success.
func (m *Monitor) Healthy() bool { return !m.open.Load() }

// Available reports whether a request may go to the upstream: always while
// healthy, and to every caller once the pause is over, until a failure
// starts the next pause. It claims nothing, so it suits callers for whom
// asking does not mean sending (a routing decision asked more than once per
// request).
func (m *Monitor) Available() bool {
	return !m.open.Load() || m.since() >= m.until.Load()
}

// Allow reports whether a request may go to the upstream and, once the
// pause is over, lets one caller through as the probe: it starts the next
// (doubled) pause at once, so the others keep failing fast while the probe
// is in flight, and the probe's own failure within that pause changes
// nothing. One probe goes per pause.
func (m *Monitor) Allow() bool {
	if !m.open.Load() {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.open.Load() {
		return true
	}
	now := m.since()
	if now < m.until.Load() {
		return false
	}
	m.pause = m.doubled()
	m.until.Store(now + int64(m.pause))
	return true
}

// Success records a request that reached the upstream and got an answer.
// It resets the failure count and reports whether it ended a pause (the
// upstream recovered).
func (m *Monitor) Success() bool {
	if m.fails.Load() == 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fails.Store(0)
	if !m.open.Load() {
		return false
	}
	m.open.Store(false)
	m.pause = 0
	return true
}

// Failure records a failed request and reports the pause now in force (0
// while below Threshold) and whether this failure started the first one.
// A failure during a pause does not extend it: that request was most likely
// in flight when the pause began. A failure after it is a failed probe and
// starts the next pause, twice as long up to MaxPause.
func (m *Monitor) Failure() (pause time.Duration, opened bool) {
	if m.threshold < 0 {
		return 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.since()
	if !m.open.Load() {
		if m.fails.Add(1) < m.threshold {
			return 0, false
		}
		m.pause = m.first
		m.until.Store(now + int64(m.pause))
		// until first: a lock-free reader that sees open sees its pause.
		m.open.Store(true)
		return m.pause, true
	}
	if now >= m.until.Load() {
		m.pause = m.doubled()
		m.until.Store(now + int64(m.pause))
	}
	return m.pause, false
}

// doubled is the pause after the current one. m.mu must be held.
func (m *Monitor) doubled() time.Duration {
	if m.pause > m.max/2 {
		return m.max
	}
	return 2 * m.pause
}
