package collab_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tandemdocs/tandem/protocol"
)

// TestServerMessagesAreProtocol reads every frame the core's transcripts
// (testdata/core) show it sending and decodes it strictly into package
// protocol's Message: a field the server writes that the protocol
// package does not define, a type or an error code it does not name,
// fails here. (The transcripts are checked against the core by
// TestCoreTranscripts, so these are the frames the server sends.) Every
// message type must appear somewhere.
func TestServerMessagesAreProtocol(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "core", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	types := map[string]bool{protocol.TypeHello: true, protocol.TypeAck: true, protocol.TypeOp: true, protocol.TypeSel: true,
		protocol.TypeJoin: true, protocol.TypeLeave: true, protocol.TypeTitle: true, protocol.TypeRestored: true, protocol.TypeError: true}
	codes := map[string]bool{}
	for _, c := range []string{protocol.CodeInvalidOp, protocol.CodeRevAhead, protocol.CodeRevTooOld, protocol.CodeTooLarge, protocol.CodeRejected,
		protocol.CodeNotFound, protocol.CodeForbidden, protocol.CodeRateLimited, protocol.CodeTooFarBehind, protocol.CodeBadMessage,
		protocol.CodeInternal, protocol.CodeStorageFull, protocol.CodeSourceDenied, protocol.CodeDocumentFull, protocol.CodeBadSeq} {
		codes[c] = true
	}
	seen := map[string]int{}
	frames := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<24)
		for line := 1; sc.Scan(); line++ {
			_, frame, ok := strings.Cut(sc.Text(), " <- ")
			if !ok || (!strings.HasPrefix(frame, "{") && !strings.HasPrefix(frame, "[")) {
				continue
			}
			frames++
			var strict []protocol.Message
			dec := json.NewDecoder(strings.NewReader(frame))
			dec.DisallowUnknownFields()
			if frame[0] == '[' {
				err = dec.Decode(&strict)
			} else {
				var m protocol.Message
				err = dec.Decode(&m)
				strict = []protocol.Message{m}
			}
			if err != nil {
				t.Errorf("%s:%d: %s: not a protocol.Message: %v", f, line, frame, err)
				continue
			}
			parsed, err := protocol.ParseFrame([]byte(frame))
			if err != nil || !reflect.DeepEqual(normalize(parsed), normalize(strict)) {
				t.Errorf("%s:%d: ParseFrame gives %+v, %v; encoding/json %+v", f, line, parsed, err, strict)
			}
			for _, m := range strict {
				seen[m.Type]++
				if !types[m.Type] {
					t.Errorf("%s:%d: message type %q is not in package protocol", f, line, m.Type)
				}
				if m.Type == protocol.TypeError && !codes[m.Code] {
					t.Errorf("%s:%d: error code %q is not in package protocol", f, line, m.Code)
				}
			}
		}
	}
	for typ := range types {
		if seen[typ] == 0 {
			t.Errorf("no transcript shows a %s message", typ)
		}
	}
	t.Logf("%d frames: %v", frames, seen)
}

// normalize makes empty and nil slices and raw messages compare equal.
func normalize(ms []protocol.Message) []protocol.Message {
	out := make([]protocol.Message, len(ms))
	for i, m := range ms {
		if len(m.Op) == 0 {
			m.Op = nil
		}
		if len(m.Delta) == 0 {
			m.Delta = nil
		}
		if len(m.Sel) == 0 {
			m.Sel = nil
		}
		m.Ops, m.Peers = normalize(m.Ops), normalize(m.Peers)
		if len(m.Ops) == 0 {
			m.Ops = nil
		}
		if len(m.Peers) == 0 {
			m.Peers = nil
		}
		out[i] = m
	}
	return out
}
