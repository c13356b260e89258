package collab

import (
	"bufio"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/internal/clientstate"
)

// TestSim is the deterministic simulator (docs/testing.md): whole runs of
// the system (servers, clients, the network, the disk) on one goroutine,
// every choice drawn from a seed, with the guarantees checked after every
// step. It replays the seeds in testdata/sim/seeds (each once failed),
// then runs fresh seeds for -sim.time. A failure prints its seed, the
// run's shape and its last steps, and the command that replays it:
//
//	go test ./internal/collab -run TestSim -sim.seed=N [-sim.v]
//
// (or TANDEM_SIM_SEED=N with go test ./...).
var (
	simSeed    = flag.Uint64("sim.seed", 0, "TestSim: replay this seed only")
	simTime    = flag.Duration("sim.time", 15*time.Second, "TestSim: wall time spent on fresh seeds")
	simLength  = flag.Duration("sim.length", 40*time.Second, "TestSim: simulated time of each run")
	simVerbose = flag.Bool("sim.v", false, "TestSim: print every step of -sim.seed's run")
	simPin     = flag.String("sim.config", "", "TestSim: pin parts of each run's shape, e.g. servers=2,clients=3,crash=1,slow=0")
	simGoOn    = flag.Bool("sim.keepgoing", false, "TestSim: after a failing seed, go on with fresh ones (and fail at the end)")
	simShrink  = flag.Bool("sim.shrink", false, "TestSim: with a failing -sim.seed, look for the smallest shape that still fails")
	simBug     = flag.String("sim.bug", "", "TestSim: with -sim.seed, inject a known bug (as TestSimFindsBugs does): "+strings.Join(slices.Sorted(maps.Keys(bugNames)), ", "))
)

// bugNames are the injected bugs by -sim.bug name.
var bugNames = map[string]simBugs{
	"ackearly":       {AckBeforeDurable: true},
	"forgetindex":    {ForgetIndex: true},
	"broadcastearly": {BroadcastEarly: true},
	"wrongside":      {WrongSide: true},
	"dropslow":       {DropSlow: true},
	"nocas":          {NoCAS: true},
}

// simBugs are known bugs the simulator must find (TestSimFindsBugs). The
// ones in the core need the simbugs build tag (bugs_on.go); the others
// live in the simulator's own driver and store.
type simBugs struct {
	AckBeforeDurable bool // the driver reports a commit before the write
	ForgetIndex      bool // the exactly-once index is lost across a restart
	BroadcastEarly   bool // the core broadcasts an op before its commit (core)
	WrongSide        bool // the core transforms with the wrong tie-break side (core)
	DropSlow         bool // a slow reader's overflowing message is dropped, not resynced
	NoCAS            bool // a stale writer appends without the compare-and-swap
}

// simResult is what a run did.
type simResult struct {
	Seed    uint64
	Config  simConfig
	Steps   int64
	SimTime time.Duration
	Wall    time.Duration
	Stats   simStats
	Failure *simFailure
	Report  string
}

// runSim runs one seed.
func runSim(seed uint64, pin string, bugs simBugs, length time.Duration, verbose func(string)) (simResult, error) {
	cfg := drawConfig(rand.New(rand.NewPCG(seed, 1)))
	if err := cfg.pin(pin); err != nil {
		return simResult{}, err
	}
	restore := setCoreBugs(bugs)
	defer restore()
	start := time.Now()
	w := newWorld(seed, cfg, bugs, length)
	w.verbose = verbose
	w.run()
	res := simResult{Seed: seed, Config: cfg, Steps: w.steps, SimTime: w.now, Wall: time.Since(start), Stats: w.stats, Failure: w.failure}
	if w.failure != nil {
		res.Report = w.report()
	}
	return res, nil
}

// pin sets the fields named in s ("servers=2,crash=1,...").
func (c *simConfig) pin(s string) error {
	if s == "" {
		return nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("-sim.config: %q is not key=value", kv)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("-sim.config: %s: %v", k, err)
		}
		switch k {
		case "servers":
			c.Servers = int(n)
		case "clients":
			c.Clients = int(n)
		case "rich":
			c.Rich = n != 0
		case "queue":
			c.QueueMessages = int(n)
		case "history":
			c.HistoryInMemory = int(n)
		case "maxlag":
			c.MaxLag = n
		case "catchup":
			c.CatchUpMax = n
		case "snapshot":
			c.SnapshotEvery = n
		case "retain":
			c.Retain = n
		case "faults":
			if n == 0 {
				for _, f := range c.faults() {
					*f.on = false
				}
			}
		default:
			found := false
			for _, f := range c.faults() {
				if f.name == k {
					*f.on, found = n != 0, true
				}
			}
			if !found {
				return fmt.Errorf("-sim.config: unknown key %q", k)
			}
		}
	}
	return nil
}

// regressionSeeds reads testdata/sim/seeds: a seed per line, then what it
// once found.
func regressionSeeds(t *testing.T) []uint64 {
	f, err := os.Open("testdata/sim/seeds")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var seeds []uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		field, _, _ := strings.Cut(line, " ")
		n, err := strconv.ParseUint(field, 10, 64)
		if err != nil {
			t.Fatalf("testdata/sim/seeds: %q: %v", line, err)
		}
		seeds = append(seeds, n)
	}
	return seeds
}

func envSeed() (uint64, bool) {
	if *simSeed != 0 {
		return *simSeed, true
	}
	if v := os.Getenv("TANDEM_SIM_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

func TestSim(t *testing.T) {
	if seed, ok := envSeed(); ok {
		var verbose func(string)
		if *simVerbose {
			verbose = func(s string) { fmt.Println(s) }
		}
		bugs, ok := bugNames[*simBug]
		if !ok && *simBug != "" {
			t.Fatalf("-sim.bug=%s: no such bug", *simBug)
		}
		res, err := runSim(seed, *simPin, bugs, *simLength, verbose)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d: %v\n%d steps, %v simulated in %v; %+v", seed, res.Config, res.Steps, res.SimTime, res.Wall, res.Stats)
		if res.Failure != nil {
			if *simShrink {
				t.Logf("the smallest shape found that still fails: -sim.seed=%d -sim.config=%s", seed, shrinkSim(t, seed, bugs, res.Config))
			}
			t.Fatal(res.Report)
		}
		return
	}
	var total simTotals
	t.Run("regressions", func(t *testing.T) {
		for _, seed := range regressionSeeds(t) {
			res, err := runSim(seed, *simPin, simBugs{}, *simLength, nil)
			if err != nil {
				t.Fatal(err)
			}
			total.add(res)
			if res.Failure != nil {
				t.Errorf("%s\nreplay: go test ./internal/collab -run TestSim -sim.seed=%d -sim.v", res.Report, seed)
			}
		}
	})
	t.Run("fresh", func(t *testing.T) {
		base := uint64(time.Now().UnixNano())
		deadline := time.Now().Add(*simTime)
		for i := uint64(0); i == 0 || time.Now().Before(deadline); i++ {
			seed := splitmix(base + i)
			res, err := runSim(seed, *simPin, simBugs{}, *simLength, nil)
			if err != nil {
				t.Fatal(err)
			}
			total.add(res)
			if res.Failure != nil {
				t.Errorf("%s\nreplay: go test ./internal/collab -run TestSim -sim.seed=%d -sim.v\n(add it to testdata/sim/seeds once fixed)", res.Report, seed)
				if !*simGoOn {
					break
				}
			}
		}
	})
	t.Log(total.String())
}

// splitmix spreads consecutive numbers over the seed space.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

type simTotals struct {
	runs    int
	steps   int64
	simTime time.Duration
	wall    time.Duration
	stats   simStats
}

func (t *simTotals) add(r simResult) {
	t.runs++
	t.steps += r.Steps
	t.simTime += r.SimTime
	t.wall += r.Wall
	s := &t.stats
	o := r.Stats
	s.Edits += o.Edits
	s.Acks += o.Acks
	s.Remotes += o.Remotes
	s.Commits += o.Commits
	s.Conflicts += o.Conflicts
	s.Crashes += o.Crashes
	s.Pauses += o.Pauses
	s.Drops += o.Drops
	s.Reconnects += o.Reconnects
	s.Overflows += o.Overflows
	s.Resyncs += o.Resyncs
	s.WriteFails += o.WriteFails
	s.Compactions += o.Compactions
	s.Unloads += o.Unloads
	s.Quiets += o.Quiets
}

func (t *simTotals) String() string {
	if t.wall <= 0 {
		return "no runs"
	}
	return fmt.Sprintf("%d runs, %d steps, %.0f simulated seconds in %.1f s: %.0f steps/s, %.0f simulated seconds per second; %+v",
		t.runs, t.steps, t.simTime.Seconds(), t.wall.Seconds(), float64(t.steps)/t.wall.Seconds(), t.simTime.Seconds()/t.wall.Seconds(), t.stats)
}

// checkStep runs after every step: the invariants that must hold at all
// times, cheaply enough for millions of steps.
func (w *world) checkStep() {
	for _, s := range w.servers {
		c := s.core
		if c == nil {
			continue
		}
		if c.durableRev > w.truth.head() {
			w.fail("%s's durable revision is %d, the store's head %d", s.name, c.durableRev, w.truth.head())
			return
		}
		n := c.durable.Len()
		for _, cl := range c.clients {
			if cl.left {
				continue // gone: its selection is nobody's to see (nor moved)
			}
			for _, sel := range cl.sel {
				if sel.Anchor < 0 || sel.Head < 0 || sel.Anchor > n || sel.Head > n {
					w.fail("%s: %s's selection %+v is outside the document (%d)", s.name, cl.id, sel, n)
					return
				}
			}
		}
		// The history in memory is bounded: HistoryInMemory, or what a
		// pending op or a history read needs, with a quarter's slack
		// (trimLog trims in steps).
		need := max(int64(c.cfg.HistoryInMemory), c.cfg.MaxLag, c.cfg.CatchUpMax)
		for _, r := range c.log[c.durableRev-c.logStart:] {
			need = max(need, c.durableRev-r.Base)
		}
		if held := c.durableRev - c.logStart; held > need+need/4+minHistory+1 {
			w.fail("%s holds %d durable records in memory, more than its bound %d", s.name, held, need+need/4+minHistory+1)
			return
		}
		for id, box := range s.boxes {
			if len(box.queue) > box.maxMsgs || (len(box.queue) > 1 && box.bytes > box.maxBytes) {
				w.fail("%s: %s's queue holds %d messages, %d bytes, past its bounds", s.name, id, len(box.queue), box.bytes)
				return
			}
		}
	}
	for _, c := range w.clients {
		if !c.helloed || c.st.Rev < 0 || c.st.Rev >= int64(len(w.truth.lens)) {
			continue
		}
		n := w.truth.lens[c.st.Rev]
		var bad *clientstate.Peer // the first by id (map order is random; the report is not)
		for _, p := range c.st.Peers {
			for _, sel := range p.Sel {
				if (sel.Anchor < 0 || sel.Head < 0 || sel.Anchor > n || sel.Head > n) && (bad == nil || p.Client < bad.Client) {
					bad = p
				}
			}
		}
		if bad != nil {
			w.fail("%s shows %s's selection %+v outside the document at %d (%d)", c.name, bad.Client, bad.Sel, c.st.Rev, n)
			return
		}
	}
}

// checkConverged runs when everything has settled: every client's text is
// the store's, every server's document too, and the store's history
// replays to it.
func (w *world) checkConverged() {
	t := w.truth
	t.checkStore()
	if w.failure != nil {
		return
	}
	want := t.doc.Content()
	for _, c := range w.clients {
		if got := c.st.Text.Content(); got != want {
			w.fail("%s's text at revision %d is %q, the store's %q", c.name, c.st.Rev, got, want)
			return
		}
	}
	// Presence: what each client shows of the others on its own node is
	// what that node holds of them (across nodes, a caret at its author's
	// insert can sit on either side until the author's next selection:
	// the op from another node does not name its connection).
	for _, c := range w.clients {
		s := c.conn.server
		for _, id := range c.peerIDs() {
			p := c.st.Peers[id]
			cl := s.core.byID[id]
			if cl == nil {
				continue // on another node
			}
			if !slices.Equal(p.Sel, cl.sel) && !(len(p.Sel) == 0 && len(cl.sel) == 0) {
				w.fail("%s shows %s's selection as %v; %s has it at %v", c.name, id, p.Sel, s.name, cl.sel)
				return
			}
		}
	}
	for _, s := range w.servers {
		if c := s.core; c != nil {
			if c.durableRev != t.head() || c.durable.Content() != want {
				w.fail("%s's document is at %d, %q; the store's at %d, %q", s.name, c.durableRev, c.durable.Content(), t.head(), want)
				return
			}
		}
	}
}

// presenceDiffers says which client does not show every other as a
// participant, or "". Presence between nodes is repaired by heartbeats, so
// this is a condition of settling (liveness), not of every step.
func (w *world) presenceDiffers() string {
	var ids []string
	for _, c := range w.clients {
		ids = append(ids, c.st.ClientID)
	}
	for _, c := range w.clients {
		others := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == c.st.ClientID })
		slices.Sort(others)
		if got := c.peerIDs(); !slices.Equal(got, others) {
			return fmt.Sprintf("%s shows participants %v; the others are %v", c.name, got, others)
		}
	}
	return ""
}

// shrinkSim looks for a smaller shape under which seed still fails: fewer
// clients and nodes, faults off, default bounds, one change at a time,
// keeping each after which it still fails (a greedy search: a smaller
// shape is another schedule, so this is not a minimal schedule, but it
// usually halves the trace). It returns the shape as a -sim.config.
func shrinkSim(t *testing.T, seed uint64, bugs simBugs, cfg simConfig) string {
	fails := func(c simConfig) bool {
		res, err := runSim(seed, c.pinString(), bugs, *simLength, nil)
		return err == nil && res.Failure != nil
	}
	changes := func(c simConfig) []simConfig {
		var out []simConfig
		for n := 2; n < c.Clients; n++ {
			d := c
			d.Clients = n
			out = append(out, d)
		}
		for n := 1; n < c.Servers; n++ {
			d := c
			d.Servers = n
			out = append(out, d)
		}
		for i, f := range c.faults() {
			if *f.on {
				d := c
				*d.faults()[i].on = false
				out = append(out, d)
			}
		}
		def := simConfig{QueueMessages: 4096, HistoryInMemory: 1000, MaxLag: 2000, CatchUpMax: 5000, SnapshotEvery: 100, Retain: 50}
		for _, set := range []func(*simConfig){
			func(d *simConfig) { d.QueueMessages = def.QueueMessages },
			func(d *simConfig) { d.HistoryInMemory = def.HistoryInMemory },
			func(d *simConfig) { d.MaxLag, d.CatchUpMax = def.MaxLag, def.CatchUpMax },
			func(d *simConfig) { d.SnapshotEvery = def.SnapshotEvery },
			func(d *simConfig) { d.Rich = false },
		} {
			d := c
			set(&d)
			if d != c {
				out = append(out, d)
			}
		}
		return out
	}
	for progress := true; progress; {
		progress = false
		for _, d := range changes(cfg) {
			if fails(d) {
				t.Logf("still fails with %v", d)
				cfg, progress = d, true
				break
			}
		}
	}
	return cfg.pinString()
}

// pinString is c as a -sim.config that pins all of it.
func (c simConfig) pinString() string {
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	parts := []string{fmt.Sprintf("servers=%d,clients=%d,rich=%d,queue=%d,history=%d,maxlag=%d,catchup=%d,snapshot=%d,retain=%d",
		c.Servers, c.Clients, b2i(c.Rich), c.QueueMessages, c.HistoryInMemory, c.MaxLag, c.CatchUpMax, c.SnapshotEvery, c.Retain)}
	for _, f := range c.faults() {
		parts = append(parts, fmt.Sprintf("%s=%d", f.name, b2i(*f.on)))
	}
	return strings.Join(parts, ",")
}
