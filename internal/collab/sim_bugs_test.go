//go:build simbugs

package collab

import (
	"testing"
	"time"
)

// setCoreBugs turns on the core's injected bugs (bugs_on.go) for a run.
func setCoreBugs(b simBugs) (restore func()) {
	injectBroadcastEarly, injectWrongSide = b.BroadcastEarly, b.WrongSide
	return func() { injectBroadcastEarly, injectWrongSide = false, false }
}

// TestSimFindsBugs is the simulator's own test: each known bug, injected
// alone, must be caught within a bounded time, from fresh seeds. Run it
// with
//
//	go test -tags simbugs ./internal/collab -run TestSimFindsBugs -v
//
// Each line of its log is the bug, the seed that caught it (replay it
// with -sim.seed, -sim.bug and the same tag), the runs and time it took,
// and what broke.
func TestSimFindsBugs(t *testing.T) {
	bugs := []struct {
		name string
		bug  simBugs
	}{
		{"acknowledge before the write is durable", simBugs{AckBeforeDurable: true}},
		{"forget the exactly-once index across a restart", simBugs{ForgetIndex: true}},
		{"broadcast an op before its commit", simBugs{BroadcastEarly: true}},
		{"transform against the wrong side", simBugs{WrongSide: true}},
		{"drop a message to a slow consumer instead of resyncing it", simBugs{DropSlow: true}},
		{"let a stale second writer append without the compare-and-swap", simBugs{NoCAS: true}},
	}
	const budget = 2 * time.Minute
	base := uint64(time.Now().UnixNano())
	for _, b := range bugs {
		start := time.Now()
		found := false
		for i := uint64(0); time.Since(start) < budget; i++ {
			seed := splitmix(base + i)
			res, err := runSim(seed, *simPin, b.bug, *simLength, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Failure != nil {
				t.Logf("%s: caught by seed %d after %d runs, %v: %v", b.name, seed, i+1, time.Since(start).Round(time.Millisecond), res.Failure)
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: not caught in %v", b.name, budget)
		}
	}
}
