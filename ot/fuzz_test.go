package ot_test

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/tandemdocs/tandem/ot"
)

// FuzzUnmarshalJSON checks that decoding never panics, accepts only valid
// JSON, and that what it accepts is normalized and round-trips.
func FuzzUnmarshalJSON(f *testing.F) {
	for _, s := range []string{
		`[]`, `[1,"a",{"d":2}]`, `["\ud83d\ude00"]`, `["\ud83d"]`, `[{"d":"x"}]`,
		`[0]`, `[1.5]`, `[{"d":1,"d":2}]`, `[3,{"d":"é"},"漢"]`, "[\"\xff\"]",
		`[1,2,"a","b",{"d":1},{"d":"z"}]`, `null`, `[{"d":-1}]`, `["\u0000"]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		op, err := ot.ParseJSON(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if !isNormalized(op) {
			t.Fatalf("%q decoded to unnormalized %v", data, op)
		}
		js, err := op.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON(%#v): %v", op, err)
		}
		back, err := ot.ParseJSON(js)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", js, err)
		}
		js2, _ := back.MarshalJSON()
		if string(js) != string(js2) {
			t.Fatalf("round trip %s -> %s", js, js2)
		}
		// encoding/json must read our output as the same strings.
		var generic []any
		if err := json.Unmarshal(js, &generic); err != nil || len(generic) != len(op) {
			t.Fatalf("encoding/json reads %s as %v, %v", js, generic, err)
		}
	})
}

// opFromBytes turns fuzz bytes into an op valid on doc: each pair of bytes
// is a component kind and a length.
func opFromBytes(doc string, data []byte) ot.Op {
	runes := []rune(doc)
	var op ot.Op
	pos := 0
	for i := 0; i+1 < len(data); i += 2 {
		n := int(data[i+1]%8) + 1
		switch data[i] % 4 {
		case 0:
			n = min(n, len(runes)-pos)
			if n > 0 {
				op = append(op, ot.Skip(n))
				pos += n
			}
		case 1:
			s := make([]rune, n)
			for j := range s {
				s[j] = propAlphabet[(int(data[i])/4+j)%len(propAlphabet)]
			}
			op = append(op, ot.Insert(string(s)))
		case 2:
			n = min(n, len(runes)-pos)
			if n > 0 {
				op = append(op, ot.Delete(n))
				pos += n
			}
		case 3:
			n = min(n, len(runes)-pos)
			if n > 0 {
				op = append(op, ot.DeleteText(string(runes[pos:pos+n])))
				pos += n
			}
		}
	}
	return op
}

// FuzzProperties checks convergence, compose, invert and cursor bounds on
// ops built from the fuzz input.
func FuzzProperties(f *testing.F) {
	f.Add("hello world", []byte{0, 3, 1, 2, 2, 1}, []byte{0, 4, 2, 3, 1, 0}, 3)
	f.Add("a😀b漢e\u0301", []byte{1, 0, 0, 1, 3, 2}, []byte{0, 1, 2, 1, 1, 5}, 2)
	f.Add("", []byte{1, 1}, []byte{1, 2}, 0)
	f.Fuzz(func(t *testing.T, doc string, da, db []byte, pos int) {
		if !utf8.ValidString(doc) || len(doc) > 200 || len(da) > 64 || len(db) > 64 {
			return
		}
		n := utf8.RuneCountInString(doc)
		if pos < 0 || pos > n {
			pos = 0
		}
		checkProperties(t, doc, opFromBytes(doc, da), opFromBytes(doc, db), pos)
	})
}
