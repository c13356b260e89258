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
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/tandemdocs/tandem/collab"
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

func (b *Broker) subject(doc string) string { return b.prefix + ".commits." + token(doc) }

// token is a document id as a subject token: '.' separates a subject's
// tokens; '~' is not in document ids.
func token(doc string) string { return strings.ReplaceAll(doc, ".", "~") }

// Publish implements collab.Broker. It does not block: the NATS client
// buffers, and a message it cannot send is a gap the receivers repair.
func (b *Broker) Publish(doc, node string, recs []storage.Record) {
	data, err := json.Marshal(recs)
	if err != nil {
		b.log.Error("broker: encode records", "doc", doc, "err", err)
		return
	}
	msg := &nats.Msg{Subject: b.subject(doc), Data: data, Header: nats.Header{nodeHeader: []string{node}}}
	if err := b.nc.PublishMsg(msg); err != nil {
		b.log.Warn("broker: publish", "doc", doc, "err", err)
	}
}

// Subscribe implements collab.Broker.
func (b *Broker) Subscribe(doc string, deliver func(node string, recs []storage.Record)) func() {
	sub, err := b.nc.Subscribe(b.subject(doc), func(m *nats.Msg) {
		var recs []storage.Record
		if err := json.Unmarshal(m.Data, &recs); err != nil || len(recs) == 0 {
			b.log.Warn("broker: a message that is not records", "doc", doc, "err", err)
			return
		}
		deliver(m.Header.Get(nodeHeader), recs)
	})
	if err != nil {
		// Without a subscription the document still converges, through
		// its conflicts: it only hears later.
		b.log.Warn("broker: subscribe", "doc", doc, "err", err)
		return func() {}
	}
	return func() { sub.Unsubscribe() }
}

// Signal implements collab.Broker, on <prefix>.signals.<document>.
func (b *Broker) Signal(doc string, s collab.Signal) {
	data, err := json.Marshal(s)
	if err != nil {
		b.log.Error("broker: encode signal", "doc", doc, "err", err)
		return
	}
	if err := b.nc.Publish(b.prefix+".signals."+token(doc), data); err != nil {
		b.log.Debug("broker: signal", "doc", doc, "kind", s.Kind, "err", err)
	}
}

// SubscribeSignals implements collab.Broker.
func (b *Broker) SubscribeSignals(doc string, deliver func(collab.Signal)) func() {
	sub, err := b.nc.Subscribe(b.prefix+".signals."+token(doc), func(m *nats.Msg) {
		var s collab.Signal
		if err := json.Unmarshal(m.Data, &s); err != nil || s.Node == "" {
			b.log.Warn("broker: a message that is not a signal", "doc", doc, "err", err)
			return
		}
		deliver(s)
	})
	if err != nil {
		b.log.Warn("broker: subscribe to signals", "doc", doc, "err", err)
		return func() {}
	}
	return func() { sub.Unsubscribe() }
}

// PublishPresence implements collab.PresenceBroker.
func (b *Broker) PublishPresence(doc string, u collab.PresenceUpdate) {
	data, err := json.Marshal(u)
	if err != nil {
		b.log.Error("broker: encode presence", "doc", doc, "err", err)
		return
	}
	if err := b.nc.Publish(b.prefix+".presence."+token(doc), data); err != nil {
		b.log.Debug("broker: publish presence", "doc", doc, "err", err)
	}
}

// SubscribePresence implements collab.PresenceBroker.
func (b *Broker) SubscribePresence(doc string, deliver func(collab.PresenceUpdate)) func() {
	sub, err := b.nc.Subscribe(b.prefix+".presence."+token(doc), func(m *nats.Msg) {
		var u collab.PresenceUpdate
		if err := json.Unmarshal(m.Data, &u); err != nil || u.Node == "" {
			b.log.Warn("broker: a message that is not a presence update", "doc", doc, "err", err)
			return
		}
		deliver(u)
	})
	if err != nil {
		b.log.Warn("broker: subscribe to presence", "doc", doc, "err", err)
		return func() {}
	}
	return func() { sub.Unsubscribe() }
}
