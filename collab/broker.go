package collab

import (
	"slices"
	"sync"

	"github.com/tandemdocs/tandem/storage"
)

// Broker carries commits between Managers that write to one shared store
// (a cluster), so that each hears of the others' records without waiting
// for a conflict. It is a hint: a Manager that misses a message still
// converges, because its next commit conflicts and it reads what it
// missed, and a gap in what it hears makes it read the store.
type Broker interface {
	// Publish announces records node just committed to document doc, in
	// order. It must not block for long: it runs on the document's loop.
	Publish(doc, node string, recs []storage.Record)
	// Subscribe calls deliver with records others publish for doc, and
	// the node that committed them (possibly the subscriber's own, which
	// it ignores), until the returned function is called. deliver must
	// not block.
	Subscribe(doc string, deliver func(node string, recs []storage.Record)) (unsubscribe func())
	// AskTurn tells the other writers of doc that writer node lost a
	// commit race and asks for a turn (see TurnWait): fairness, a hint
	// too. It must not block for long.
	AskTurn(doc, node string)
	// SubscribeTurns calls deliver with the node of every AskTurn for doc
	// (possibly the subscriber's own) until the returned function is
	// called. deliver must not block.
	SubscribeTurns(doc string, deliver func(node string)) (unsubscribe func())
}

// MemoryBroker is a Broker within one process: for tests, and for running
// several Managers over one store.
// It is a PresenceBroker too.
type MemoryBroker struct {
	mu       sync.Mutex
	subs     map[string][]*subscription
	presence map[string][]*presenceSub
	turns    map[string][]*turnSub
}

type turnSub struct{ deliver func(string) }

type subscription struct {
	deliver func(string, []storage.Record)
}

type presenceSub struct{ deliver func(PresenceUpdate) }

// NewMemoryBroker returns an empty MemoryBroker.
func NewMemoryBroker() *MemoryBroker {
	return &MemoryBroker{subs: map[string][]*subscription{}, presence: map[string][]*presenceSub{}, turns: map[string][]*turnSub{}}
}

// AskTurn implements Broker.
func (b *MemoryBroker) AskTurn(doc, node string) {
	b.mu.Lock()
	subs := slices.Clone(b.turns[doc])
	b.mu.Unlock()
	for _, s := range subs {
		s.deliver(node)
	}
}

// SubscribeTurns implements Broker.
func (b *MemoryBroker) SubscribeTurns(doc string, deliver func(string)) func() {
	s := &turnSub{deliver: deliver}
	b.mu.Lock()
	b.turns[doc] = append(b.turns[doc], s)
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.turns[doc] = slices.DeleteFunc(b.turns[doc], func(x *turnSub) bool { return x == s })
		if len(b.turns[doc]) == 0 {
			delete(b.turns, doc)
		}
	}
}

// PublishPresence implements PresenceBroker.
func (b *MemoryBroker) PublishPresence(doc string, u PresenceUpdate) {
	b.mu.Lock()
	subs := slices.Clone(b.presence[doc])
	b.mu.Unlock()
	for _, s := range subs {
		s.deliver(u)
	}
}

// SubscribePresence implements PresenceBroker.
func (b *MemoryBroker) SubscribePresence(doc string, deliver func(PresenceUpdate)) func() {
	s := &presenceSub{deliver: deliver}
	b.mu.Lock()
	b.presence[doc] = append(b.presence[doc], s)
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.presence[doc] = slices.DeleteFunc(b.presence[doc], func(x *presenceSub) bool { return x == s })
		if len(b.presence[doc]) == 0 {
			delete(b.presence, doc)
		}
	}
}

// Publish implements Broker.
func (b *MemoryBroker) Publish(doc, node string, recs []storage.Record) {
	b.mu.Lock()
	subs := slices.Clone(b.subs[doc])
	b.mu.Unlock()
	for _, s := range subs {
		s.deliver(node, recs)
	}
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(doc string, deliver func(string, []storage.Record)) func() {
	s := &subscription{deliver: deliver}
	b.mu.Lock()
	b.subs[doc] = append(b.subs[doc], s)
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.subs[doc] = slices.DeleteFunc(b.subs[doc], func(x *subscription) bool { return x == s })
		if len(b.subs[doc]) == 0 {
			delete(b.subs, doc)
		}
	}
}
