// The client's undo and redo history: the inverses of this client's own
// edits, kept applicable while others edit (each entry is transformed past
// every change that is not ours), with typing merged into steps. Only our
// own edits are ever undone. No I/O; the client (client.js) applies what it
// returns.

import { plain } from './doctypes.js'

export class UndoHistory {
  /** mergeInterval: ms within which consecutive typing is one step;
   * max: the steps kept; type: the document type (doctypes.js). */
  constructor ({ mergeInterval = 500, max = 500, type = plain } = {}) {
    this.type = type
    this.mergeInterval = mergeInterval
    this.max = max
    this.undos = [] // {op, time, shape?}: inverses of our own edits, newest last
    this.redos = []
    this.group = null // the undo entry typing may still merge into
  }

  get canUndo () { return this.undos.some(e => !this.type.isNoop(e.op)) }
  get canRedo () { return this.redos.some(e => !this.type.isNoop(e.op)) }

  /** nextUndo takes the op that undoes the newest step (null if none). */
  nextUndo () { return this._take(this.undos) }

  /** nextRedo takes the op that redoes the newest undone step. */
  nextRedo () { return this._take(this.redos) }

  _take (stack) {
    while (stack.length > 0) {
      const e = stack.pop()
      if (this.type.isNoop(e.op)) continue
      this.group = null
      return e.op
    }
    return null
  }

  /** record notes a local edit op (with its inverse) made for origin:
   * 'edit' (a new step, or merged into the typing before it; clears redo),
   * 'undo' (its inverse becomes a redo step), 'redo' (an undo step again)
   * or 'silent' (not undoable: the history moves past it as past others'
   * edits). */
  record (op, inverse, origin, now = Date.now()) {
    if (origin === 'silent') {
      this.transform(op)
      this.group = null
      return
    }
    if (origin === 'undo') {
      this.redos.push({ op: inverse, time: now })
      return
    }
    if (origin === 'redo') {
      this.undos.push({ op: inverse, time: now })
      return
    }
    this.redos = []
    const shape = this.type.typing(op)
    const g = this.group
    if (shape && g && g.shape.kind === shape.kind && now - g.time <= this.mergeInterval &&
        this.undos[this.undos.length - 1] === g) {
      let merge = false
      if (shape.kind === 'insert') merge = shape.pos === g.end && shape.text !== '\n'
      else merge = shape.pos + 1 === g.start || shape.pos === g.start
      if (merge) {
        g.op = this.type.compose(inverse, g.op)
        g.time = now
        if (shape.kind === 'insert') g.end = shape.pos + 1
        else g.start = shape.pos
        return
      }
    }
    const e = { op: inverse, time: now }
    if (this.undos.length >= this.max) this.undos.splice(0, this.undos.length - this.max + 1)
    if (shape && !(shape.kind === 'insert' && shape.text === '\n')) {
      e.shape = shape
      e.start = shape.pos
      e.end = shape.kind === 'insert' ? shape.pos + 1 : shape.pos
      this.group = e
    } else {
      this.group = null
    }
    this.undos.push(e)
  }

  /** transform moves the history past op, a change made to the text by
   * someone else (or by a resync): each entry applies to the text as it is
   * once the entries above it are undone, so op is carried down the stack,
   * transformed past each entry. */
  transform (op) {
    for (const stack of [this.undos, this.redos]) {
      let x = op
      for (let i = stack.length - 1; i >= 0; i--) {
        const e = stack[i]
        const e2 = this.type.transform(e.op, x, 'left')
        x = this.type.transform(x, e.op, 'right')
        e.op = e2
      }
    }
    const g = this.group
    if (g) {
      g.start = this.type.transformPosition(g.start, op, 'left')
      g.end = this.type.transformPosition(g.end, op, 'left')
    }
  }
}
