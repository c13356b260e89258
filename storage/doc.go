// Package storage defines how Tandem keeps documents: the Store interface in
// domain terms (documents, records, snapshots, the exactly-once index) with
// no database types, plus what is built on any Store (Load, TextAt, Retain).
//
// # The model
//
// A document starts at revision 0 with its initial text. Every committed
// operation is a Record at the next revision: revisions are dense (1..Head,
// never two records at one revision, never a gap), and Commit is a
// compare-and-swap on the head, so a second writer gets ErrConflict instead
// of forking the history. A Snapshot is the whole text at a revision; the
// text at revision r is the newest snapshot at or before r plus the records
// after it, so loading reads one snapshot and a short tail, never the whole
// history. Compaction (off unless asked for) drops old records behind a
// snapshot; history stays available from Document.Oldest on.
//
// Records carry the submitting client's source id and sequence number;
// LookupSubmission maps them back to the revision they were committed at,
// so a client that resubmits after a reconnect or a server crash gets its
// original revision instead of a second copy of its edit.
//
// Implementations: badgerstore (durable, embedded) and memstore (in memory,
// for tests of the layers above). storagetest is the conformance suite every
// implementation passes.
package storage
