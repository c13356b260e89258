// Package protocol is Tandem's wire protocol in one place
// (docs/protocol.md is its prose): the version, the message types, the
// error codes and close codes, the one struct every server message decodes
// into, and the reader of server frames. The server (package collab)
// encodes its messages with hand-written appenders, for speed, and a test
// there decodes every one of them with this package, so the two cannot
// drift; the Go client (package client) and the tests read frames with
// it.
//
// Adding a field to a message is one edit here (Message), one in the
// server's encoder (internal/collab/protocol.go), the docs, and the browser client
// (internal/web/static/js), which is JavaScript.
package protocol

import (
	"encoding/json"

	"github.com/tandemdocs/tandem/ot"
)

// Version is the protocol's version, sent in every hello.
const Version = 2

// The types of server messages (Message.Type) and of client messages.
const (
	TypeHello    = "hello"    // the first frame: the document (or the ops since the client's revision) and the peers
	TypeAck      = "ack"      // the client's op is durable, at Rev
	TypeOp       = "op"       // another client's op (server), or an op to submit (client)
	TypeSel      = "sel"      // a participant's selections
	TypeJoin     = "join"     // a participant came
	TypeLeave    = "leave"    // a participant went
	TypeTitle    = "title"    // the document was renamed
	TypeRestored = "restored" // a participant restored an earlier revision (client and server)
	TypeError    = "error"    // something was refused, with a stable Code
)

// Error codes sent in error messages (and by the HTTP API). They are stable:
// clients switch on them.
const (
	CodeInvalidOp   = "invalid_op"   // the op is malformed or does not apply
	CodeRevAhead    = "rev_ahead"    // the op or selection is based on a revision the server has not reached
	CodeRevTooOld   = "rev_too_old"  // the base revision's history is no longer retained: resync
	CodeTooLarge    = "too_large"    // the op or the document would exceed a limit
	CodeRejected    = "rejected"     // the application's rules (Config.CheckOp) refused the op: reason says which
	CodeNotFound    = "not_found"    // no such document
	CodeForbidden   = "forbidden"    // not allowed (origin, deleted document)
	CodeRateLimited = "rate_limited" // too many messages; slow down
	// CodeTooFarBehind: the op is more work to transform than the
	// connection's whole budget (its parts times the revisions since its
	// base): catch up (reconnect with rev) and send it again, same seq.
	CodeTooFarBehind = "too_far_behind"
	CodeBadMessage   = "bad_message" // not a message of this protocol
	CodeInternal     = "internal"    // the server failed; retry later
	// CodeStorageFull: the server's disk is (nearly) full; it takes no
	// edits until space comes back. Keep the op and resend it later.
	CodeStorageFull = "storage_full"
	// CodeSourceDenied: the connection named a source without the key that
	// proves it owns it.
	CodeSourceDenied = "source_denied"
	// CodeDocumentFull: the document has as many connections as it takes;
	// try again later.
	CodeDocumentFull = "document_full"
	// CodeBadSeq: the op's seq breaks the sequence rules (docs/protocol.md):
	// 0, older than the source's newest committed op without being
	// committed itself, or already in flight on this connection.
	CodeBadSeq = "bad_seq"
)

// WebSocket close codes the server uses besides the standard ones.
const (
	// CloseResync: the server could not deliver everything to this client
	// (its queue overflowed) or lost track of the document; reconnect with
	// the last revision seen and catch up.
	CloseResync = 4001
	// CloseNotFound: the document does not exist (or was deleted).
	CloseNotFound = 4004
	// CloseTokenExpired: the connection's token expired; reconnect with a
	// fresh one.
	CloseTokenExpired = 4003
	// CloseTryAgainLater is the standard 1013: refused for now (the
	// document is full); reconnect with backoff.
	CloseTryAgainLater = 1013
	// CloseGoingAway is the standard 1001: the server is shutting down.
	CloseGoingAway = 1001
	// ClosePolicy is the standard 1008: the connection was refused for
	// what it asked (a source without its key, say); the error message
	// before it says why. Reconnecting the same way will not help.
	ClosePolicy = 1008
)

// Message is any server message (or a client's, whose fields are a
// subset); fields a type does not use stay zero. A frame is one message
// or a JSON array of them (ParseFrame).
type Message struct {
	Type     string          `json:"type"`
	Protocol int             `json:"protocol"`
	Doc      string          `json:"doc"`
	Title    string          `json:"title"`
	Rev      int64           `json:"rev"`
	From     int64           `json:"from"`
	Seq      uint64          `json:"seq"`
	Op       json.RawMessage `json:"op"`
	Src      string          `json:"src"`
	Key      string          `json:"key"`
	Client   string          `json:"client"`
	User     string          `json:"user"`
	Name     string          `json:"name"`
	Color    string          `json:"color"`
	Text     *string         `json:"text"`
	Delta    json.RawMessage `json:"delta"`
	DocType  string          `json:"doctype"`
	Ops      []Message       `json:"ops"`
	Peers    []Message       `json:"peers"`
	Sel      []ot.Selection  `json:"sel"`
	Code     string          `json:"code"`
	Message  string          `json:"message"`
	Reason   string          `json:"reason"`
	// Time is when an op was committed, in Unix milliseconds.
	Time int64 `json:"time"`
	// RetryAfter is the server's hint, in milliseconds, on an error that
	// is retried.
	RetryAfter int64 `json:"retryAfter"`
	// More: the participants of a crowded document a hello does not list
	// one by one.
	More int `json:"more"`
}
