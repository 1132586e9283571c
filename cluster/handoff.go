package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ringcache/ringcache/cache"
)

// Handoff tuning.
const (
	// HandoffBatchBytes is the target size of one handoff request: large
	// enough that per-request costs vanish, small enough that a failed
	// batch loses little and a receiver buffers little.
	HandoffBatchBytes = 1 << 20
	// HandoffInFlight caps concurrent batches.
	HandoffInFlight = 4
)

// The sizes the peer protocol admits for a node that stores responses of
// up to maxObject bytes: the object and 1 MiB for its key, header and
// framing.

// EntryLimit bounds one encoded entry: a lookup answer or a handoff frame.
func EntryLimit(maxObject int64) int64 { return maxObject + 1<<20 }

// BodyLimit bounds a request body on the peer listener: a handoff batch,
// or one entry larger than a batch.
func BodyLimit(maxObject int64) int64 { return max(HandoffBatchBytes, maxObject) + 1<<20 }

// HandoffStats counts what a Handoff did with the entries it saw:
// Entries + Failed + Skipped is the number of entries seen.
type HandoffStats struct {
	Entries int64 // entries in batches the receivers acknowledged
	Bytes   int64 // bytes of those batches
	Batches int64 // batches acknowledged
	Failed  int64 // entries in batches whose send failed
	// Skipped counts entries not sent: Pass entries, entries owned by this
	// node or by nobody, entries too large for a frame, and entries left
	// over when maxBytes or ctx ran out.
	Skipped int64
	// Replicated counts entries not sent because their new owner already
	// holds a copy (it was a replica); they are in Skipped too.
	Replicated int64
}

// HandoffSender sends one batch to a peer; (*PeerSet).SendHandoff is one.
// body is only valid during the call.
type HandoffSender func(ctx context.Context, peer Node, body []byte) error

// Handoff gives the entries of st to their owners on next, for a node that
// is leaving gracefully, so the cluster does not lose its cache with it.
// Entries are grouped by next.Owner(cache.PrimaryKey(key)) and sent in batches of
// about HandoffBatchBytes of frames (uvarint length, then the entry as
// Entry.AppendBinary encodes it), at most HandoffInFlight at a time.
//
// Vary markers travel before every other entry: all marker batches are
// acknowledged (or failed) before the first variant is sent, so a receiver
// that checks a variant against its marker finds the marker. A variant
// shares its marker's primary key, hence its owner.
//
// With replicas above 1, an entry whose new owner was one of its first
// replicas holders on prev (the ring this node leaves) is not sent: the
// owner holds the copy already, and sending every entry again would double
// the traffic of each leave.
//
// Handoff stops sending when ctx is done or when the next batch would take
// the bytes sent beyond maxBytes; maxBytes <= 0 sends nothing (use
// math.MaxInt64 for no limit). It only reads st, which may stay live.
// The error reports failed batches and, if ctx cut the handoff short,
// ctx's error; stats are valid either way. Entries Range had not reached
// when ctx ended are not counted.
func Handoff(ctx context.Context, st cache.Store, prev, next Ring, replicas int, self string, send HandoffSender, maxBytes int64) (HandoffStats, error) {
	h := handoffRun{
		ctx: ctx, send: send, maxBytes: maxBytes,
		batchBytes: HandoffBatchBytes, maxFrame: DefaultMaxEntryBytes,
	}
	if replicas > 1 && prev != nil {
		h.prev, h.replicas = prev, min(replicas, MaxReplicas)
	}
	return h.run(st, next, self)
}

// handoffRun is one Handoff; tests shrink batchBytes and maxFrame.
type handoffRun struct {
	ctx        context.Context
	send       HandoffSender
	maxBytes   int64
	batchBytes int
	maxFrame   int
	prev       Ring // with replicas > 1: owners holding a copy are skipped
	replicas   int

	reserved                                             atomic.Int64 // bytes sent or being sent
	entries, bytes, batches, failed, skipped, replicated atomic.Int64
	cutByCtx                                             atomic.Bool
	mu                                                   sync.Mutex // guards failedBatches, firstErr
	failedBatches                                        int
	firstErr                                             error
}

// handoffGroup is one owner's share, markers apart.
type handoffGroup struct {
	node    Node
	markers []*cache.Entry
	others  []*cache.Entry
}

type handoffJob struct {
	node    Node
	entries []*cache.Entry
}

func (h *handoffRun) run(st cache.Store, next Ring, self string) (HandoffStats, error) {
	groups := make(map[string]*handoffGroup)
	var held [MaxReplicas]Node
	st.Range(func(e *cache.Entry) bool {
		if h.ctx.Err() != nil {
			h.cutByCtx.Store(true)
			return false
		}
		if !e.Transferable() {
			h.skipped.Add(1)
			return true
		}
		pk := cache.PrimaryKey(e.Key())
		n, ok := next.Owner(pk)
		if !ok || n.Name == self {
			h.skipped.Add(1)
			return true
		}
		if h.prev != nil && slices.ContainsFunc(h.prev.Owners(held[:0], pk, h.replicas), func(m Node) bool { return m.Name == n.Name }) {
			h.skipped.Add(1)
			h.replicated.Add(1)
			return true
		}
		g := groups[n.Name]
		if g == nil {
			g = &handoffGroup{node: n}
			groups[n.Name] = g
		}
		if e.Has(cache.VaryMarker) {
			g.markers = append(g.markers, e)
		} else {
			g.others = append(g.others, e)
		}
		return true
	})
	// A fixed owner order makes runs repeatable.
	ordered := make([]*handoffGroup, 0, len(groups))
	for _, g := range groups {
		ordered = append(ordered, g)
	}
	slices.SortFunc(ordered, func(a, b *handoffGroup) int { return strings.Compare(a.node.Name, b.node.Name) })

	bufs := make([]handoffBufs, HandoffInFlight) // one per worker, for both phases
	h.phase(ordered, bufs, func(g *handoffGroup) []*cache.Entry { return g.markers })
	h.phase(ordered, bufs, func(g *handoffGroup) []*cache.Entry { return g.others })

	stats := HandoffStats{
		Entries: h.entries.Load(), Bytes: h.bytes.Load(), Batches: h.batches.Load(),
		Failed: h.failed.Load(), Skipped: h.skipped.Load(), Replicated: h.replicated.Load(),
	}
	var errs []error
	if h.failedBatches > 0 {
		errs = append(errs, fmt.Errorf("handoff: %d batches failed, the first: %w", h.failedBatches, h.firstErr))
	}
	if h.cutByCtx.Load() {
		errs = append(errs, fmt.Errorf("handoff cut short: %w", h.ctx.Err()))
	}
	return stats, errors.Join(errs...)
}

// phase sends the entries pick returns for every group and returns once all
// its batches are done, so a later phase starts after this one.
func (h *handoffRun) phase(groups []*handoffGroup, bufs []handoffBufs, pick func(*handoffGroup) []*cache.Entry) {
	jobs := make(chan handoffJob)
	var wg sync.WaitGroup
	for i := range bufs {
		wg.Go(func() { h.worker(jobs, &bufs[i]) })
	}
	// Owners take turns, batch by batch: when the budget or the deadline
	// runs out, every owner has had a share.
	lists := make([][]*cache.Entry, len(groups))
	for i, g := range groups {
		lists[i] = pick(g)
	}
	for more := true; more; {
		more = false
		for i, g := range groups {
			if len(lists[i]) == 0 {
				continue
			}
			n := h.cut(lists[i])
			jobs <- handoffJob{node: g.node, entries: lists[i][:n]}
			lists[i] = lists[i][n:]
			more = more || len(lists[i]) > 0
		}
	}
	close(jobs)
	wg.Wait()
}

// cut returns how many leading entries of list make one batch of about
// batchBytes (at least one), estimating each entry's frame from its sizes.
func (h *handoffRun) cut(list []*cache.Entry) int {
	size := 0
	for i, e := range list {
		size += frameEstimate(e)
		if size > h.batchBytes && i > 0 {
			return i
		}
	}
	return len(list)
}

// frameEstimate is close to an entry's frame size: the bytes plus room for
// the numbers and lengths around them.
func frameEstimate(e *cache.Entry) int { return 64 + e.Size() }

// handoffBufs are a worker's batch and frame buffers.
type handoffBufs struct{ batch, frame []byte }

func (h *handoffRun) worker(jobs <-chan handoffJob, bufs *handoffBufs) {
	batch, frame := bufs.batch, bufs.frame
	defer func() { bufs.batch, bufs.frame = batch, frame }()
	for job := range jobs {
		if h.ctx.Err() != nil {
			h.cutByCtx.Store(true)
			h.skipped.Add(int64(len(job.entries)))
			continue
		}
		if h.reserved.Load() >= h.maxBytes {
			h.skipped.Add(int64(len(job.entries))) // budget spent: do not even encode
			continue
		}
		if batch == nil {
			batch = make([]byte, 0, h.batchBytes+h.batchBytes/4) // cut works on estimates
		}
		batch = batch[:0]
		var n int64
		for _, e := range job.entries {
			frame = e.AppendBinary(frame[:0])
			if len(frame) > h.maxFrame {
				h.skipped.Add(1) // the receiver would drop it
				continue
			}
			batch = binary.AppendUvarint(batch, uint64(len(frame)))
			batch = append(batch, frame...)
			n++
		}
		if n == 0 {
			continue
		}
		size := int64(len(batch))
		if h.reserved.Add(size) > h.maxBytes {
			// Over budget; a smaller batch later may still fit.
			h.reserved.Add(-size)
			h.skipped.Add(n)
			continue
		}
		if err := h.send(h.ctx, job.node, batch); err != nil {
			h.failed.Add(n)
			h.mu.Lock()
			if h.failedBatches == 0 {
				h.firstErr = err
			}
			h.failedBatches++
			h.mu.Unlock()
			continue
		}
		h.entries.Add(n)
		h.bytes.Add(size)
		h.batches.Add(1)
	}
}
