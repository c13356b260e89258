package collab

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/memstore"
)

// The simulator's world: one seeded random source, one simulated clock and
// one queue of actions, run one at a time on one goroutine. Everything
// that would be concurrent in a real deployment (the network, the disk,
// timers, several servers, clients typing) is an action scheduled at a
// simulated time, and which action comes next, how long anything takes
// and what fails are all drawn from the seed. The same seed is the same
// run, step for step.

// simConfig is one run's shape. Each seed draws its own (swarm testing:
// a run with fewer kinds of fault enabled reaches deeper into each), and
// any field can be pinned from the command line.
type simConfig struct {
	Servers int // nodes writing the one document (2+: the compare-and-swap path)
	Clients int
	Rich    bool // the document is rich text (else plain)

	// Faults enabled in this run.
	Crash      bool // servers crash (losing what is not durable) and restart
	Pause      bool // servers stop (SIGSTOP) and wake up late
	Drops      bool // connections drop and clients reconnect
	Slow       bool // some clients read slowly (their queues overflow)
	Offline    bool // clients go offline for long, edit, and come back far behind
	WriteFail  bool // store writes fail, or report failure after succeeding
	DiskFull   bool // the disk fills up for a while
	Compaction bool // history compacted (--retain) while clients are away
	Unload     bool // idle documents unloaded and reloaded
	LoseRemote bool // records pushed between servers get lost (gaps)

	// Bounds, small so that the edges are reached.
	QueueMessages   int
	HistoryInMemory int
	MaxLag          int64
	CatchUpMax      int64
	SnapshotEvery   int64
	Retain          int64
}

func (c simConfig) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "servers=%d clients=%d rich=%v", c.Servers, c.Clients, c.Rich)
	for _, f := range c.faults() {
		if *f.on {
			b.WriteString(" " + f.name)
		}
	}
	fmt.Fprintf(&b, " queue=%d history=%d maxlag=%d catchup=%d snapshot=%d retain=%d",
		c.QueueMessages, c.HistoryInMemory, c.MaxLag, c.CatchUpMax, c.SnapshotEvery, c.Retain)
	return b.String()
}

type namedFault struct {
	name string
	on   *bool
}

func (c *simConfig) faults() []namedFault {
	return []namedFault{{"crash", &c.Crash}, {"pause", &c.Pause}, {"drops", &c.Drops}, {"slow", &c.Slow},
		{"offline", &c.Offline}, {"writefail", &c.WriteFail}, {"diskfull", &c.DiskFull},
		{"compaction", &c.Compaction}, {"unload", &c.Unload}, {"loseremote", &c.LoseRemote}}
}

// drawConfig picks a run's shape from its own random source.
func drawConfig(r *rand.Rand) simConfig {
	c := simConfig{
		Servers:         1 + r.IntN(3),
		Clients:         2 + r.IntN(6),
		Rich:            r.IntN(3) == 0,
		QueueMessages:   []int{8, 32, 4096}[r.IntN(3)],
		HistoryInMemory: []int{5, 30, 1000}[r.IntN(3)],
		MaxLag:          []int64{40, 200, 2000}[r.IntN(3)],
		CatchUpMax:      []int64{20, 100, 5000}[r.IntN(3)],
		SnapshotEvery:   []int64{5, 20, 100}[r.IntN(3)],
		Retain:          []int64{10, 50}[r.IntN(2)],
	}
	for _, f := range c.faults() {
		*f.on = r.IntN(2) == 0
	}
	return c
}

// action is something that happens at a simulated time. on, if set, is the
// server it runs on: a paused server runs nothing until it wakes.
type action struct {
	at  time.Duration
	seq uint64
	on  *simServer
	fn  func()
}

type actionQueue []*action

func (q actionQueue) Len() int { return len(q) }
func (q actionQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q actionQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *actionQueue) Push(x any)   { *q = append(*q, x.(*action)) }
func (q *actionQueue) Pop() any {
	old := *q
	a := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return a
}

// simFailure is an invariant broken: what, at which step.
type simFailure struct {
	Step int64
	At   time.Duration
	What string
}

func (f *simFailure) Error() string {
	return fmt.Sprintf("step %d (t=%v): %s", f.Step, f.At, f.What)
}

// traceEntry is one step as the trace shows it: built only when the run
// fails (formatting every step would cost more than the step).
type traceEntry struct {
	at   time.Duration
	step int64
	what func() string
}

const traceLen = 60

type world struct {
	seed  uint64
	cfg   simConfig
	rng   *rand.Rand
	now   time.Duration
	epoch time.Time // simulated time zero (for the core's clocks)
	queue actionQueue
	seq   uint64
	steps int64

	doc     string
	typ     doctype.Type
	store   *faultStore
	servers []*simServer
	clients []*simClient
	conns   int // connections made (their ids)

	truth *truth
	bugs  simBugs

	// calm: a quiet period is under way: no new faults or edits, and
	// everything comes back until the clients have converged.
	calm      bool
	calmSince time.Duration
	quiets    int // quiet periods that converged
	over      bool

	trace    [traceLen]traceEntry
	traced   int
	failure  *simFailure
	stats    simStats
	verbose  func(string)
	deadline time.Duration // simulated time the run lasts
}

type simStats struct {
	Edits, Acks, Remotes, Commits, Conflicts, Crashes, Pauses, Drops, Overflows, Reconnects, Resyncs, WriteFails, Compactions, Unloads, Quiets int64
}

func newWorld(seed uint64, cfg simConfig, bugs simBugs, length time.Duration) *world {
	w := &world{
		seed:     seed,
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(seed, 0x7a6e64656d)),
		epoch:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		doc:      "sim",
		bugs:     bugs,
		deadline: length,
	}
	w.typ = doctype.Plain()
	initial := "hello world\n"
	if cfg.Rich {
		w.typ = doctype.Rich()
		initial = `[{"insert":"hello "},{"insert":"world","attributes":{"bold":true}},{"insert":"\n"}]`
	}
	mem := memstore.New()
	if err := mem.CreateDocument(bgCtx, storage.Document{ID: w.doc, Type: w.typ.Name()}, initial); err != nil {
		panic(err)
	}
	w.store = &faultStore{Store: mem, w: w}
	w.truth = newTruth(w, initial)
	for i := range cfg.Servers {
		w.servers = append(w.servers, newSimServer(w, i))
	}
	for i := range cfg.Clients {
		w.clients = append(w.clients, newSimClient(w, i))
	}
	return w
}

// at schedules fn after d; on, if not nil, is the server it runs on.
func (w *world) at(d time.Duration, on *simServer, fn func()) {
	w.seq++
	heap.Push(&w.queue, &action{at: w.now + max(d, 0), seq: w.seq, on: on, fn: fn})
}

// note adds a step to the trace.
func (w *world) note(what func() string) {
	w.trace[w.traced%traceLen] = traceEntry{at: w.now, step: w.steps, what: what}
	w.traced++
	if w.verbose != nil {
		w.verbose(fmt.Sprintf("%8d %10v %s", w.steps, w.now, what()))
	}
}

// fail records the first invariant broken; the run stops after the step.
func (w *world) fail(format string, args ...any) {
	if w.failure == nil {
		w.failure = &simFailure{Step: w.steps, At: w.now, What: fmt.Sprintf(format, args...)}
	}
}

// chance is true with probability p.
func (w *world) chance(p float64) bool { return w.rng.Float64() < p }

// between is a duration drawn uniformly from [lo, hi).
func (w *world) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(w.rng.Int64N(int64(hi-lo)))
}

// netDelay is a message's time on the wire: mostly short, sometimes long.
func (w *world) netDelay() time.Duration {
	if w.chance(0.05) {
		return w.between(20*time.Millisecond, 300*time.Millisecond)
	}
	return w.between(100*time.Microsecond, 5*time.Millisecond)
}

// clock is the simulated wall clock (the core's events carry it).
func (w *world) clock() time.Time { return w.epoch.Add(w.now) }

// run takes actions until the simulated time is up or an invariant breaks.
func (w *world) run() {
	w.start()
	for w.failure == nil && len(w.queue) > 0 {
		a := heap.Pop(&w.queue).(*action)
		if a.on != nil && a.on.pausedUntil > a.at {
			// Its server is stopped: it runs when the server wakes.
			a.at = a.on.pausedUntil
			heap.Push(&w.queue, a)
			continue
		}
		w.now = a.at
		w.steps++
		a.fn()
		if w.failure == nil {
			w.checkStep()
		}
		if w.now >= w.deadline && !w.calm && !w.over {
			w.beginQuiet(true)
		}
	}
	if w.failure == nil && w.quiets == 0 {
		w.fail("the run ended without converging once")
	}
}

// start schedules the run's processes: clients dial and type, faults
// come, and every so often a quiet period checks convergence.
func (w *world) start() {
	for _, c := range w.clients {
		w.at(w.between(0, 50*time.Millisecond), nil, c.dial)
		w.at(w.between(0, 100*time.Millisecond), nil, c.think)
	}
	for _, s := range w.servers {
		s.startBeat()
	}
	w.at(w.between(200*time.Millisecond, time.Second), nil, w.chaos)
	w.at(w.between(3*time.Second, 8*time.Second), nil, func() { w.beginQuiet(false) })
}

// chaos injects one fault (of the kinds this run enables) and schedules
// the next.
func (w *world) chaos() {
	defer w.at(w.between(50*time.Millisecond, 600*time.Millisecond), nil, w.chaos)
	if w.calm {
		return
	}
	cfg := &w.cfg
	switch k := w.rng.IntN(10); {
	case k == 0 && cfg.Crash:
		s := w.servers[w.rng.IntN(len(w.servers))]
		if s.up {
			s.crash()
			w.at(w.between(10*time.Millisecond, 2*time.Second), nil, s.restart)
		}
	case k == 1 && cfg.Pause:
		s := w.servers[w.rng.IntN(len(w.servers))]
		if s.up && s.pausedUntil <= w.now {
			s.pause(w.between(50*time.Millisecond, 3*time.Second))
		}
	case k == 2 && cfg.Drops:
		c := w.clients[w.rng.IntN(len(w.clients))]
		c.drop("dropped")
	case k == 3 && cfg.Offline:
		c := w.clients[w.rng.IntN(len(w.clients))]
		c.goOffline(w.between(time.Second, 8*time.Second))
	case k == 4 && cfg.WriteFail:
		w.store.failNext = 1 + w.rng.IntN(3)
	case k == 5 && cfg.DiskFull:
		w.store.fillDisk(w.between(100*time.Millisecond, 2*time.Second))
	case k == 6 && cfg.Compaction:
		w.compact()
	case k == 7 && cfg.Slow:
		c := w.clients[w.rng.IntN(len(w.clients))]
		c.slowFor(w.between(500*time.Millisecond, 4*time.Second))
	case k == 8 && cfg.Unload:
		for _, c := range w.clients {
			if w.chance(0.5) {
				c.goOffline(w.between(100*time.Millisecond, 2*time.Second))
			}
		}
	case k == 9 && cfg.Drops && len(w.servers) > 1:
		// A client moves to another server (a load balancer's choice).
		c := w.clients[w.rng.IntN(len(w.clients))]
		c.drop("moved")
	}
}

func (w *world) compact() {
	w.stats.Compactions++
	w.note(func() string { return fmt.Sprintf("compact to the newest %d revisions", w.cfg.Retain) })
	if err := storage.Retain(bgCtx, w.store.Store, w.cfg.Retain); err != nil {
		w.fail("compaction: %v", err)
	}
}

// beginQuiet starts a quiet period: faults stop, stopped servers wake,
// crashed ones restart, offline clients come back; once everything has
// settled, the clients must have converged. final: the run ends after it.
func (w *world) beginQuiet(final bool) {
	if w.calm {
		return
	}
	w.calm, w.calmSince = true, w.now
	w.note(func() string { return "quiet period begins" })
	for _, s := range w.servers {
		if !s.up {
			w.at(w.between(0, 100*time.Millisecond), nil, s.restart)
		}
		if s.pausedUntil > w.now {
			s.pausedUntil = w.now
		}
	}
	w.store.diskFullUntil, w.store.failNext = 0, 0
	for _, c := range w.clients {
		c.comeBack()
	}
	w.at(100*time.Millisecond, nil, func() { w.settle(final) })
}

// quietLimit is how long a quiet period may take to converge: past it, the
// system is stuck (a liveness failure).
const quietLimit = 2 * time.Minute

// settle checks whether everything has settled; if so it checks
// convergence and ends the quiet period.
func (w *world) settle(final bool) {
	if why := w.unsettled(); why != "" {
		if w.now-w.calmSince > quietLimit {
			w.fail("no convergence %v into a quiet period: %s", quietLimit, why)
			return
		}
		w.at(100*time.Millisecond, nil, func() { w.settle(final) })
		return
	}
	w.checkConverged()
	w.quiets++
	w.stats.Quiets++
	w.calm = false
	w.note(func() string { return "quiet period over: converged" })
	if final {
		w.over = true
		w.queue = w.queue[:0] // the run is over
		return
	}
	w.at(w.between(3*time.Second, 10*time.Second), nil, func() { w.beginQuiet(false) })
}

// unsettled says what is still moving, or "".
func (w *world) unsettled() string {
	for _, s := range w.servers {
		if !s.up {
			return s.name + " is down"
		}
		if s.pendingIO > 0 {
			return s.name + " has I/O under way"
		}
		if c := s.core; c != nil && (c.headRev != c.durableRev || c.committing || c.readingFwd) {
			return fmt.Sprintf("%s's document has revisions %d..%d pending", s.name, c.durableRev+1, c.headRev)
		}
		if c := s.core; c != nil && c.durableRev != w.truth.head() {
			return fmt.Sprintf("%s's document is at revision %d, the store's at %d", s.name, c.durableRev, w.truth.head())
		}
	}
	head := w.truth.head()
	for _, c := range w.clients {
		if why := c.unsettled(head); why != "" {
			return why
		}
	}
	return w.presenceDiffers()
}

// report formats a failed run: the seed, its shape, what broke and the
// steps that led there.
func (w *world) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %v\nconfig: %v\nlast steps:\n", w.seed, w.failure, w.cfg)
	start := max(0, w.traced-traceLen)
	for i := start; i < w.traced; i++ {
		e := w.trace[i%traceLen]
		fmt.Fprintf(&b, "  %8d %12v  %s\n", e.step, e.at, e.what())
	}
	return b.String()
}
