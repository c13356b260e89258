package badgerstore

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/backupfile"
)

// FormatVersion is the version of the key layout and value encodings below.
// Open refuses a directory written with another version.
const FormatVersion = "1"

// Key prefixes. Document ids are restricted by storage.CheckID to letters,
// digits, '-', '_' and '.', so the 0x00 that ends an id inside a key can never
// be part of one, and keys of one document sort together, by revision.
//
// Every key under a document also holds its generation: a random number
// chosen when the document is created. A document deleted and created again
// under the same id gets a new generation, so nothing of the old one can be
// mistaken for the new one's, even where a deletion has not reached every
// key (a crash mid-sweep, or an incremental backup taken after Badger
// compacted the deletion's tombstones away: Restore drops keys that no live
// document's generation and retained range claims).
var (
	formatKey = []byte("m/format")
	backupKey = backupfile.TrailerKey // the trailer of a backup file
	docPrefix = []byte("d/")          // d/<id> -> docValue JSON
	recPrefix = []byte("r/")          // r/<id>\x00<gen><rev> -> recordValue JSON
	snpPrefix = []byte("s/")          // s/<id>\x00<gen><rev> -> snapshot text (UTF-8)
	subPrefix = []byte("o/")          // o/<id>\x00<gen><len(source)><source><seq> -> rev
)

func docKey(id string) []byte { return append(append([]byte{}, docPrefix...), id...) }

// docScope returns the prefix of every key of kind prefix under document id,
// of any generation.
func docScope(prefix []byte, id string) []byte {
	k := make([]byte, 0, len(prefix)+len(id)+1+8+8)
	k = append(k, prefix...)
	k = append(k, id...)
	return append(k, 0)
}

// genScope returns the prefix of every key of kind prefix under one
// generation of document id.
func genScope(prefix []byte, id string, gen uint64) []byte {
	return binary.BigEndian.AppendUint64(docScope(prefix, id), gen)
}

func revKey(prefix []byte, id string, gen uint64, rev int64) []byte {
	return binary.BigEndian.AppendUint64(genScope(prefix, id, gen), uint64(rev))
}

// revOf returns the revision a record or snapshot key ends with.
func revOf(key []byte) int64 {
	return int64(binary.BigEndian.Uint64(key[len(key)-8:]))
}

// subKey stores the source length-prefixed: storage.MaxSourceLen fits a byte.
func subKey(id string, gen uint64, source string, seq uint64) []byte {
	k := genScope(subPrefix, id, gen)
	k = append(k, byte(len(source)))
	k = append(k, source...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// splitKey parses a record, snapshot or exactly-once key of kind prefix
// into its document id and generation.
func splitKey(prefix, key []byte) (id string, gen uint64, ok bool) {
	rest := key[len(prefix):]
	i := bytes.IndexByte(rest, 0)
	if i < 0 || len(rest) < i+1+8 {
		return "", 0, false
	}
	return string(rest[:i]), binary.BigEndian.Uint64(rest[i+1:]), true
}

// newGen returns a random non-zero generation.
func newGen() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if g := binary.BigEndian.Uint64(b[:]); g != 0 {
			return g
		}
	}
}

// docValue is the stored form of a document's metadata. Every commit reads
// and writes it, so Badger's conflict detection on this key makes each
// append a compare-and-swap on the head.
type docValue struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	Head    int64     `json:"head"`
	Oldest  int64     `json:"oldest"`
	Gen     uint64    `json:"gen"`
	// Type is the document type; "" is plain (and older data).
	Type string `json:"type,omitempty"`
	// Deleted marks a deleted document (see DeleteDocument).
	Deleted bool `json:"deleted,omitempty"`
}

func (d docValue) document() storage.Document {
	return storage.Document{ID: d.ID, Title: d.Title, Created: d.Created, Updated: d.Updated, Head: d.Head, Oldest: d.Oldest, Type: d.Type}
}

func decodeDoc(id string, b []byte) (docValue, error) {
	var d docValue
	if err := json.Unmarshal(b, &d); err != nil {
		return docValue{}, fmt.Errorf("%w: document %s: metadata: %v", storage.ErrCorrupt, id, err)
	}
	if d.ID != id || d.Head < 0 || d.Oldest < 0 || d.Oldest > d.Head || d.Gen == 0 {
		return docValue{}, fmt.Errorf("%w: document %s: metadata does not add up (id %q, head %d, oldest %d)",
			storage.ErrCorrupt, id, d.ID, d.Head, d.Oldest)
	}
	return d, nil
}

// recordValue is the stored form of a record. The revision is also in the
// key; both are checked against each other on read.
type recordValue struct {
	Rev    int64           `json:"rev"`
	Op     json.RawMessage `json:"op"` // in the document type's wire form
	Source string          `json:"src,omitempty"`
	Seq    uint64          `json:"seq,omitempty"`
	User   string          `json:"user,omitempty"`
	Time   time.Time       `json:"time"`
}

func encodeRecord(r storage.Record) ([]byte, error) {
	return json.Marshal(recordValue{Rev: r.Rev, Op: r.Op.AppendJSON(nil), Source: r.Source, Seq: r.Seq, User: r.User, Time: r.Time.UTC()})
}

func decodeRecord(t doctype.Type, id string, key, b []byte) (storage.Record, error) {
	rev := revOf(key)
	var v recordValue
	if err := json.Unmarshal(b, &v); err != nil {
		return storage.Record{}, fmt.Errorf("%w: document %s: revision %d: %v", storage.ErrCorrupt, id, rev, err)
	}
	if v.Rev != rev {
		return storage.Record{}, fmt.Errorf("%w: document %s: revision %d holds a record for revision %d", storage.ErrCorrupt, id, rev, v.Rev)
	}
	op, _, err := t.ParseOp(v.Op)
	if err != nil {
		return storage.Record{}, fmt.Errorf("%w: document %s: revision %d: %v", storage.ErrCorrupt, id, rev, err)
	}
	return storage.Record{Rev: v.Rev, Op: op, Source: v.Source, Seq: v.Seq, User: v.User, Time: v.Time}, nil
}
