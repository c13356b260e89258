// Package storage will define Tandem's Store: documents, their op log at
// dense revisions, snapshots, and the exactly-once index, in domain terms
// with no database types. Its Badger implementation will live in a
// subpackage, and a conformance suite in storagetest.
//
// Not built yet: see issue 3.
package storage
