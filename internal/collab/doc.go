// Package collab is Tandem's collaboration core: a pure state machine per
// open document, the driver that does its I/O, the document manager, the
// group committer the documents share, and each connection's outbound
// queue. It talks to connections through the small Conn interface, to
// disk through storage.Store, and to other servers through Broker; it
// knows nothing of HTTP, WebSockets or Badger.
//
// # The core
//
// A document's logic is a deterministic state machine (core.go, with a file
// per concern beside it: join.go, messages.go, sources.go for exactly-once,
// history.go, commit.go, writers.go for other writers, presence.go), in the
// style of etcd's raft RawNode: events go in (a client joined or left, a
// message arrived, a commit or a read completed, another writer committed,
// the disk filled up, shutdown) and each step returns a ready: what to
// persist (at most one append outstanding), what to read (history, the
// exactly-once index, another writer's records), which snapshot to save,
// and which messages to send to whom. It starts no goroutine, reads no
// clock (time comes with the events), takes no lock and calls no Store
// method; TestCoreIsPure checks that, and the transcripts in testdata/core
// pin its behaviour event by event.
//
// A submitted op, built on revision r, is deduplicated by its (source,
// seq), transformed against every op after r one by one, applied to the
// head rope and queued; ops that arrive while an append is outstanding go
// together in the next one. Only when the append is durable does the core
// acknowledge the authors and broadcast to everyone else, each message
// encoded once. A second rope holds the durable text: joining clients get
// it (or the durable ops they missed), never anything that could still be
// lost. Presence (selections, names, colours) is moved through every op
// as it becomes durable; it is not persisted.
//
// Bounded cost: the core keeps the recent history in memory. An op, a
// selection or a catch-up that needs older records waits for the driver
// to read them (its client's later messages wait with it; everyone
// else's go on), and one more than MaxLag revisions behind is refused.
// The transform work is paid for from the connection's rate budget before
// the message reaches the document (Client.Handle), and the core bills
// what the estimate missed.
//
// A second writer (another server over the same store) is expected: an
// append can come back as a conflict. The core then reads the other
// writer's records, broadcasts them, moves selections through them, and
// submits its pending ops again on top of them (dropping any that the
// records show were committed already: a client that moved between
// servers). Records pushed by a Broker are applied the same way, and a
// gap in them is read from the store. A core that loses a race asks the
// others for a turn (a Signal), and a core asked holds its next append
// until the asker's commit arrives or TurnWait passes: optimistic
// compare-and-swap alone lets the node that commits back to back starve
// the others. Renames, restores and deletes travel as Signals too.
//
// With a PresenceBroker, each core also tells the other servers of its
// participants (joins, selections, leaves, and its whole list every
// heartbeat) and shows theirs to its clients like its own, each
// selection moved to its own durable revision; a server that goes quiet
// has its participants expire (presence.go).
//
// # The driver and the manager
//
// The driver (driver.go) runs one open document: it feeds the core its
// events, one at a time, on a goroutine that exists only while there are
// events to take (a quiet document costs no stack), and does what each
// ready asks — appends go to the group
// committer, which writes the appends of every document that has one in
// one durable Store.Commit; reads, lookups and snapshots run in goroutines
// of their own and come back as events. Nothing slow happens on the
// document's loop. The Manager loads documents on first use, counts the
// Connects on their way to each (the only references outside the core),
// unloads a document after IdleTimeout with a final snapshot, opens and
// closes the write gate (SetWritable: the disk is nearly full), and shuts
// everything down in order.
//
// # Connections
//
// A connection's messages wait in its outbox (outbox.go), which keeps at
// most two frames in the transport and sends whatever queued up meanwhile
// as one frame; past its bounds the connection is closed with CloseResync
// (the client reconnects and catches up), so no message is ever silently
// dropped. Sources belong to keys (SourceOf): a client proves its source
// by presenting the key, so a source seen on the wire cannot be used by
// anyone else.
//
// The wire protocol is documented in docs/protocol.md.
package collab
