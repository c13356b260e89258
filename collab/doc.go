// Package collab is Tandem's collaboration core: one hub per open document,
// the document manager, and the group committer they share. It talks to
// connections through the small Conn interface and to disk through
// storage.Store; it knows nothing of HTTP or WebSockets.
//
// # The model
//
// A hub is one goroutine that owns a document: every event (a client
// joining or leaving, an op, a selection, the outcome of a commit) runs on
// it, one at a time, so the document needs no locks. A submitted op, built
// on revision r, is deduplicated by its (source, seq), transformed against
// every op committed after r one by one, applied to the hub's head rope, and
// queued for the group committer. The hub keeps one append in flight; ops
// that arrive meanwhile wait and go together in the next one, and the
// committer writes the appends of every hub that has one in one durable
// Store.Commit. Only when that write returns does the hub acknowledge the
// authors and broadcast the ops to everyone else, each message encoded once
// for all receivers. A second rope holds the durable text: new clients get
// it (or the durable ops they missed), never anything that could still be
// lost.
//
// Presence (each client's selections, name and colour) lives in the hub,
// not on disk: selections are moved through every op as it becomes durable,
// and broadcast with join and leave.
//
// A client's outbound queue is the connection's business (see web): when it
// cannot take a message, the hub closes it with CloseResync instead of
// dropping the message, and the client catches up after reconnecting. A
// failed commit leaves the head ahead of the disk, so the hub sends every
// client to resync and the next connection reloads the document from the
// store; exactly-once sorts out which unacknowledged ops reached the disk.
//
// Documents are loaded on first use (the newest snapshot and the records
// after it) and unloaded after an idle timeout with a final snapshot. The
// wire protocol is documented in docs/protocol.md.
package collab
