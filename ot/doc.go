// Package ot is Tandem's operational-transformation engine for plain text.
//
// # The model
//
// A document is a string of Unicode code points. An [Op] walks the document
// from its start with three kinds of [Component]: skip (retain) n code
// points, insert a string, delete n code points. Past its last component an op
// retains the rest of the document. Every position and length counts code
// points: not UTF-8 bytes, not UTF-16 units (browsers convert).
//
// Ops are wire-compatible with ShareDB's text-unicode type (npm
// ot-text-unicode v4): the JSON form is an array where a positive integer is
// a skip, a non-empty string an insert, and {"d": N} a delete; {"d": "text"}
// is a delete that carries the text it removes, which [Apply] checks. For
// valid inputs [Transform], [Compose], [Apply] and [Normalize] give the same
// JSON as text-unicode; testdata/vectors.json, generated from the npm package
// by testdata/gen, holds the reference cases.
//
// A server that receives an op built on an old revision transforms it against
// every op committed since, one by one, then applies it. Not against their
// composition: transformation does not distribute over composition where
// deletes surround a concurrent insert (doc "xy", a = [{"d":1}], b = ["z",
// {"d":1}], op = [1,"w"]: one by one gives "wz", against the composition "zw"),
// and clients transform one op at a time, so the server must too.
//
//	for _, committed := range since {
//		op, err = ot.Transform(op, committed, ot.Left)
//	}
//	err = rope.Apply(op)
//
// [TransformPosition] and [TransformSelection] move cursors and selections
// through an op; [Invert] gives the op that undoes one.
//
// # Values, errors and cost
//
// Everything here is a pure function on values, safe for concurrent use: no
// goroutines, no I/O, no clock, and no function modifies the ops it is given.
// Functions accept any well-formed op, normalized or not, and return
// normalized ops. Malformed input gives an error wrapping [ErrInvalidOp],
// [ErrTooLong] or [ErrDeleteMismatch], never a panic.
//
// The string functions cost O(document length) per call. A server holds each
// document in a [Rope], a B-tree of text chunks whose Apply costs O(log n) per
// component plus the size of the change.
package ot
