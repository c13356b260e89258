package collab

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// What a client frame costs. Every frame pays one token from its
// connection's budget. An op or a selection pays for its work too: the
// parts it has (the ranges of a selection) times the revisions it must be
// transformed through, plus one for applying it at the head, per
// WorkPerToken, and its text's bytes per BytesPerToken. The work is paid
// from the connection's budget and from the ones it shares: with every
// other connection of its client address, of its authenticated user, and
// of its document, so that reconnecting, or opening more connections,
// buys no more work. An op that costs more than a connection's whole
// burst is refused with too_far_behind, before any work: the client
// catches up (reconnects with rev) and sends it again near the head,
// where it is cheap. So the work one message can make a document do is
// bounded, by construction, by RateBurst × WorkPerToken part-revisions.

// messageCost returns the tokens a parsed message costs (total) and the
// part of them that is work (total minus the frame's one token).
// distance is how far behind the document's head the message is.
func messageCost(msg ClientMessage, distance int64, cfg *Config) (total, work int64) {
	distance = min(max(distance, 0), cfg.MaxLag)
	switch msg.Type {
	case "op":
		bytes := int64(msg.Op.InsertedBytes())
		work = (distance+1)*int64(msg.Op.Parts())/cfg.WorkPerToken + bytes/cfg.BytesPerToken
	case "sel":
		work = distance * max(int64(len(msg.Sel)), 1) / cfg.WorkPerToken
	}
	return 1 + work, work
}

// price is tokens to take from a limiter (nil: none to take).
type price struct {
	from   *rate.Limiter
	tokens int64
}

// spend takes every price at once, or none of them. When it cannot, wait
// is how long until all of them could be paid (0 if one never can).
func spend(now time.Time, prices ...price) (wait time.Duration, ok bool) {
	var taken [8]*rate.Reservation
	res := taken[:0]
	for _, p := range prices {
		if p.from == nil || p.tokens <= 0 {
			continue
		}
		r := p.from.ReserveN(now, int(min(p.tokens, 1<<30)))
		if !r.OK() {
			for _, t := range res {
				t.CancelAt(now)
			}
			return 0, false
		}
		res = append(res, r)
		wait = max(wait, r.DelayFrom(now))
	}
	if wait == 0 {
		return 0, true
	}
	for _, r := range res {
		r.CancelAt(now)
	}
	return wait, false
}

// budgets are token buckets shared by key (a client address, a user).
// A bucket outlives its last connection until it has refilled: a client
// that disconnects and comes back gets the budget it left with, not a
// fresh one.
type budgets struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	m       map[string]*budget
	acquire int // acquisitions since the last sweep
}

type budget struct {
	lim  *rate.Limiter
	refs int
}

func newBudgets(perSecond float64, burst int) *budgets {
	return &budgets{limit: rate.Limit(perSecond), burst: burst, m: map[string]*budget{}}
}

// get returns key's bucket, counting a holder until put.
func (b *budgets) get(key string, now time.Time) *rate.Limiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.acquire++; b.acquire >= 1024 {
		b.sweep(now)
	}
	e := b.m[key]
	if e == nil {
		e = &budget{lim: rate.NewLimiter(b.limit, b.burst)}
		b.m[key] = e
	}
	e.refs++
	return e.lim
}

// put releases a holder of key's bucket.
func (b *budgets) put(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.m[key]; e != nil {
		e.refs--
	}
}

// sweep forgets the buckets nobody holds that have refilled.
func (b *budgets) sweep(now time.Time) {
	b.acquire = 0
	for k, e := range b.m {
		if e.refs <= 0 && e.lim.TokensAt(now) >= float64(b.burst) {
			delete(b.m, k)
		}
	}
}
