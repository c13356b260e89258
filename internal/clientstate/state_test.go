package clientstate

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/protocol"
)

func parse(t testing.TB, frame string) protocol.Message {
	t.Helper()
	msgs, err := protocol.ParseFrame([]byte(frame))
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%s: %v", frame, err)
	}
	return msgs[0]
}

func joined(t testing.TB, hello string) *State {
	t.Helper()
	s := New("k")
	if _, err := s.Hello(parse(t, hello)); err != nil {
		t.Fatal(err)
	}
	s.Connected = true
	return s
}

// Others' selections are in the server's coordinates: an op from the
// server moves them as the server committed it, however the op lands on
// the local text (after our own unacknowledged edits). The simulator found
// them moved through the local version (seed 4533835966291625772).
func TestPeersMoveInServerCoordinates(t *testing.T) {
	s := joined(t, `{"type":"hello","protocol":2,"doctype":"plain","client":"me","src":"S","rev":0,"text":"abcdef",
		"peers":[{"client":"p","sel":[{"anchor":4,"head":4}]}]}`)
	// Our own edit, not acknowledged: "XXabcdef" locally.
	if _, err := s.Edit(doctype.PlainOp(ot.Op{ot.Insert("XX")})); err != nil {
		t.Fatal(err)
	}
	// Someone deletes "a" at 0 (server coordinates).
	if _, err := s.Handle(parse(t, `{"type":"op","rev":1,"op":[{"d":1}],"client":"q","src":"Q","seq":1}`)); err != nil {
		t.Fatal(err)
	}
	if got := s.Peers["p"].Sel; !slices.Equal(got, []ot.Selection{{Anchor: 3, Head: 3}}) {
		t.Fatalf("p's caret at %v, want 3 (4, moved through the delete at 0)", got)
	}
	// Our op is acknowledged at revision 2: the caret moves through it.
	if _, err := s.Handle(parse(t, `{"type":"ack","seq":1,"rev":2}`)); err != nil {
		t.Fatal(err)
	}
	if got := s.Peers["p"].Sel; !slices.Equal(got, []ot.Selection{{Anchor: 5, Head: 5}}) {
		t.Fatalf("p's caret at %v, want 5 (after our insert of two at 0)", got)
	}
}

// A hello's peers are at its revision: the catch-up ops before it do not
// move them (seed 3372400930864790988).
func TestHelloPeersAreAtItsRevision(t *testing.T) {
	s := joined(t, `{"type":"hello","protocol":2,"doctype":"plain","client":"me","src":"S","rev":0,"text":"abc"}`)
	s.Connected = false
	_, err := s.Hello(parse(t, `{"type":"hello","protocol":2,"doctype":"plain","client":"me2","src":"S","rev":1,"from":0,
		"ops":[{"rev":1,"op":["xyz"],"client":"q","src":"Q","seq":1}],
		"peers":[{"client":"p","sel":[{"anchor":5,"head":6}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Peers["p"].Sel; !slices.Equal(got, []ot.Selection{{Anchor: 5, Head: 6}}) {
		t.Fatalf("p's selection at %v, want it as the hello gave it", got)
	}
	if s.Text.Content() != "xyzabc" || s.Rev != 1 {
		t.Fatalf("text %q at %d", s.Text.Content(), s.Rev)
	}
}

// An op of our own source that another connection sent is its ack when
// it is the one in flight; otherwise (a client that reloaded and never
// sent it) it is an op like any other.
func TestOwnSourceOp(t *testing.T) {
	s := joined(t, `{"type":"hello","protocol":2,"doctype":"plain","client":"me","src":"S","rev":0,"text":"abc"}`)
	if _, err := s.Handle(parse(t, `{"type":"op","rev":1,"op":["x"],"client":"old","src":"S","seq":7}`)); err != nil {
		t.Fatal(err)
	}
	if s.Text.Content() != "xabc" {
		t.Fatalf("text %q", s.Text.Content())
	}
	frame, err := s.Edit(doctype.PlainOp(ot.Op{ot.Skip(4), ot.Insert("!")}))
	if err != nil || frame == nil {
		t.Fatal(frame, err)
	}
	r, err := s.Handle(parse(t, `{"type":"op","rev":2,"op":[4,"!"],"client":"old","src":"S","seq":1}`))
	if err != nil || len(r.Notices) != 1 || r.Notices[0].Kind != Acked || !s.Synced() || s.Text.Content() != "xabc!" {
		t.Fatalf("%+v %v synced=%v %q", r, err, s.Synced(), s.Text.Content())
	}
}

// FuzzHandle: whatever a server sends after a hello, the state machine
// answers with an error or a state, never a panic.
func FuzzHandle(f *testing.F) {
	for _, seed := range []string{
		`{"type":"op","rev":1,"op":[3,"x"],"client":"q","src":"Q","seq":1}`,
		`[{"type":"ack","seq":1,"rev":1},{"type":"sel","client":"p","rev":1,"sel":[{"anchor":9,"head":-1}]}]`,
		`{"type":"error","code":"storage_full","seq":1,"retryAfter":1000}`,
		`{"type":"op","rev":1,"op":[{"d":99}]}`,
		`{"type":"join","client":"p"}`,
		`{"type":"hello"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		s := joined(t, `{"type":"hello","protocol":2,"doctype":"plain","client":"me","src":"S","rev":0,"text":"abcdef",
			"peers":[{"client":"p","sel":[{"anchor":2,"head":4}]}]}`)
		if _, err := s.Edit(doctype.PlainOp(ot.Op{ot.Skip(3), ot.Insert("é")})); err != nil {
			t.Fatal(err)
		}
		msgs, err := protocol.ParseFrame(frame)
		if err != nil {
			return
		}
		for _, m := range msgs {
			if _, err := s.Handle(m); err != nil {
				return
			}
		}
		if _, err := json.Marshal(s.Peers); err != nil {
			t.Fatal(err)
		}
	})
}
