// Package collab will hold Tandem's per-document hubs (transform, commit,
// acknowledge, broadcast, presence) and the document manager, talking to
// connections through a small interface of its own.
//
// Not built yet: see issue 4.
package collab
