// Package natsbroker is a [collab.Broker] on NATS: the commit fan-out
// between Tandem nodes that share a store (storage/jsstore).
//
// Each node publishes the records it committed once, on
// <prefix>.commits.<document>, after they are durable; each node with the
// document open subscribes once and hands them to the document, which
// fans them out to its own clients (encoded once per node). Core NATS is
// at most once, and that is enough: a Broker is a hint. A node that misses
// a message sees the gap at the next one, or conflicts at its next commit,
// and reads what it missed from the store.
package natsbroker

import (
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/tandemdocs/tandem/collab"
	"github.com/tandemdocs/tandem/storage"
)

// Broker is a collab.Broker over a NATS connection.
type Broker struct {
	nc     *nats.Conn
	prefix string
	log    *slog.Logger
}

var _ collab.Broker = (*Broker)(nil)

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

func (b *Broker) subject(doc string) string {
	// '.' separates a subject's tokens; '~' is not in document ids.
	return b.prefix + ".commits." + strings.ReplaceAll(doc, ".", "~")
}

// Publish implements collab.Broker. It does not block: the NATS client
// buffers, and a message it cannot send is a gap the receivers repair.
func (b *Broker) Publish(doc string, recs []storage.Record) {
	data, err := json.Marshal(recs)
	if err != nil {
		b.log.Error("broker: encode records", "doc", doc, "err", err)
		return
	}
	if err := b.nc.Publish(b.subject(doc), data); err != nil {
		b.log.Warn("broker: publish", "doc", doc, "err", err)
	}
}

// Subscribe implements collab.Broker.
func (b *Broker) Subscribe(doc string, deliver func([]storage.Record)) func() {
	sub, err := b.nc.Subscribe(b.subject(doc), func(m *nats.Msg) {
		var recs []storage.Record
		if err := json.Unmarshal(m.Data, &recs); err != nil || len(recs) == 0 {
			b.log.Warn("broker: a message that is not records", "doc", doc, "err", err)
			return
		}
		deliver(recs)
	})
	if err != nil {
		// Without a subscription the document still converges, through
		// its conflicts: it only hears later.
		b.log.Warn("broker: subscribe", "doc", doc, "err", err)
		return func() {}
	}
	return func() { sub.Unsubscribe() }
}
