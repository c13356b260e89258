// Package natsbroker is a [collab.Broker] on NATS: the commit fan-out
// between Tandem nodes that share a store (storage/jsstore).
//
// Each node publishes the records it committed once, on
// <prefix>.commits.<document>, after they are durable; each node with the
// document open subscribes once and hands them to the document, which
// fans them out to its own clients (encoded once per node). Core NATS is
// at most once, and that is enough: a Broker is a hint. A node that misses
// a message sees the gap at the next one, or conflicts at its next commit,
// and reads what it missed from the store. The message says which node
// committed (a header), for turns.
//
// Signals (collab.Signal: a turn asked for, a rename, a restore, a
// delete) go on <prefix>.signals.<document>.
//
// It carries presence too (collab.PresenceBroker), on
// <prefix>.presence.<document>: each node's participants of the document,
// as they join, move and leave, and all of them every heartbeat. Lost
// messages are repaired by the next heartbeat; a node that stops sending
// them has its participants expire on the others.
package natsbroker

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/storage"
)

// nodeHeader names the node that committed the records of a message.
const nodeHeader = "Tandem-Node"

// Broker is a collab.Broker over a NATS connection.
type Broker struct {
	nc     *nats.Conn
	prefix string
	log    *slog.Logger
}

var (
	_ collab.Broker         = (*Broker)(nil)
	_ collab.PresenceBroker = (*Broker)(nil)
)

// New returns a Broker publishing and subscribing under prefix (default
// "tandem").
func New(nc *nats.Conn, prefix string, log *slog.Logger) *Broker {
	if prefix == "" {
		prefix = "tandem"
	}
	if log == nil {
		log = slog.Default()
	}
	return &Broker{nc: nc, prefix: prefix, log: log}
}

// subject is a kind of message about document doc.
func (b *Broker) subject(kind, doc string) string {
	// '.' separates a subject's tokens; '~' is not in document ids.
	return b.prefix + "." + kind + "." + strings.ReplaceAll(doc, ".", "~")
}

// publish sends v as JSON. It does not block: the NATS client buffers,
// and a message it cannot send is a gap the receivers repair.
func (b *Broker) publish(kind, doc string, header nats.Header, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		b.log.Error("broker: encode", "kind", kind, "doc", doc, "err", err)
		return
	}
	if err := b.nc.PublishMsg(&nats.Msg{Subject: b.subject(kind, doc), Data: data, Header: header}); err != nil {
		level := slog.LevelDebug // presence and signals come often and matter less
		if kind == "commits" {
			level = slog.LevelWarn
		}
		b.log.Log(context.Background(), level, "broker: publish", "kind", kind, "doc", doc, "err", err)
	}
}

// subscribe delivers the messages of a kind about doc that decode as T and
// are valid. Without a subscription a document still converges (through
// its conflicts, its heartbeats): it only hears later.
func subscribe[T any](b *Broker, kind, doc string, valid func(T) bool, deliver func(*nats.Msg, T)) func() {
	sub, err := b.nc.Subscribe(b.subject(kind, doc), func(m *nats.Msg) {
		var v T
		if err := json.Unmarshal(m.Data, &v); err != nil || !valid(v) {
			b.log.Warn("broker: a message that does not decode", "kind", kind, "doc", doc, "err", err)
			return
		}
		deliver(m, v)
	})
	if err != nil {
		b.log.Warn("broker: subscribe", "kind", kind, "doc", doc, "err", err)
		return func() {}
	}
	return func() { sub.Unsubscribe() }
}

// Publish implements collab.Broker.
func (b *Broker) Publish(doc, node string, recs []storage.Record) {
	b.publish("commits", doc, nats.Header{nodeHeader: []string{node}}, recs)
}

// Subscribe implements collab.Broker.
func (b *Broker) Subscribe(doc string, deliver func(node string, recs []storage.Record)) func() {
	return subscribe(b, "commits", doc, func(recs []storage.Record) bool { return len(recs) > 0 },
		func(m *nats.Msg, recs []storage.Record) { deliver(m.Header.Get(nodeHeader), recs) })
}

// Signal implements collab.Broker.
func (b *Broker) Signal(doc string, s collab.Signal) { b.publish("signals", doc, nil, s) }

// SubscribeSignals implements collab.Broker.
func (b *Broker) SubscribeSignals(doc string, deliver func(collab.Signal)) func() {
	return subscribe(b, "signals", doc, func(s collab.Signal) bool { return s.Node != "" },
		func(_ *nats.Msg, s collab.Signal) { deliver(s) })
}

// PublishPresence implements collab.PresenceBroker.
func (b *Broker) PublishPresence(doc string, u collab.PresenceUpdate) {
	b.publish("presence", doc, nil, u)
}

// SubscribePresence implements collab.PresenceBroker.
func (b *Broker) SubscribePresence(doc string, deliver func(collab.PresenceUpdate)) func() {
	return subscribe(b, "presence", doc, func(u collab.PresenceUpdate) bool { return u.Node != "" },
		func(_ *nats.Msg, u collab.PresenceUpdate) { deliver(u) })
}
