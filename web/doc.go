// Package web will hold the HTTP routes, the WebSocket wiring that adapts
// sessions to collab, and the embedded browser client and demo.
//
// Not built yet: see issues 4 and 5.
package web
