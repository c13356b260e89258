package protocol

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzParseFrame: the fast scanner and encoding/json agree on every frame
// the scanner accepts, and nothing panics.
func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"op","rev":4,"op":["!"],"client":"c1","src":"a","seq":1,"user":"u-c1","time":1000}`,
		`[{"type":"ack","seq":1,"rev":4},{"type":"op","rev":5,"op":[3,{"d":2},"x\"y"],"src":"b","seq":9}]`,
		`{"type":"sel","client":"c2","rev":1,"sel":[{"anchor":2,"head":7}]}`,
		`{"type":"error","code":"rate_limited","message":"slow \u00e9 down","seq":3}`,
		`{"type":"hello","protocol":2,"doc":"d","rev":0,"text":"hi","peers":[]}`,
		`{"type":"op","rev":-1,"seq":-2}`,
		`[]`, `[1,]`, `{"type":"op"`, `{"type":"a\/b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := ParseFrame(data)
		if err != nil {
			return
		}
		data = bytes.TrimSpace(data)
		// Whatever parseFrame read, encoding/json reads the same.
		var want []Message
		if len(data) > 0 && data[0] == '[' {
			if json.Unmarshal(data, &want) != nil {
				t.Fatalf("%q: parsed as %+v, but it is not a JSON array of messages", data, msgs)
			}
		} else {
			var m Message
			if json.Unmarshal(data, &m) != nil {
				t.Fatalf("%q: parsed as %+v, but it is not a JSON message", data, msgs)
			}
			want = []Message{m}
		}
		if len(want) != len(msgs) {
			t.Fatalf("%q: %d messages, encoding/json %d", data, len(msgs), len(want))
		}
		for i := range msgs {
			a, b := msgs[i], want[i]
			if string(a.Op) != string(b.Op) {
				var x, y any
				if json.Unmarshal(a.Op, &x) != nil || json.Unmarshal(b.Op, &y) != nil || !reflect.DeepEqual(x, y) {
					t.Fatalf("%q: op %s, encoding/json %s", data, a.Op, b.Op)
				}
			}
			a.Op, b.Op = nil, nil
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("%q:\n scanner %+v\n json    %+v", data, a, b)
			}
		}
	})
}
