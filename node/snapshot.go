package node

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ringcache/ringcache/cache"
)

// snapshots keeps the node's store in the file named by snapshot: loaded
// at start, written at shutdown and every snapshot_interval.
//
// A snapshot on disk must never outlive a purge: a crash would bring the
// purged entries back. A purge therefore removes the file, and a write
// that a purge overlapped is discarded instead of put in place; the next
// write makes a new one. (Invalidations by unsafe requests do not remove
// it: after a crash, the last periodic snapshot may still hold responses
// invalidated since it was written, until they expire.)
type snapshots struct {
	path  string
	store cache.Store
	now   func() int64
	log   *slog.Logger

	writing sync.Mutex    // one write at a time
	commit  sync.Mutex    // orders a write's rename against a purge's removal
	purges  atomic.Uint64 // purges seen

	ctx    context.Context // ends periodic writes, one in progress included
	cancel context.CancelFunc
	quit   chan struct{} // closed by stop
	once   sync.Once
	bg     sync.WaitGroup

	duration, entries, bytes *prometheus.GaugeVec // by op: load, write
	lastWrite                prometheus.Gauge
	failures                 *prometheus.CounterVec
}

const (
	opLoad  = "load"
	opWrite = "write"
)

func newSnapshots(path string, st cache.Store, now func() int64, log *slog.Logger, reg prometheus.Registerer) *snapshots {
	s := &snapshots{path: path, store: st, now: now, log: log, quit: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	op := []string{"op"}
	s.duration = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ringcache_snapshot_duration_seconds",
		Help: "How long the last snapshot write (op=write), or the load at start until the node could serve it (op=load), took."}, op)
	s.entries = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ringcache_snapshot_entries",
		Help: "Entries in the last snapshot written, or loaded at start."}, op)
	s.bytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ringcache_snapshot_bytes",
		Help: "Size of the last snapshot written, or of the one checked at start."}, op)
	s.lastWrite = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ringcache_snapshot_last_success_timestamp_seconds",
		Help: "When the last snapshot was put in place (unix seconds); 0 before the first."})
	s.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ringcache_snapshot_failures_total",
		Help: "Snapshot writes that failed or were discarded, and loads of a corrupt or unreadable file."}, op)
	reg.MustRegister(s.duration, s.entries, s.bytes, s.lastWrite, s.failures)
	return s
}

// load loads the snapshot into w, which wraps the node's store, and logs
// what happened. Nothing about the file stops the node: a missing one is
// a cold start, a corrupt one gives what precedes the damage.
func (s *snapshots) load(w *cache.Warm) {
	w.OnDamage(func(err error) {
		s.failures.WithLabelValues(opLoad).Inc()
		s.log.Error("snapshot block damaged: its entries are dropped", "snapshot", s.path, "err", err)
	})
	start := time.Now()
	st, err := w.Load(s.path)
	took := time.Since(start)
	var corrupt *cache.SnapshotError
	if errors.Is(err, fs.ErrNotExist) {
		s.log.Info("no snapshot to load: starting cold", "snapshot", s.path)
		return
	}
	attrs := []any{"snapshot", s.path, "entries", st.Entries, "skipped", st.Skipped, "bytes", st.Bytes,
		"written", st.Taken.UTC().Format(time.RFC3339), "took", took.Round(time.Millisecond)}
	switch {
	case errors.As(err, &corrupt):
		s.failures.WithLabelValues(opLoad).Inc()
		s.log.Error("snapshot corrupt: using the entries before the damage", append(attrs, "offset", corrupt.Offset, "err", err)...)
	case err != nil && st.Entries == 0:
		s.failures.WithLabelValues(opLoad).Inc()
		s.log.Error("snapshot not loaded: starting cold", "snapshot", s.path, "err", err)
		return
	case err != nil:
		s.log.Warn("snapshot loaded", append(attrs, "err", err)...)
	default:
		s.log.Info("snapshot loaded", attrs...)
	}
	s.duration.WithLabelValues(opLoad).Set(took.Seconds())
	s.entries.WithLabelValues(opLoad).Set(float64(st.Entries))
	s.bytes.WithLabelValues(opLoad).Set(float64(st.Bytes))
	if st.Entries == 0 {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		select {
		case <-w.Moved():
			m := w.MoveStats()
			s.log.Info("snapshot moved into the store", "entries", m.Moved, "expired", m.Expired, "damaged", m.Damaged,
				"took", time.Since(start).Round(time.Millisecond))
		case <-s.quit:
		}
	}()
}

// every writes a snapshot every interval until stop. A write still
// running when the next is due makes that one skip.
func (s *snapshots) every(interval time.Duration) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
			s.write(s.ctx, true)
		}
	}()
}

// write writes the store to the snapshot, replacing the one there. A
// periodic write is skipped while another runs; ctx ending stops it,
// leaving the previous snapshot in place.
func (s *snapshots) write(ctx context.Context, periodic bool) error {
	if periodic {
		if !s.writing.TryLock() {
			s.log.Warn("snapshot skipped: the previous one is still being written", "snapshot", s.path)
			return nil
		}
	} else {
		s.writing.Lock()
	}
	defer s.writing.Unlock()
	start := time.Now()
	purges := s.purges.Load()
	f, st, err := cache.CreateSnapshot(ctx, s.path, s.store, s.now())
	if err == nil {
		s.commit.Lock()
		if s.purges.Load() != purges {
			f.Discard()
			err = errors.New("a purge ran while it was written: discarded, so that no crash brings the purged entries back")
		} else {
			err = f.Commit()
		}
		s.commit.Unlock()
	}
	took := time.Since(start)
	if periodic && errors.Is(err, context.Canceled) {
		s.log.Info("periodic snapshot abandoned: the node is stopping", "snapshot", s.path)
		return err
	}
	if err != nil {
		s.failures.WithLabelValues(opWrite).Inc()
		s.log.Error("snapshot not written", "snapshot", s.path, "took", took.Round(time.Millisecond), "err", err)
		return err
	}
	s.duration.WithLabelValues(opWrite).Set(took.Seconds())
	s.entries.WithLabelValues(opWrite).Set(float64(st.Entries))
	s.bytes.WithLabelValues(opWrite).Set(float64(st.Bytes))
	s.lastWrite.Set(float64(time.Now().UnixNano()) / 1e9)
	s.log.Info("snapshot written", "snapshot", s.path, "entries", st.Entries, "bytes", st.Bytes,
		"took", took.Round(time.Millisecond), "MB/s", int(float64(st.Bytes)/1e6/max(took.Seconds(), 1e-9)))
	return nil
}

// purged removes the snapshot after a purge: it may hold entries the
// purge dropped.
func (s *snapshots) purged(string, int) {
	s.purges.Add(1)
	s.commit.Lock()
	err := os.Remove(s.path)
	s.commit.Unlock()
	switch {
	case err == nil:
		s.log.Info("snapshot removed after a purge; the next one is written without the purged entries", "snapshot", s.path)
	case !errors.Is(err, fs.ErrNotExist):
		s.log.Error("snapshot not removed after a purge", "snapshot", s.path, "err", err)
	}
}

// stop ends the periodic writes (one in progress is abandoned) and the
// background goroutines, and waits for them. It may be called twice.
func (s *snapshots) stop() {
	s.once.Do(func() {
		close(s.quit)
		s.cancel()
	})
	s.bg.Wait()
}
