package loadgen

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/ot"
)

// TestHistogram: percentiles within the buckets' 3%.
func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 100000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	l := h.summary(false)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", l.P50, 50}, {"p90", l.P90, 90}, {"p99", l.P99, 99}, {"max", l.Max, 100}} {
		if math.Abs(c.got-c.want)/c.want > 0.03 {
			t.Errorf("%s = %.3f ms, want %.0f ± 3%%", c.name, c.got, c.want)
		}
	}
	if l.Count != 100000 {
		t.Errorf("count %d", l.Count)
	}
}

// TestTypistWalkOp: what a typist learns from an op (its length change,
// and where its backspaced character went) is what applying the op does.
func TestTypistWalkOp(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	checked := 0
	defer func() {
		if checked < 1000 {
			t.Errorf("only %d of 5000 random ops were checked", checked)
		}
	}()
	for i := range 5000 {
		n := rng.IntN(12)
		doc := []rune(strings.Repeat("x", n))
		delAt := -1
		if n > 0 && rng.IntN(4) > 0 {
			delAt = rng.IntN(n)
			doc[delAt] = '#'
		}
		var op ot.Op
		for left := n; left > 0 || rng.IntN(3) == 0; {
			switch k := rng.IntN(3); {
			case k == 0:
				op = append(op, ot.Insert(string([]rune("é😀a")[rng.IntN(3)])))
			case k == 1 && left > 0:
				m := 1 + rng.IntN(left)
				op, left = append(op, ot.Skip(m)), left-m
			case left > 0:
				m := 1 + rng.IntN(left)
				op, left = append(op, ot.Delete(m)), left-m
			}
			if left == 0 && rng.IntN(2) == 0 {
				break
			}
		}
		if op.Check() != nil {
			continue // (adjacent components of a kind: not a normal op)
		}
		raw, err := op.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		after, err := ot.Apply(string(doc), op)
		if err != nil {
			continue // (an op that is not for this document: not this test's)
		}
		checked++
		delta, moved, err := walkOp(raw, delAt)
		if err != nil {
			t.Fatalf("case %d: %s: %v", i, raw, err)
		}
		if want := len([]rune(after)) - n; delta != want {
			t.Fatalf("case %d: %q then %s: delta %d, want %d", i, string(doc), raw, delta, want)
		}
		want := -1
		if delAt >= 0 {
			want = slices.Index([]rune(after), '#')
		}
		if moved != want {
			t.Fatalf("case %d: %q then %s: the character at %d went to %d, want %d", i, string(doc), raw, delAt, moved, want)
		}
	}
}

// FuzzServerFields checks the typists' one-pass reader of server messages
// against encoding/json: on any frame it must not panic, and on a valid
// object it must find what encoding/json finds, and where the object ends.
func FuzzServerFields(f *testing.F) {
	for _, s := range []string{
		`{"type":"op","rev":12,"op":[3,"ab",{"d":1}],"src":"s-1","seq":4,"user":"u","name":"A \"quoted\" name"}`,
		`{"type":"ack","seq":7,"rev":9}`,
		`{"type":"error","code":"rate_limited","seq":3,"retryAfter":250,"message":"too many \\ messages"}`,
		`{ "type" : "sel" , "sel" : [ {"anchor":1,"head":2} ] } , {"type":"ack","seq":1,"rev":2}`,
		`{"type":"op","op":["\u00e9\ud83d\ude00"],"rev":1}`,
		`{"type":"op","rev":`, `{}`, `{"a":"\\"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got serverFields
		rest, ok := got.parse(data)
		// (Keys exactly, as the server spells them; encoding/json's struct
		// fields would match any case.)
		var want map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&want); err != nil || len(data) == 0 || data[0] != '{' {
			return // not a valid object at the start: any answer but a panic
		}
		if !ok {
			t.Fatalf("parse refused %q", data)
		}
		if end := len(data) - len(rest); int64(end) != dec.InputOffset() {
			t.Fatalf("%q: the object ends at %d, parse says %d", data, dec.InputOffset(), end)
		}
		str := func(k string) string {
			var s string
			json.Unmarshal(want[k], &s)
			return s
		}
		num := func(k string) int64 {
			n, _ := strconv.ParseInt(string(want[k]), 10, 64)
			return n
		}
		if unquoted(got.typ) != str("type") || unquoted(got.src) != str("src") || unquoted(got.code) != str("code") ||
			got.rev != num("rev") || got.seq != num("seq") || got.retryAfter != num("retryAfter") {
			t.Fatalf("%q: parse found %+v", data, got)
		}
		if !bytes.Equal(got.op, want["op"]) {
			t.Fatalf("%q: op %q, encoding/json %q", data, got.op, want["op"])
		}
	})
}
