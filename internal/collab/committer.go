package collab

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/tandemdocs/tandem/storage"
)

// commitReq is one hub's append on its way to disk. result receives exactly
// one answer; a hub has at most one request outstanding, so a buffer of one
// means the committer never waits for a hub.
type commitReq struct {
	app  storage.Append
	done func(error) // called once with the outcome; never blocks
}

// committer is the group commit: it takes whatever appends the hubs have
// queued while the previous write was on its way to disk and writes them
// all in one durable Store.Commit. Under load a write carries many
// documents' ops for the price of one fsync.
type committer struct {
	obs      Observer
	store    storage.Store
	maxBatch int
	log      *slog.Logger
	reqs     chan *commitReq

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}

	statsMu sync.Mutex
	stats   CommitStats
}

// CommitStats counts the group commit's work.
type CommitStats struct {
	Writes    int64 // durable writes (Store.Commit calls)
	Appends   int64 // appends written
	Records   int64 // records written
	Conflicts int64 // appends refused because another writer moved the head first
}

func newCommitter(store storage.Store, maxBatch int, log *slog.Logger, obs Observer) *committer {
	c := &committer{
		obs:      obs,
		store:    store,
		maxBatch: maxBatch,
		log:      log,
		reqs:     make(chan *commitReq, 4*maxBatch),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go c.run()
	return c
}

// submit queues r; it blocks only while the queue is full (backpressure).
// It reports false once the committer has stopped.
func (c *committer) submit(r *commitReq) bool {
	select {
	case c.reqs <- r:
		return true
	case <-c.stop:
		return false
	}
}

func (c *committer) run() {
	defer close(c.done)
	batch := make([]*commitReq, 0, c.maxBatch)
	apps := make([]storage.Append, 0, c.maxBatch)
	for {
		select {
		case r := <-c.reqs:
			batch = append(batch[:0], r)
		case <-c.stop:
			// Hubs stop submitting before the committer is stopped; answer
			// anything still queued.
			for {
				select {
				case r := <-c.reqs:
					c.write([]*commitReq{r}, apps[:0])
				default:
					return
				}
			}
		}
	drain:
		for len(batch) < c.maxBatch {
			select {
			case r := <-c.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		c.write(batch, apps[:0])
	}
}

func (c *committer) write(batch []*commitReq, apps []storage.Append) {
	for _, r := range batch {
		apps = append(apps, r.app)
	}
	start := time.Now()
	results, err := c.store.Commit(context.Background(), apps)
	took := time.Since(start)
	if err != nil {
		c.log.Error("group commit failed", "appends", len(batch), "err", err)
	} else {
		// Counted before the documents hear, so Stats read after an ack
		// sees it.
		appends, records := 0, 0
		c.statsMu.Lock()
		c.stats.Writes++
		for i, r := range batch {
			switch {
			case results[i] == nil:
				appends++
				records += len(r.app.Records)
			case errors.Is(results[i], storage.ErrConflict):
				c.stats.Conflicts++
			}
		}
		c.stats.Appends += int64(appends)
		c.stats.Records += int64(records)
		c.statsMu.Unlock()
		c.obs.Committed(appends, records, took)
	}
	for i, r := range batch {
		if err != nil {
			r.done(err)
		} else {
			r.done(results[i])
		}
	}
}

func (c *committer) close() {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.done
}

// Stats returns the group commit's counters.
func (m *Manager) Stats() CommitStats {
	m.committer.statsMu.Lock()
	defer m.committer.statsMu.Unlock()
	return m.committer.stats
}
