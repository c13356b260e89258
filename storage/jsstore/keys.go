package jsstore

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// The shapes stored in JetStream (metadata, log entries, snapshots) and
// the subjects and keys they live under.

// meta is a document's entry in DOCS.
type meta struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Created time.Time `json:"created"`
	Gen     string    `json:"gen"`
	Oldest  int64     `json:"oldest"`
	Indexed int64     `json:"indexed"` // the exactly-once index holds every record up to this revision
	// Base is the time of revision Oldest when the document was imported
	// there (storage.Portable) and has no message on the log yet.
	Base time.Time `json:"base,omitzero"`
	// Type is the document type; "" is plain (and older data).
	Type string `json:"type,omitempty"`
}

// entry is a message of the log: one append.
type entry struct {
	Records []record `json:"records"`
}

type record struct {
	Rev    int64           `json:"rev"`
	Op     json.RawMessage `json:"op"` // in the document type's wire form
	Source string          `json:"src,omitempty"`
	Seq    uint64          `json:"seq,omitempty"`
	User   string          `json:"user,omitempty"`
	Time   time.Time       `json:"time"`
}

func (r record) record(t doctype.Type) (storage.Record, error) {
	op, _, err := t.ParseOp(r.Op)
	if err != nil {
		return storage.Record{}, fmt.Errorf("%w: revision %d: %v", storage.ErrCorrupt, r.Rev, err)
	}
	return storage.Record{Rev: r.Rev, Op: op, Source: r.Source, Seq: r.Seq, User: r.User, Time: r.Time}, nil
}

// snapValue is a snapshot's entry in SNAPS.
type snapValue struct {
	Text string `json:"text"`
	// From is the log sequence to read the records after the snapshot
	// from (on the document's subject): the first message that may hold
	// one.
	From uint64 `json:"from"`
}

func (s *Store) logSubject(id, gen string) string {
	// Ids may hold '.', a subject's token separator; '~' is not in ids.
	return s.subject + "." + strings.ReplaceAll(id, ".", "~") + "." + gen
}

// key is an id as a bucket key or key token: '.' separates a key's
// tokens, and '=' is not in ids.
func key(id string) string { return strings.ReplaceAll(id, ".", "=") }

func unkey(k string) string { return strings.ReplaceAll(k, "=", ".") }

func scope(id, gen string) string { return key(id) + "." + gen + "." }

func snapKey(id, gen string, rev int64) string { return fmt.Sprintf("%s%020d", scope(id, gen), rev) }

func subKey(id, gen, source string, seq uint64) string {
	return scope(id, gen) + hex.EncodeToString([]byte(source)) + "." + strconv.FormatUint(seq, 10)
}

func newGen() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
