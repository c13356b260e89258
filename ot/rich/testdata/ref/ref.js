// Reads cases (JSON lines on stdin) and writes, for each, what npm
// rich-text 4.1.0 makes of them: ot/rich's differential test (see
// rich_node_test.go) compares it with the Go type. Lengths here are
// UTF-16 units, as rich-text counts; the Go side converts.
'use strict';
const readline = require('readline');
const { type, Delta } = require('rich-text');

// Canonical JSON: a component's key first, then its attributes, keys
// sorted (the Go type's canonical form; JavaScript keeps insertion order,
// which carries no meaning and differs between quill-delta's code paths).
function canon(ops) {
  return JSON.stringify(ops.map((op) => {
    const out = {};
    for (const k of ['insert', 'retain', 'delete']) if (k in op) out[k] = op[k];
    if (op.attributes) {
      out.attributes = {};
      for (const k of Object.keys(op.attributes).sort()) out.attributes[k] = op.attributes[k];
    }
    for (const k of Object.keys(op)) if (!(k in out)) out[k] = op[k];
    return out;
  }));
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (!line) return;
  const c = JSON.parse(line);
  const out = { id: c.id };
  out.applyA = canon(type.apply(c.doc, c.a).ops);
  out.applyB = canon(type.apply(c.doc, c.b).ops);
  out.left = canon(type.transform(c.a, c.b, 'left').ops);
  out.right = canon(type.transform(c.a, c.b, 'right').ops);
  // b made after a: b rebased onto a, as a client would receive it.
  const b2 = type.transform(c.b, c.a, 'right');
  out.compose = canon(type.compose(c.a, b2).ops);
  out.invert = canon(new Delta(c.a).invert(new Delta(c.doc)).ops);
  out.cursorOwn = type.transformCursor(c.pos, new Delta(c.a), true);
  out.cursorOther = type.transformCursor(c.pos, new Delta(c.a), false);
  process.stdout.write(JSON.stringify(out) + '\n');
});
