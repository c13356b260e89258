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
	// Signal tells the other writers of doc something other than a
	// commit (a hint too, at most once). It must not block for long.
	Signal(doc string, s Signal)
	// SubscribeSignals calls deliver with every Signal for doc (possibly
	// the subscriber's own, which it ignores) until the returned function
	// is called. deliver must not block.
	SubscribeSignals(doc string, deliver func(Signal)) (unsubscribe func())
}

// Signal is a notice from one Manager of a cluster to the others about
// a document, besides its commits.
type Signal struct {
	Node string `json:"node"`
	Kind string `json:"kind"`
	// Client and Rev: who restored which revision (SignalRestored).
	Client string `json:"client,omitempty"`
	Rev    int64  `json:"rev,omitempty"`
}

// The kinds of Signal.
const (
	// SignalTurn: Node lost a commit race for the document and asks for
	// a turn (Config.TurnWait).
	SignalTurn = "turn"
	// SignalTitle: the title changed; the others read it from the store
	// and tell their clients.
	SignalTitle = "title"
	// SignalDeleted: the document was deleted; the others close its
	// connections as if it was deleted through them.
	SignalDeleted = "deleted"
	// SignalRestored: a client restored an old revision; the others tell
	// their clients (the restored message).
	SignalRestored = "restored"
)

// MemoryBroker is a Broker and a PresenceBroker within one process: for
// tests, and for running several Managers over one store.
type MemoryBroker struct {
	commits  topic[func(string, []storage.Record)]
	signals  topic[func(Signal)]
	presence topic[func(PresenceUpdate)]
}

// NewMemoryBroker returns an empty MemoryBroker.
func NewMemoryBroker() *MemoryBroker { return &MemoryBroker{} }

// Publish implements Broker.
func (b *MemoryBroker) Publish(doc, node string, recs []storage.Record) {
	for _, deliver := range b.commits.subscribers(doc) {
		deliver(node, recs)
	}
}

// Subscribe implements Broker.
func (b *MemoryBroker) Subscribe(doc string, deliver func(string, []storage.Record)) func() {
	return b.commits.subscribe(doc, deliver)
}

// Signal implements Broker.
func (b *MemoryBroker) Signal(doc string, s Signal) {
	for _, deliver := range b.signals.subscribers(doc) {
		deliver(s)
	}
}

// SubscribeSignals implements Broker.
func (b *MemoryBroker) SubscribeSignals(doc string, deliver func(Signal)) func() {
	return b.signals.subscribe(doc, deliver)
}

// PublishPresence implements PresenceBroker.
func (b *MemoryBroker) PublishPresence(doc string, u PresenceUpdate) {
	for _, deliver := range b.presence.subscribers(doc) {
		deliver(u)
	}
}

// SubscribePresence implements PresenceBroker.
func (b *MemoryBroker) SubscribePresence(doc string, deliver func(PresenceUpdate)) func() {
	return b.presence.subscribe(doc, deliver)
}

// topic is one kind of a MemoryBroker's messages: each document's
// subscribers (F, a deliver function).
type topic[F any] struct {
	mu   sync.Mutex
	subs map[string][]*F
}

func (t *topic[F]) subscribe(doc string, deliver F) (unsubscribe func()) {
	s := &deliver
	t.mu.Lock()
	if t.subs == nil {
		t.subs = map[string][]*F{}
	}
	t.subs[doc] = append(t.subs[doc], s)
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.subs[doc] = slices.DeleteFunc(t.subs[doc], func(x *F) bool { return x == s })
		if len(t.subs[doc]) == 0 {
			delete(t.subs, doc)
		}
	}
}

// subscribers returns doc's subscribers now (delivering outside the lock:
// a subscriber may subscribe or publish).
func (t *topic[F]) subscribers(doc string) []F {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]F, len(t.subs[doc]))
	for i, s := range t.subs[doc] {
		out[i] = *s
	}
	return out
}
