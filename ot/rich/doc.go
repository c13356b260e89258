// Package rich is Tandem's operational-transformation engine for rich text:
// Quill's Delta, with the semantics of ShareDB's rich-text type (npm
// rich-text 4.1.0 over quill-delta 4.2.2), counted in Unicode code points.
//
// # The model
//
// A document is a list of inserts: text, or an embed (a JSON object with
// one key, such as {"image":"https://…"}), each with optional attributes
// ({"bold":true,"link":"https://…"}). An op ([Delta]) walks the document
// from its start with retain n (changing the attributes of those code points
// when the retain has any, a null value removing the key), insert (text or
// embed, with attributes) and delete n; past its last component it retains
// the rest. The JSON on the wire and on disk is Quill's op array:
//
//	[{"retain":5},{"insert":"Hi","attributes":{"bold":true}},{"delete":2},
//	 {"retain":3,"attributes":{"italic":null}},{"insert":{"image":"https://…"}}]
//
// Lengths count code points (an embed is one). Quill and rich-text count
// UTF-16 units, so an emoji outside the Basic Multilingual Plane is 2 there
// and 1 here; browser clients convert at their edge. A code point is never
// split.
//
// # Semantics
//
// [Compose], [Transform], [Apply], [TransformPosition] and [Invert] are
// rich-text's compose, transform, apply, transformCursor and quill-delta's
// Delta#invert(base), with lengths in code points; a differential test runs
// thousands of seeded random cases through the npm packages and this
// package and finds no difference (see rich_node_test.go). Ties follow
// rich-text: Transform(op, other, ot.Left) gives other priority, so where
// both insert at one place other's text comes first, and where both set one
// attribute other's value stands. A server and its clients both transform
// the later op with Left, so the op committed first wins every tie.
//
// Canonical form is quill-delta's (adjacent equal runs merged, an insert
// before a delete at one place, no trailing plain retain) with attribute
// keys sorted: [Normalize], and every function's result.
//
// # Checks
//
// rich-text checks nothing: one op that retains past the end of a document
// writes a retain into it. Here every function refuses, with an [*Error]
// carrying a stable Code (and wrapping ot.ErrInvalidOp or ot.ErrTooLong): a
// retain or delete past the end of the document, empty components, null
// attributes in inserts, embeds that are not one-key objects, attribute
// values that are not strings, numbers or booleans, and the bounds
// [MaxAttrKey], [MaxAttrValue], [MaxAttrs] and [MaxEmbed].
//
// # Values and cost
//
// Everything but [Document] is a pure function on values; no function
// modifies the ops it is given. The value functions cost O(op + document);
// a server holds a document in a [Document], where applying an op costs
// O(log n) per component plus the size of the change.
package rich
