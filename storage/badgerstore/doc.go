// Package badgerstore implements storage.Store on Badger, embedded in the
// server: no database to install.
//
// # Durability
//
// The database is opened with SyncWrites, so every transaction is fsynced
// before Commit returns. Badger barely merges concurrent synced
// transactions, so throughput comes from group commit: Commit writes many
// documents' appends in one synced transaction (split only where Badger's
// transaction size limit, 15% of a memtable, demands, and never inside one
// append).
//
// # Concurrency
//
// Every commit reads and writes its document's metadata key, so Badger's
// conflict detection turns each append into a compare-and-swap on the head:
// of two concurrent commits at one head, one wins and the other is run again
// and reports storage.ErrConflict. (Badger tracks conflicts per key read; a
// prefix scan would not detect a concurrent insert.)
//
// # Key layout (format version 1)
//
// Keys are byte strings; ids are checked by storage.CheckID (letters,
// digits, '-', '_', '.'), so the 0x00 after an id never occurs in one.
// <gen> is the document's generation, a random uint64 chosen when it is
// created; <rev> and <seq> are big-endian uint64, so keys of a document sort
// by revision.
//
//	m/format                                   "1": the layout version; Open refuses others
//	d/<id>                                     document metadata, JSON: id, title, created,
//	                                           updated, head, oldest, gen; or a deletion
//	                                           marker {id, gen, deleted: true}
//	r/<id> 0x00 <gen> <rev>                    record, JSON: rev, op (text-unicode JSON),
//	                                           src, seq, user, time (RFC 3339, UTC)
//	s/<id> 0x00 <gen> <rev>                    snapshot: the document's UTF-8 text at rev
//	o/<id> 0x00 <gen> <len><source> <seq>      exactly-once entry: rev (big-endian uint64);
//	                                           <len> is one byte
//	m/backup                                   only in backup files (and stores restored
//	                                           from them): the trailer, JSON
//
// CreateDocument writes the metadata and a snapshot at revision 0. Records
// are dense: revisions 1..head, none missing, with Oldest+1..head retained
// after compaction. Snapshots are written by the caller (the collaboration
// hub every N revisions, in the same write as the records), so loading a
// document reads the newest snapshot and the records after it. Compact
// writes a snapshot at its cut and moves Oldest in one write, then deletes
// what is older; exactly-once entries outlive it.
//
// Deleting a document replaces its metadata with a deletion marker in one
// write, then sweeps the rest. The marker is a live key, not a tombstone:
// Badger drops tombstones when it compacts its levels, after which an
// incremental backup could not carry the deletion. Generations make keys of
// a deleted document, or of an earlier document with the same id,
// recognizable wherever a sweep did not reach them (a crash mid-sweep, an
// incremental restore): Restore deletes every key that no live document's
// generation and retained range claims.
//
// # Memory
//
// Badger's defaults (64 MiB memtables x 5, a 256 MiB block cache, an
// unbounded index cache, 1 GiB value-log files) suit a database server, not
// a 2-core, small-memory collaboration server. Defaults here: two 16 MiB
// memtables, 16 MiB block and index caches, 64 MiB value-log files, two
// level-0 tables before compaction (stall at four), two compactors.
// Value-log garbage collection runs every five minutes.
//
// # Backup
//
// Backup streams every key version since a version through one read
// transaction (one timestamp: a consistent cut, even across a group commit
// spanning documents) in Badger's own backup format, so `badger restore`
// restores the files as well as Restore does. Each file ends with a trailer
// (one more KV list, key m/backup); Restore refuses a file without it, which
// is how a file cut between two frames is told from a whole one.
package badgerstore
