package ot_test

import (
	"encoding/json"
	"fmt"

	"github.com/tandemdocs/tandem/ot"
)

func ExampleApply() {
	op := ot.Op{ot.Skip(6), ot.Delete(5), ot.Insert("Welt 🌍")}
	doc, err := ot.Apply("Hello world", op)
	fmt.Println(doc, err)
	// Output: Hello Welt 🌍 <nil>
}

func ExampleTransform() {
	doc := "ab"
	alice := ot.Op{ot.Skip(1), ot.Insert("X")} // aXb
	bob := ot.Op{ot.Skip(2), ot.Insert("Y")}   // abY

	// The server committed alice's op first; bob's arrives built on the
	// same revision, so it is transformed against alice's.
	bob2, _ := ot.Transform(bob, alice, ot.Left)
	afterAlice, _ := ot.Apply(doc, alice)
	final, _ := ot.Apply(afterAlice, bob2)
	fmt.Println(bob2, final)
	// Output: [3,"Y"] aXbY
}

func ExampleCompose() {
	a := ot.Op{ot.Insert("Hi")}
	b := ot.Op{ot.Skip(2), ot.Insert(" there")}
	ab, _ := ot.Compose(a, b)
	fmt.Println(ab)
	// Output: ["Hi there"]
}

func ExampleInvert() {
	doc := "Hello world"
	op := ot.Op{ot.Skip(5), ot.Delete(6)}
	undo, _ := ot.Invert(op, doc)
	after, _ := ot.Apply(doc, op)
	back, _ := ot.Apply(after, undo)
	fmt.Println(undo, back)
	// Output: [5," world"] Hello world
}

func ExampleTransformPosition() {
	op := ot.Op{ot.Insert("😀 ")} // insert at the start
	fmt.Println(ot.TransformPosition(0, op, ot.Left), ot.TransformPosition(0, op, ot.Right), ot.TransformPosition(3, op, ot.Left))
	// Output: 0 2 5
}

func ExampleOp_UnmarshalJSON() {
	var op ot.Op
	err := json.Unmarshal([]byte(`[2, "x", 1, 3, {"d": "é"}]`), &op)
	fmt.Println(op, err)

	err = json.Unmarshal([]byte(`["\ud83d"]`), &op)
	fmt.Println(err)
	// Output:
	// [2,"x",4,{"d":"é"}] <nil>
	// ot: invalid op: component 0: at byte 2: lone high surrogate \ud83d
}
