package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/ot/rich"
)

// typist is the load generator's cheap client: it speaks Tandem's protocol
// as an editor does (ops at random places in the document, keystrokes typed
// while one is in flight composed into the next, carets), but holds only
// the document's revision and length, not its text. Its edits are always
// valid where it sends them: the server delivers every revision before the
// ack of a later one, so after an ack the typist knows the length at the
// revision its next op is based on. It reads every frame and every op
// (their lengths), but transforms and applies nothing, which is most of
// what a full client costs per message. The convergence check compares its
// revision and length with the server's; the documents' full clients
// (--full) check the text.
type typist struct {
	b        *bench
	presence bool
	deletes  float64
	rich     bool // a rich document: Quill Deltas out and in

	conn    *websocket.Conn
	writeMu sync.Mutex
	done    chan struct{} // closed when the reader ends

	mu      sync.Mutex
	err     error
	src     string
	at      int64 // the revision it has
	length  int
	seq     uint64
	inSeq   uint64 // 0: nothing in flight
	sentAt  time.Time
	pending int // keystrokes typed while an op was in flight
	caret   int
	// The op in flight: an insert of inserted letters, or a delete of the
	// one character at delAt (a backspace), which others' ops move (-1:
	// they deleted it first, and ours removes nothing).
	inserted   int
	deleting   bool
	formatting bool // (rich) a format change: others' deletes may reduce it to nothing
	format     int  // (rich) the format it types in (richFormats), changed now and then as a writer toggles bold
	delAt      int
	inFrame    []byte // the op in flight, for a resend
	refused    int    // refusals in a row (rate_limited, storage_full)
	frames     int64
	received   int64
	rng        *rand.Rand
}

func (b *bench) dialTypist(ctx context.Context, id string, i int) (*typist, error) {
	servers := b.servers()
	base := servers[i%len(servers)]
	q := url.Values{"name": {fmt.Sprintf("typist %d", i)}}
	u := "ws" + strings.TrimPrefix(base, "http") + "/api/docs/" + url.PathEscape(id) + "/ws?" + q.Encode()
	h := http.Header{}
	if b.cfg.Token != "" {
		h.Set("Authorization", "Bearer "+b.cfg.Token)
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, u, h)
	if err != nil {
		return nil, fmt.Errorf("bench: connect typist %d to %s: %w", i, id, err)
	}
	_, data, err := conn.ReadMessage()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("bench: typist %d: the hello of %s: %w", i, id, err)
	}
	var hello struct {
		Type, Src, Code, Message string
		Rev                      int64
		Text                     *string
		Delta                    json.RawMessage
	}
	first, rest := nextObject(bytes.TrimPrefix(bytes.TrimSpace(data), []byte("[")))
	err = json.Unmarshal(first, &hello)
	if err == nil && hello.Text == nil && hello.Delta != nil {
		doc, derr := rich.ParseDocumentJSON(hello.Delta)
		if derr != nil {
			conn.Close()
			return nil, fmt.Errorf("bench: typist %d: the hello of %s: %w", i, id, derr)
		}
		text := rich.PlainText(doc) + strings.Repeat("\uFFFC", doc.Len()-utf8.RuneCountInString(rich.PlainText(doc)))
		hello.Text = &text // (only its length is kept: embeds count one)
	}
	if err != nil || hello.Type != "hello" || hello.Text == nil {
		conn.Close()
		if hello.Type == "error" {
			return nil, fmt.Errorf("bench: typist %d: join %s: %s: %s", i, id, hello.Code, hello.Message)
		}
		return nil, fmt.Errorf("bench: typist %d: join %s: no hello: %.200s", i, id, data)
	}
	t := &typist{b: b, presence: b.cfg.Presence, deletes: b.cfg.DeleteRatio, rich: hello.Delta != nil, conn: conn, done: make(chan struct{}),
		src: hello.Src, at: hello.Rev, length: utf8.RuneCountInString(*hello.Text),
		rng: rand.New(rand.NewPCG(b.cfg.Seed^0x7e57, uint64(i)))}
	go t.read(rest)
	return t, nil
}

func (t *typist) read(rest []byte) {
	defer close(t.done)
	var err error
	buf := make([]byte, 0, 4096) // one frame at a time, read into the same buffer
	for {
		if len(rest) > 0 {
			err = t.frame(rest)
		}
		if err == nil {
			buf, err = t.readFrame(buf[:0])
		}
		if err != nil {
			t.mu.Lock()
			if t.err == nil {
				t.err = err
			}
			t.mu.Unlock()
			return
		}
		t.mu.Lock()
		t.frames++
		t.mu.Unlock()
		rest = buf
	}
}

// readFrame reads the next frame's payload into buf (grown as needed).
func (t *typist) readFrame(buf []byte) ([]byte, error) {
	_, r, err := t.conn.NextReader()
	if err != nil {
		return buf, err
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// frame handles one frame: a message or an array of them.
func (t *typist) frame(data []byte) error {
	data = skipJSON(data, " \t\r\n")
	if len(data) > 0 && data[0] == '[' {
		data = data[1:]
	}
	var f serverFields
	for {
		data = skipJSON(data, " \t\r\n,]")
		if len(data) == 0 {
			return nil
		}
		rest, ok := f.parse(data)
		if !ok {
			return fmt.Errorf("bench: typist: malformed message %.200s", data)
		}
		if err := t.message(&f); err != nil {
			return err
		}
		data = rest
	}
}

// serverFields are the fields of a server message a typist reads, found
// in one pass over the flat object (strings raw, quotes included).
type serverFields struct {
	typ, src, code, op   []byte
	rev, seq, retryAfter int64
}

// parse reads the object at the start of b and returns what follows it.
func (f *serverFields) parse(b []byte) (rest []byte, ok bool) {
	*f = serverFields{}
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	b = b[1:]
	for {
		b = skipJSON(b, " \t\r\n,")
		if len(b) == 0 {
			return nil, false
		}
		if b[0] == '}' {
			return b[1:], true
		}
		if b[0] != '"' {
			return nil, false
		}
		n := valueLen(b)
		if n <= 0 {
			return nil, false
		}
		k := b[1 : n-1]
		b = skipJSON(b[n:], " \t\r\n:")
		m := valueLen(b)
		if m <= 0 {
			return nil, false
		}
		v := b[:m]
		b = b[m:]
		switch string(k) {
		case "type":
			f.typ = v
		case "src":
			f.src = v
		case "code":
			f.code = v
		case "op":
			f.op = v
		case "rev":
			f.rev, _ = strconv.ParseInt(string(v), 10, 64)
		case "seq":
			f.seq, _ = strconv.ParseInt(string(v), 10, 64)
		case "retryAfter":
			f.retryAfter, _ = strconv.ParseInt(string(v), 10, 64)
		}
	}
}

// skipJSON skips the bytes of set (a few ASCII characters) at the start of
// b. (bytes.TrimLeft builds its set anew on every call.)
func skipJSON(b []byte, set string) []byte {
	for len(b) > 0 && strings.IndexByte(set, b[0]) >= 0 {
		b = b[1:]
	}
	return b
}

// unquoted is a raw JSON string's text.
func unquoted(v []byte) string {
	if len(v) < 2 || v[0] != '"' {
		return ""
	}
	if bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
		return string(v[1 : len(v)-1])
	}
	var s string
	json.Unmarshal(v, &s)
	return s
}

func (t *typist) message(f *serverFields) error {
	switch string(f.typ) {
	case `"op"`:
		rev, seq := f.rev, f.seq
		t.mu.Lock()
		if rev != t.at+1 {
			t.mu.Unlock()
			return fmt.Errorf("bench: typist: op at revision %d, the typist is at %d", rev, t.at)
		}
		delAt := -1
		if t.inSeq != 0 && t.deleting {
			delAt = t.delAt
		}
		walk := walkOp
		if t.rich {
			walk = walkRichOp
		}
		delta, moved, err := walk(f.op, delAt)
		if err != nil {
			t.mu.Unlock()
			return fmt.Errorf("bench: typist: op at revision %d: %w", rev, err)
		}
		if delAt >= 0 {
			t.delAt = moved
		}
		t.at, t.length = rev, t.length+delta
		t.received++
		t.mu.Unlock()
		t.b.delivered.Add(1)
		if at, ok := t.b.sentAt.Load(opKey{unquoted(f.src), uint64(seq)}); ok {
			t.b.seen.add(time.Since(at.(time.Time)))
		}
	case `"ack"`:
		seq, rev := f.seq, f.rev
		t.mu.Lock()
		if t.inSeq == 0 || uint64(seq) != t.inSeq {
			t.mu.Unlock()
			return fmt.Errorf("bench: typist: ack of seq %d, in flight %d", seq, t.inSeq)
		}
		if rev != t.at+1 {
			t.mu.Unlock()
			return fmt.Errorf("bench: typist: ack at revision %d, the typist is at %d", rev, t.at)
		}
		// Every revision before ours has arrived: the length at ours is
		// that plus what our op did, transformed (an insert inserts all it
		// had; a backspace removes its character unless another op did).
		t.at = rev
		switch {
		case !t.deleting:
			t.length += t.inserted
		case t.delAt >= 0:
			t.length--
		}
		t.inSeq, t.refused = 0, 0
		t.received++
		// Counted before the lock goes: synced (which sees inSeq) must
		// not return before the count does.
		t.b.ack.add(time.Since(t.sentAt))
		t.b.committed.Add(1)
		frame := t.flushLocked(t.rng)
		t.mu.Unlock()
		if frame != nil {
			return t.write(frame)
		}
	case `"error"`:
		code, seq := unquoted(f.code), f.seq
		t.mu.Lock()
		if code == "invalid_op" && seq != 0 && uint64(seq) == t.inSeq && (t.deleting && t.delAt < 0 || t.formatting) {
			// Our backspace came to nothing (another op deleted its
			// character first): the server commits nothing for it
			// (docs/protocol.md), and we go on.
			t.inSeq = 0
			frame := t.flushLocked(t.rng)
			t.mu.Unlock()
			if frame != nil {
				return t.write(frame)
			}
			return nil
		}
		t.mu.Unlock()
		t.b.countError(code)
		t.mu.Lock()
		if seq != 0 && uint64(seq) == t.inSeq && (code == collab.CodeRateLimited || code == collab.CodeStorageFull) {
			// Refused for now: sent again, same seq, after the server's
			// hint or a pause that doubles (docs/protocol.md).
			after := f.retryAfter
			pause := max(time.Duration(after)*time.Millisecond, 100*time.Millisecond<<min(t.refused, 7))
			t.refused++
			frame, at := t.inFrame, t.inSeq
			t.mu.Unlock()
			t.b.countRetry(code)
			time.AfterFunc(pause, func() {
				t.mu.Lock()
				same := t.inSeq == at && t.err == nil
				t.mu.Unlock()
				if same {
					t.write(frame) // a failed write ends the reader, which says why
				}
			})
			return nil
		}
		if seq != 0 && uint64(seq) == t.inSeq {
			// Refused: what it did is not in the document.
			t.err = fmt.Errorf("bench: typist: op refused: %s", code)
			t.mu.Unlock()
			return t.err
		}
		t.mu.Unlock()
	}
	return nil
}

// edit types one keystroke: sent at once if nothing is in flight, else
// composed into the next op.
func (t *typist) edit(rng *rand.Rand) error {
	t.b.edits.Add(1)
	t.mu.Lock()
	if t.err != nil {
		err := t.err
		t.mu.Unlock()
		return err
	}
	t.pending++
	frame := t.flushLocked(rng)
	var sel []byte
	if frame != nil && t.presence {
		sel = fmt.Appendf(nil, `{"type":"sel","rev":%d,"sel":[{"anchor":%d,"head":%d}]}`, t.at, t.caret, t.caret)
	}
	t.mu.Unlock()
	if frame == nil {
		return nil
	}
	if err := t.write(frame); err != nil {
		return err
	}
	if sel != nil {
		return t.write(sel)
	}
	return nil
}

// flushLocked sends the keystrokes typed so far as one op, if nothing is
// in flight; t.mu is held. A backspace is a delete of one character;
// keystrokes typed meanwhile are letters inserted together.
func (t *typist) flushLocked(rng *rand.Rand) []byte {
	if t.inSeq != 0 || t.pending == 0 || t.err != nil {
		return nil
	}
	t.seq++
	t.inSeq = t.seq
	b := fmt.Appendf(nil, `{"type":"op","rev":%d,"seq":%d,"op":[`, t.at, t.seq)
	t.formatting = false
	if t.rich {
		b = t.richOp(b, rng)
	} else if t.length > 0 && rng.Float64() < t.deletes {
		pos := rng.IntN(t.length)
		t.deleting, t.delAt, t.inserted, t.caret = true, pos, 0, pos
		if pos > 0 {
			b = fmt.Appendf(b, "%d,", pos)
		}
		b = append(b, `{"d":1}`...)
	} else {
		pos := rng.IntN(t.length + 1)
		t.deleting, t.inserted, t.caret = false, t.pending, pos+t.pending
		if pos > 0 {
			b = fmt.Appendf(b, "%d,", pos)
		}
		b = append(b, '"')
		for range t.pending {
			b = append(b, byte('a'+rng.IntN(26)))
		}
		b = append(b, '"')
	}
	t.pending = 0
	t.sentAt = time.Now()
	t.b.sentAt.Store(opKey{t.src, t.seq}, t.sentAt)
	t.inFrame = append(b, "]}"...)
	return t.inFrame
}

func (t *typist) write(frame []byte) error {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	return t.conn.WriteMessage(websocket.TextMessage, frame)
}

func (t *typist) synced(ctx context.Context) error {
	for {
		t.mu.Lock()
		idle, err := t.inSeq == 0 && t.pending == 0, t.err
		t.mu.Unlock()
		switch {
		case err != nil:
			return err
		case idle:
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.done:
		case <-time.After(time.Millisecond):
		}
	}
}

func (t *typist) lost() error {
	select {
	case <-t.done:
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.err
	default:
		return nil
	}
}

func (t *typist) rev() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.at
}

// text is not held: the convergence check compares length (textLength).
func (t *typist) text() string { return "" }

// textLength is the document's length in code points at rev().
func (t *typist) textLength() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.length
}

func (t *typist) close() { t.conn.Close(); <-t.done }

// richFormats are the formats a rich typist's text and changes carry.
var richFormats = []string{"", "", `,"attributes":{"bold":true}`, `,"attributes":{"italic":true}`, `,"attributes":{"link":"https://example.com/a"}`}

// richOp appends the rich op for the keystrokes typed (t.mu held): a
// backspace, a format change over up to 8 characters (one edit in
// eight), or the letters typed, in the typist's current format (which
// changes one insert in ten, as a writer toggles bold or adds a link).
func (t *typist) richOp(b []byte, rng *rand.Rand) []byte {
	switch {
	case t.length > 0 && rng.Float64() < t.deletes:
		pos := rng.IntN(t.length)
		t.deleting, t.delAt, t.inserted, t.caret = true, pos, 0, pos
		if pos > 0 {
			b = fmt.Appendf(b, `{"retain":%d},`, pos)
		}
		return append(b, `{"delete":1}`...)
	case t.length > 1 && rng.IntN(8) == 0:
		pos := rng.IntN(t.length - 1)
		n := 1 + rng.IntN(min(8, t.length-pos))
		t.deleting, t.formatting, t.inserted, t.caret = false, true, 0, pos+n
		if pos > 0 {
			b = fmt.Appendf(b, `{"retain":%d},`, pos)
		}
		return fmt.Appendf(b, `{"retain":%d,"attributes":{"italic":%v}}`, n, rng.IntN(2) == 0)
	}
	pos := rng.IntN(t.length + 1)
	t.deleting, t.inserted, t.caret = false, t.pending, pos+t.pending
	if pos > 0 {
		b = fmt.Appendf(b, `{"retain":%d},`, pos)
	}
	b = append(b, `{"insert":"`...)
	for range t.pending {
		b = append(b, byte('a'+rng.IntN(26)))
	}
	b = append(b, '"')
	if rng.IntN(10) == 0 {
		t.format = rng.IntN(len(richFormats))
	}
	b = append(b, richFormats[t.format]...)
	return append(b, '}')
}

// walkRichOp is walkOp for a rich document's op (Quill's Delta). The
// server writes components in canonical form (the component's key
// first), which it reads without a full parse; anything else goes
// through rich.ParseJSON.
func walkRichOp(raw []byte, delAt int) (delta, moved int, err error) {
	op, ok := scanRichOp(raw)
	if !ok {
		d, err := rich.ParseJSON(raw)
		if err != nil {
			return 0, 0, err
		}
		op = op[:0]
		for _, c := range d {
			op = append(op, richPart{c.Kind(), c.Len()})
		}
	}
	w := lengthWalk{delAt: delAt, done: delAt < 0}
	for _, c := range op {
		switch c.kind {
		case rich.KindInsert:
			w.insert(c.n)
		case rich.KindDelete:
			w.delete(c.n)
		default:
			w.retain(c.n)
		}
	}
	delta, moved = w.result()
	return delta, moved, nil
}

// lengthWalk follows an op's components over the document (walkOp,
// walkRichOp): how much they change its length, and where the character
// at delAt ends up (-1 once a delete takes it).
type lengthWalk struct {
	at, shift, delta, delAt int // at: offset in the document before the op
	done                    bool
}

func (w *lengthWalk) retain(k int) {
	if !w.done && w.delAt < w.at+k {
		w.done = true
	}
	w.at += k
}

func (w *lengthWalk) insert(k int) {
	w.delta += k
	if !w.done && w.at <= w.delAt {
		w.shift += k
	}
}

func (w *lengthWalk) delete(k int) {
	w.delta -= k
	if !w.done {
		if w.delAt < w.at+k {
			w.delAt, w.done = -1, true
		} else {
			w.shift -= k
		}
	}
	w.at += k
}

func (w *lengthWalk) result() (delta, moved int) {
	if w.delAt < 0 {
		return w.delta, -1
	}
	return w.delta, w.delAt + w.shift
}

type richPart struct {
	kind rich.Kind
	n    int
}

// scanRichOp reads the kinds and lengths of a canonical rich op.
func scanRichOp(raw []byte) ([]richPart, bool) {
	b := bytes.TrimSpace(raw)
	if len(b) < 2 || b[0] != '[' {
		return nil, false
	}
	var out []richPart
	for b = b[1:]; ; {
		b = skipJSON(b, " \t\r\n,")
		if len(b) > 0 && b[0] == ']' {
			return out, true
		}
		n := valueLen(b)
		if n <= 0 || b[0] != '{' {
			return nil, false
		}
		obj := b[:n]
		b = b[n:]
		switch {
		case bytes.HasPrefix(obj, []byte(`{"retain":`)), bytes.HasPrefix(obj, []byte(`{"delete":`)):
			kind, num := rich.KindRetain, obj[len(`{"retain":`):]
			if obj[2] == 'd' {
				kind = rich.KindDelete
			}
			end := 0
			for end < len(num) && num[end] >= '0' && num[end] <= '9' {
				end++
			}
			k, err := strconv.Atoi(string(num[:end]))
			if err != nil || k <= 0 {
				return nil, false
			}
			out = append(out, richPart{kind, k})
		case bytes.HasPrefix(obj, []byte(`{"insert":{`)):
			out = append(out, richPart{rich.KindInsert, 1})
		case bytes.HasPrefix(obj, []byte(`{"insert":"`)):
			s := obj[len(`{"insert":`):]
			end := stringEnd(s, 1)
			if end < 0 || bytes.IndexByte(s[:end], '\\') >= 0 {
				return nil, false // escapes: the full parse
			}
			out = append(out, richPart{rich.KindInsert, utf8.RuneCount(s[1:end])})
		default:
			return nil, false
		}
	}
}

// walkOp reads an op's JSON ([retain, "insert", {"d": n}, ...]): how much
// it changes the document's length, and where the character at delAt (if
// not -1) is after it (-1 if the op deletes it).
func walkOp(raw []byte, delAt int) (delta, moved int, err error) {
	b := bytes.TrimSpace(raw)
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return 0, 0, fmt.Errorf("not an op: %.100s", raw)
	}
	b = b[1 : len(b)-1]
	w := lengthWalk{delAt: delAt, done: delAt < 0}
	for {
		b = skipJSON(b, " \t\r\n,")
		if len(b) == 0 {
			break
		}
		n := valueLen(b)
		if n <= 0 {
			return 0, 0, fmt.Errorf("malformed op: %.100s", raw)
		}
		v := b[:n]
		b = b[n:]
		switch v[0] {
		case '"':
			var k int
			if bytes.IndexByte(v, '\\') < 0 {
				k = utf8.RuneCount(v[1 : len(v)-1])
			} else {
				var s string
				if err := json.Unmarshal(v, &s); err != nil {
					return 0, 0, fmt.Errorf("op insert %.100s: %w", v, err)
				}
				k = utf8.RuneCountInString(s)
			}
			w.insert(k)
		case '{':
			var d struct{ D int }
			if num, ok := bytes.CutPrefix(v, []byte(`{"d":`)); ok && len(num) > 1 && num[len(num)-1] == '}' {
				d.D, _ = strconv.Atoi(string(num[:len(num)-1])) // the server's own spelling
			} else if err := json.Unmarshal(v, &d); err != nil {
				d.D = 0
			}
			if d.D <= 0 {
				return 0, 0, fmt.Errorf("op component %.100s", v)
			}
			w.delete(d.D)
		default:
			k, err := strconv.Atoi(string(v))
			if err != nil || k <= 0 {
				return 0, 0, fmt.Errorf("op component %.100s", v)
			}
			w.retain(k)
		}
	}
	delta, moved = w.result()
	return delta, moved, nil
}

// nextObject splits the first JSON object off b (a frame's messages, with
// the array's brackets and commas around them); obj is nil when none is
// left.
func nextObject(b []byte) (obj, rest []byte) {
	b = skipJSON(b, " \t\r\n,]")
	if len(b) == 0 || b[0] != '{' {
		return nil, nil
	}
	n := valueLen(b)
	if n <= 0 {
		return nil, nil
	}
	return b[:n], b[n:]
}

// valueLen is the length of the JSON value at the start of b (strings,
// numbers and balanced arrays and objects), or -1.
func valueLen(b []byte) int {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			j := stringEnd(b, i+1)
			if j < 0 {
				return -1
			}
			i = j
			if depth == 0 {
				return i + 1
			}
		case '[', '{':
			depth++
		case ']', '}':
			if depth--; depth == 0 {
				return i + 1
			}
			if depth < 0 {
				return i
			}
		case ',', ' ', '\n', '\t', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	if depth == 0 {
		return len(b)
	}
	return -1
}

// stringEnd is the index of the quote that closes the JSON string whose
// text starts at b[i], or -1: a search for the quote, then a look for an
// escape before it (rare in what the server sends).
func stringEnd(b []byte, i int) int {
	for {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return -1
		}
		e := bytes.IndexByte(b[i:i+q], '\\')
		if e < 0 {
			return i + q
		}
		i += e + 2 // past the escape and the character it escapes
		if i > len(b) {
			return -1
		}
	}
}
