package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"

	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
)

// Problem is one inconsistency found by Verify.
type Problem struct {
	// Doc is the document concerned; "" for a key outside any document
	// (a key that is not in the layout at all).
	Doc string
	// Rev is the revision concerned, -1 when the problem is not about one
	// revision (metadata, a malformed key).
	Rev int64
	// What describes the problem.
	What string
}

func (p Problem) String() string {
	switch {
	case p.Doc == "":
		return p.What
	case p.Rev < 0:
		return fmt.Sprintf("document %s: %s", p.Doc, p.What)
	}
	return fmt.Sprintf("document %s: revision %d: %s", p.Doc, p.Rev, p.What)
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	// Documents is the number of live documents verified (deletion markers
	// and metadata that does not decode are not counted).
	Documents int
	// Records, Snapshots and Submissions count the keys of live documents'
	// retained history: records at Oldest+1..Head, snapshots at
	// Oldest..Head, and every exactly-once entry of their generation.
	Records, Snapshots, Submissions int
	// Stray counts keys no live document claims: keys of deleted documents
	// and of earlier generations of an id (a delete whose sweep was cut
	// short), records at or before a document's Oldest and snapshots before
	// it (a compaction whose sweep was cut short), and keys of an id that
	// has no metadata at all. Only the last kind is also a Problem: no
	// interrupted sweep leaves it (a deleted document keeps its marker), so
	// it means the metadata of a document was lost. Keys outside the key
	// layout are counted here too, and are Problems as well.
	Stray int
	// Problems lists the inconsistencies, in the order found: documents in
	// id order, then keys outside any live document. At most
	// 1000 are listed per document, and 1000 for keys outside documents;
	// past that, one more Problem says how many were left out.
	Problems []Problem
}

// maxProblemsPerDoc bounds the problems listed for one document (and for
// keys outside documents), so that a badly damaged store makes a report of
// bounded size.
const maxProblemsPerDoc = 1000

// verifyPage is how many document ids are read per listing transaction.
const verifyPage = 256

// Verify replays every document from its snapshots and records and checks
// that they agree, that the history is dense and decodes, and that the
// exactly-once index matches the records. It reads one document at a time,
// each in its own read-only transaction (a consistent view of it, while
// commits to other documents go on), streaming its keys: memory is bounded
// by one document's text, not by the store.
//
// For each live document (deletion markers are skipped, their leftover keys
// counted as Stray) it checks that:
//
//   - the metadata decodes and adds up (id, 0 <= Oldest <= Head, a
//     generation), and Updated is the head record's time (Created's, at
//     revision 0);
//   - records Oldest+1..Head are all there, decode, hold the revision of
//     their key and a well-formed op, and no record lies beyond Head;
//   - a snapshot exists at Oldest (at 0 for an uncompacted document), none
//     lies beyond Head, and every snapshot is valid UTF-8 and equals the
//     text replayed up to its revision: the replay starts from the snapshot
//     at Oldest and applies every record once, in order, comparing each
//     snapshot as its revision is reached, so the cost is one pass over the
//     history (plus one comparison per snapshot). A record that does not
//     apply is named; after a break (a record missing, not decoding or not
//     applying) the replay starts again from the next snapshot;
//   - every exactly-once entry holds a revision in 1..Head, and for one
//     after Oldest the record at that revision has exactly that source and
//     seq; every retained record with a Source has its entry, pointing at it.
//
// Keys of other generations of a live id, records at or before Oldest and
// snapshots before it are leftovers of interrupted sweeps (see
// DeleteDocument and Compact): they are counted as Stray, not reported.
// Keys of an id with no metadata at all, keys outside the layout and
// malformed keys are reported as Problems.
//
// Corrupt data never makes Verify fail or panic: everything it finds is a
// Problem naming the document and revision. It returns an error only when
// it cannot read (the store is closed, ctx is done), with the report so far.
// progress, if not nil, is called after each live document with the number
// verified so far.
func (s *Store) Verify(ctx context.Context, progress func(docsDone int)) (VerifyReport, error) {
	var rep VerifyReport
	if s.isClosed() {
		return rep, fmt.Errorf("verify: %w", storage.ErrClosed)
	}
	after := []byte(nil)
	for {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("verify: %w", err)
		}
		ids, err := s.docIDs(after)
		if err != nil {
			return rep, fmt.Errorf("verify: list documents: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		for _, id := range ids {
			if err := ctx.Err(); err != nil {
				return rep, fmt.Errorf("verify: %w", err)
			}
			live, err := s.verifyDoc(ctx, id, &rep)
			if err != nil {
				return rep, fmt.Errorf("verify: document %s: %w", id, err)
			}
			if live && progress != nil {
				progress(rep.Documents)
			}
		}
		after = append(docKey(ids[len(ids)-1]), 0)
	}
	if err := s.verifyOrphans(ctx, &rep); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	return rep, nil
}

// docIDs returns up to verifyPage ids of metadata keys from the key start
// on (the beginning when start is nil).
func (s *Store) docIDs(start []byte) ([]string, error) {
	var ids []string
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: docPrefix})
		defer it.Close()
		if start == nil {
			start = docPrefix
		}
		for it.Seek(start); it.Valid() && len(ids) < verifyPage; it.Next() {
			ids = append(ids, string(it.Item().Key()[len(docPrefix):]))
		}
		return nil
	})
	return ids, err
}

// problems collects one document's problems, up to maxProblemsPerDoc.
type problems struct {
	rep     *VerifyReport
	doc     string
	n       int
	dropped int
}

func (p *problems) add(rev int64, format string, args ...any) {
	p.addFor(p.doc, rev, format, args...)
}

// addFor adds a problem about another document than p's (keys of ids with
// no metadata, which share one bound).
func (p *problems) addFor(doc string, rev int64, format string, args ...any) {
	if p.n >= maxProblemsPerDoc {
		p.dropped++
		return
	}
	p.n++
	p.rep.Problems = append(p.rep.Problems, Problem{Doc: doc, Rev: rev, What: fmt.Sprintf(format, args...)})
}

func (p *problems) done() {
	if p.dropped > 0 {
		p.rep.Problems = append(p.rep.Problems, Problem{Doc: p.doc, Rev: -1, What: fmt.Sprintf("%d more problems not listed", p.dropped)})
		p.dropped = 0
	}
}

// readFailed decides what an error reading a value is: an error for Verify
// to return if the store was closed under it, otherwise damage (a value-log
// entry that is missing or fails its checksum), which the caller reports as
// a Problem.
func (s *Store) readFailed(err error) error {
	if errors.Is(err, badger.ErrDBClosed) || s.isClosed() {
		return storage.ErrClosed
	}
	return nil
}

// verifyDoc verifies one document in one read transaction. live reports
// whether it was a live document.
func (s *Store) verifyDoc(ctx context.Context, id string, rep *VerifyReport) (live bool, err error) {
	probs := &problems{rep: rep, doc: id}
	defer probs.done()
	defer func() {
		// Badger's iterators panic on a closed database; anything else is a
		// bug met on damaged data, which must not take the caller down.
		if p := recover(); p != nil {
			if s.isClosed() {
				err = storage.ErrClosed
				return
			}
			probs.add(-1, "verification of this document stopped: unexpected failure on its data: %v", p)
		}
	}()
	err = s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(docKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil // gone since the listing: only damage removes metadata
		}
		if err != nil {
			return err
		}
		b, err := item.ValueCopy(nil)
		if err != nil {
			if e := s.readFailed(err); e != nil {
				return e
			}
			probs.add(-1, "metadata cannot be read: %v", err)
			return nil
		}
		if err := storage.CheckID(id); err != nil {
			probs.add(-1, "metadata key under an invalid document id: %v", err)
			return nil
		}
		d, err := decodeDoc(id, b)
		if err != nil {
			probs.add(-1, "metadata: %s", trimCorrupt(err, id, -1))
			return nil
		}
		if d.Deleted {
			n, err := s.countKeys(ctx, txn, id, 0, nil)
			rep.Stray += n
			return err
		}
		live = true
		rep.Documents++
		v := &docVerifier{s: s, ctx: ctx, txn: txn, id: id, d: d, rep: rep, probs: probs}
		return v.run()
	})
	return live, err
}

// countKeys counts the record, snapshot and exactly-once keys of id of
// every generation but skipGen (0: count all). A malformed key (too short
// to hold a generation) is reported to probs if it is not nil, and counted
// otherwise.
func (s *Store) countKeys(ctx context.Context, txn *badger.Txn, id string, skipGen uint64, probs *problems) (int, error) {
	n := 0
	for _, prefix := range [][]byte{recPrefix, snpPrefix, subPrefix} {
		scope := docScope(prefix, id)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: scope})
		for it.Rewind(); it.Valid(); {
			if n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					it.Close()
					return n, err
				}
			}
			key := it.Item().Key()
			if len(key) < len(scope)+8 {
				if probs != nil {
					probs.add(-1, "malformed key %q (no generation)", key)
				} else {
					n++
				}
				it.Next()
				continue
			}
			gen := binary.BigEndian.Uint64(key[len(scope):])
			if skipGen != 0 && gen == skipGen {
				if gen == math.MaxUint64 {
					break
				}
				it.Seek(genScope(prefix, id, gen+1))
				continue
			}
			n++
			it.Next()
		}
		it.Close()
	}
	return n, nil
}

// docVerifier checks one live document within one read transaction.
type docVerifier struct {
	s     *Store
	ctx   context.Context
	txn   *badger.Txn
	id    string
	d     docValue
	rep   *VerifyReport
	probs *problems

	// The replay: rope holds the text at revision at, replayed from the
	// snapshot at base; nil while the replay is broken.
	rope     doctype.Document
	at, base int64

	snaps     *badger.Iterator // the live generation's snapshots
	snapScope []byte
	snapRev   int64 // the current snapshot's revision; -1 when there is none left

	headTime   time.Time // the head record's, if it decoded
	headTimeOK bool
	steps      int
}

func (v *docVerifier) problem(rev int64, format string, args ...any) {
	v.probs.add(rev, format, args...)
}

// tick checks for cancellation now and then.
func (v *docVerifier) tick() error {
	v.steps++
	if v.steps%1024 == 0 {
		return v.ctx.Err()
	}
	return nil
}

func (v *docVerifier) run() error {
	d := v.d
	n, err := v.s.countKeys(v.ctx, v.txn, v.id, d.Gen, v.probs)
	v.rep.Stray += n
	if err != nil {
		return err
	}

	v.snapScope = genScope(snpPrefix, v.id, d.Gen)
	v.snaps = v.txn.NewIterator(badger.IteratorOptions{Prefix: v.snapScope})
	defer v.snaps.Close()
	v.snaps.Rewind()
	if err := v.nextSnapshot(); err != nil {
		return err
	}
	if v.snapRev != d.Oldest {
		what := "no snapshot at the oldest retained revision: the replay cannot start there"
		if d.Oldest == 0 {
			what = "no snapshot at revision 0 (the text as created): the replay cannot start there"
		}
		v.problem(d.Oldest, "%s", what)
	}
	if err := v.replay(); err != nil {
		return err
	}
	v.checkUpdated()
	return v.checkSubmissions()
}

// nextSnapshot moves the snapshot cursor to the next snapshot in
// Oldest..Head, counting those before Oldest as stray and reporting
// malformed keys and snapshots beyond the head on the way.
func (v *docVerifier) nextSnapshot() error {
	for ; v.snaps.Valid(); v.snaps.Next() {
		if err := v.tick(); err != nil {
			return err
		}
		key := v.snaps.Item().Key()
		if len(key) != len(v.snapScope)+8 {
			v.problem(-1, "malformed snapshot key %q", key)
			continue
		}
		rev := revOf(key)
		switch {
		case rev < 0 || rev > v.d.Head:
			v.problem(rev, "snapshot beyond the head (%d)", v.d.Head)
		case rev < v.d.Oldest:
			v.rep.Stray++
		default:
			v.rep.Snapshots++
			v.snapRev = rev
			return nil
		}
	}
	v.snapRev = -1
	return nil
}

// snapshotsThrough checks every snapshot up to revision limit against the
// replay, or restarts a broken replay from it.
func (v *docVerifier) snapshotsThrough(limit int64) error {
	for v.snapRev >= 0 && v.snapRev <= limit {
		rev := v.snapRev
		err := v.snaps.Item().Value(func(text []byte) error {
			v.checkSnapshot(rev, text)
			return nil
		})
		if err != nil {
			if e := v.s.readFailed(err); e != nil {
				return e
			}
			v.problem(rev, "snapshot cannot be read: %v", err)
			if v.at != rev {
				v.rope = nil
			}
		}
		v.snaps.Next()
		if err := v.nextSnapshot(); err != nil {
			return err
		}
	}
	return nil
}

func (v *docVerifier) checkSnapshot(rev int64, text []byte) {
	if !utf8.Valid(text) {
		v.problem(rev, "snapshot is not valid UTF-8 (byte %d)", invalidAt(text))
		if v.rope != nil && v.at != rev {
			v.rope = nil // it cannot restart the replay either
		}
		return
	}
	if v.rope != nil && v.at == rev {
		if ok, at := sameText(v.rope, text); !ok {
			v.problem(rev, "snapshot (%d bytes) differs from the text replayed from the snapshot at revision %d (%d bytes), from byte %d on",
				len(text), v.base, v.rope.Size(), at)
		}
		return
	}
	// The replay is broken (or not started): restart it here.
	rope, err := v.d.document().DocType().NewDocument(string(text))
	if err != nil {
		v.problem(rev, "snapshot cannot be loaded: %v", err)
		v.rope = nil
		return
	}
	v.rope, v.at, v.base = rope, rev, rev
}

// replay walks the live generation's records in order, checking each one,
// applying it to the replayed text and checking the snapshots as their
// revisions are reached.
func (v *docVerifier) replay() error {
	d := v.d
	scope := genScope(recPrefix, v.id, d.Gen)
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: scope, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	want := d.Oldest + 1
	for it.Rewind(); it.Valid(); it.Next() {
		if err := v.tick(); err != nil {
			return err
		}
		item := it.Item()
		key := item.Key()
		if len(key) != len(scope)+8 {
			v.problem(-1, "malformed record key %q", key)
			continue
		}
		rev := revOf(key)
		switch {
		case rev < 0 || rev > d.Head:
			v.problem(rev, "record beyond the head (%d)", d.Head)
			continue
		case rev <= d.Oldest:
			v.rep.Stray++
			continue
		}
		v.rep.Records++
		if rev > want {
			v.missing(want, rev-1)
		}
		want = rev + 1
		if err := v.snapshotsThrough(rev - 1); err != nil {
			return err
		}
		var rec storage.Record
		err := item.Value(func(b []byte) error {
			var err error
			rec, err = decodeRecord(v.d.document().DocType(), v.id, key, b)
			return err
		})
		if err != nil {
			if e := v.s.readFailed(err); e != nil {
				return e
			}
			v.problem(rev, "record does not decode: %s", trimCorrupt(err, v.id, rev))
			v.rope = nil
			continue
		}
		if err := v.checkRecord(rec); err != nil {
			return err
		}
		if rev == d.Head {
			v.headTime, v.headTimeOK = rec.Time, true
		}
		if v.rope == nil || v.at != rev-1 {
			v.rope = nil // revisions before it are missing, or did not apply
			continue
		}
		if err := v.rope.Apply(rec.Op); err != nil {
			v.problem(rev, "record does not apply to the text at revision %d (replayed from the snapshot at %d): %v", rev-1, v.base, err)
			v.rope = nil
			continue
		}
		v.at = rev
	}
	if want <= d.Head {
		v.missing(want, d.Head)
	}
	return v.snapshotsThrough(d.Head)
}

func (v *docVerifier) missing(from, to int64) {
	if from == to {
		v.problem(from, "record missing")
	} else {
		v.problem(from, "records %d..%d missing", from, to)
	}
}

// checkRecord checks a decoded record's op and its exactly-once entry.
func (v *docVerifier) checkRecord(rec storage.Record) error {
	if err := rec.Op.Check(); err != nil {
		v.problem(rec.Rev, "record holds a malformed op: %v", err)
	}
	if rec.Source == "" {
		return nil
	}
	if len(rec.Source) > storage.MaxSourceLen {
		v.problem(rec.Rev, "record's source is %d bytes, longer than %d: it can have no exactly-once entry", len(rec.Source), storage.MaxSourceLen)
		return nil
	}
	item, err := v.txn.Get(subKey(v.id, v.d.Gen, rec.Source, rec.Seq))
	if errors.Is(err, badger.ErrKeyNotFound) {
		v.problem(rec.Rev, "no exactly-once entry for the record's source %q and seq %d", rec.Source, rec.Seq)
		return nil
	}
	if err != nil {
		return err
	}
	err = item.Value(func(b []byte) error {
		switch {
		case len(b) != 8:
			v.problem(rec.Rev, "the exactly-once entry for the record's source %q and seq %d does not hold a revision (%d bytes)",
				rec.Source, rec.Seq, len(b))
		case int64(binary.BigEndian.Uint64(b)) != rec.Rev:
			v.problem(rec.Rev, "the exactly-once entry for the record's source %q and seq %d points at revision %d",
				rec.Source, rec.Seq, int64(binary.BigEndian.Uint64(b)))
		}
		return nil
	})
	if err != nil {
		if e := v.s.readFailed(err); e != nil {
			return e
		}
		v.problem(rec.Rev, "the exactly-once entry for the record's source %q and seq %d cannot be read: %v", rec.Source, rec.Seq, err)
	}
	return nil
}

// checkUpdated checks the metadata's Updated time against the head record
// (or Created, at revision 0).
func (v *docVerifier) checkUpdated() {
	d := v.d
	switch {
	case d.Head == 0:
		if !d.Updated.Equal(d.Created) {
			v.problem(-1, "metadata: updated %s at revision 0, not the creation time %s", d.Updated, d.Created)
		}
	case v.headTimeOK:
		if !d.Updated.Equal(v.headTime) {
			v.problem(d.Head, "metadata: updated %s, not the head record's time %s", d.Updated, v.headTime)
		}
	}
}

// checkSubmissions walks the live generation's exactly-once entries.
func (v *docVerifier) checkSubmissions() error {
	d := v.d
	scope := genScope(subPrefix, v.id, d.Gen)
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: scope, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := v.tick(); err != nil {
			return err
		}
		v.rep.Submissions++
		item := it.Item()
		tail := item.Key()[len(scope):]
		if len(tail) < 1 || len(tail) != 1+int(tail[0])+8 {
			v.problem(-1, "malformed exactly-once key %q", item.Key())
			continue
		}
		source := string(tail[1 : 1+tail[0]])
		seq := binary.BigEndian.Uint64(tail[1+tail[0]:])
		if source == "" {
			v.problem(-1, "exactly-once entry with an empty source (seq %d)", seq)
		}
		var rev int64
		valid := false
		err := item.Value(func(b []byte) error {
			if len(b) != 8 {
				v.problem(-1, "exactly-once entry for %q/%d holds %d bytes, not a revision", source, seq, len(b))
				return nil
			}
			rev, valid = int64(binary.BigEndian.Uint64(b)), true
			return nil
		})
		if err != nil {
			if e := v.s.readFailed(err); e != nil {
				return e
			}
			v.problem(-1, "exactly-once entry for %q/%d cannot be read: %v", source, seq, err)
			continue
		}
		if !valid {
			continue
		}
		if rev < 1 || rev > d.Head {
			v.problem(rev, "exactly-once entry for %q/%d points outside the revisions 1..%d", source, seq, d.Head)
			continue
		}
		if rev <= d.Oldest {
			continue // its record was compacted away; entries outlive it
		}
		if err := v.checkEntryRecord(source, seq, rev); err != nil {
			return err
		}
	}
	return nil
}

// checkEntryRecord checks that the record at rev was submitted as
// source/seq.
func (v *docVerifier) checkEntryRecord(source string, seq uint64, rev int64) error {
	item, err := v.txn.Get(revKey(recPrefix, v.id, v.d.Gen, rev))
	if errors.Is(err, badger.ErrKeyNotFound) {
		v.problem(rev, "exactly-once entry for %q/%d points at this revision, whose record is missing", source, seq)
		return nil
	}
	if err != nil {
		return err
	}
	var rec struct {
		Source string `json:"src"`
		Seq    uint64 `json:"seq"`
	}
	var decodeErr error
	err = item.Value(func(b []byte) error {
		decodeErr = json.Unmarshal(b, &rec)
		return nil
	})
	if err != nil {
		if e := v.s.readFailed(err); e != nil {
			return e
		}
		decodeErr = err
	}
	switch {
	case decodeErr != nil:
		v.problem(rev, "exactly-once entry for %q/%d points at this revision, whose record does not decode", source, seq)
	case rec.Source != source || rec.Seq != seq:
		v.problem(rev, "exactly-once entry for %q/%d points at this revision, whose record was submitted as %q/%d",
			source, seq, rec.Source, rec.Seq)
	}
	return nil
}

// verifyOrphans looks for keys no document's metadata claims: record,
// snapshot and exactly-once keys of ids with no metadata key at all, and
// keys outside the layout.
func (s *Store) verifyOrphans(ctx context.Context, rep *VerifyReport) (err error) {
	probs := &problems{rep: rep}
	defer probs.done()
	defer func() {
		if p := recover(); p != nil {
			if s.isClosed() {
				err = storage.ErrClosed
				return
			}
			probs.add(-1, "verification of keys outside documents stopped: unexpected failure: %v", p)
		}
	}()
	kinds := []struct {
		prefix []byte
		what   string
	}{{recPrefix, "records"}, {snpPrefix, "snapshots"}, {subPrefix, "exactly-once entries"}}
	for _, kind := range kinds {
		err := s.view(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: kind.prefix})
			defer it.Close()
			steps := 0
			it.Rewind()
			for it.Valid() {
				if steps++; steps%1024 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				key := it.Item().Key()
				rest := key[len(kind.prefix):]
				i := bytes.IndexByte(rest, 0)
				if i < 0 {
					probs.add(-1, "malformed key %q (no document id)", key)
					it.Next()
					continue
				}
				id := string(rest[:i])
				next := append(append(append([]byte{}, kind.prefix...), id...), 1)
				_, err := txn.Get(docKey(id))
				if err == nil {
					it.Seek(next) // the id's document (or its marker) accounts for them
					continue
				}
				if !errors.Is(err, badger.ErrKeyNotFound) {
					return err
				}
				n := 0
				for ; it.Valid() && bytes.Compare(it.Item().Key(), next) < 0; it.Next() {
					n++
				}
				rep.Stray += n
				probs.addFor(id, -1, "%d %s under an id with no metadata (d/%s): the document's metadata was lost, or the keys are not Tandem's", n, kind.what, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// Keys outside the layout: skip over each known prefix.
	return s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		known := [][]byte{docPrefix, recPrefix, snpPrefix, subPrefix, chgPrefix, posPrefix}
		steps := 0
		it.Rewind()
	keys:
		for it.Valid() {
			if steps++; steps%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			key := it.Item().Key()
			for _, p := range known {
				if bytes.HasPrefix(key, p) {
					end := append([]byte{}, p...)
					end[len(end)-1]++
					it.Seek(end)
					continue keys
				}
			}
			if !bytes.Equal(key, formatKey) && !bytes.Equal(key, backupKey) && !bytes.Equal(key, trimmedKey) {
				rep.Stray++
				probs.add(-1, "key %q is not in Tandem's key layout", key)
			}
			it.Next()
		}
		return nil
	})
}

// sameText reports whether the rope holds text, and if not, the byte
// offset of the first difference.
func sameText(d doctype.Document, text []byte) (bool, int) {
	c := &compareWriter{want: text}
	if r := doctype.PlainRope(d); r != nil {
		r.WriteTo(c) // chunk by chunk: no copy of a large text
	} else {
		c.Write([]byte(d.Content()))
	}
	if c.differ || c.off != len(text) {
		return false, c.off
	}
	return true, 0
}

// compareWriter compares what is written to it with want, stopping at the
// first difference.
type compareWriter struct {
	want   []byte
	off    int
	differ bool
}

var errDiffer = errors.New("texts differ")

func (c *compareWriter) Write(p []byte) (int, error) {
	rest := c.want[c.off:]
	n := min(len(p), len(rest))
	for i := 0; i < n; i++ {
		if p[i] != rest[i] {
			c.off += i
			c.differ = true
			return i, errDiffer
		}
	}
	c.off += n
	if n < len(p) {
		c.differ = true
		return n, errDiffer
	}
	return n, nil
}

// trimCorrupt returns the message of an ErrCorrupt error of decodeDoc or
// decodeRecord without what a Problem says already: the sentinel, the
// document and the revision.
func trimCorrupt(err error, id string, rev int64) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, storage.ErrCorrupt.Error()+": ")
	msg = strings.TrimPrefix(msg, "document "+id+": ")
	msg = strings.TrimPrefix(msg, "metadata: ")
	msg = strings.TrimPrefix(msg, "metadata ")
	if rev >= 0 {
		msg = strings.TrimPrefix(msg, fmt.Sprintf("revision %d: ", rev))
		msg = strings.TrimPrefix(msg, fmt.Sprintf("revision %d ", rev))
	}
	return msg
}

// invalidAt returns the offset of the first byte of b that is not valid
// UTF-8.
func invalidAt(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(b)
}
