package main

// A WebSocket editing client for the process tests (process_test.go), which
// keeps what they check (every ack with the hash of its text at that
// revision, the op as first sent), and REST helpers. Tests and benchmarks
// that need a well-behaved client and nothing more use the client package.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/protocol"
)

// initialText is the documents' text at revision 0.
const initialText = "start 😀 é 漢字 🇯🇵\n"

// serverMsg is any server message (package protocol's).
type serverMsg = protocol.Message

// parseFrame unpacks one server frame: a message or a JSON array of them.
func parseFrame(data []byte) ([]serverMsg, error) { return protocol.ParseFrame(data) }

// ackRecord is one acknowledged op, as its author saw it.
type ackRecord struct {
	Src  string
	Seq  uint64
	Rev  int64
	Hash uint64 // of the author's text at Rev (which is the server's text at Rev)
	Sent string // the op as first sent (JSON), based on BaseRev
	Base int64
}

func textHash(s string) uint64 {
	h := fnv.New64a()
	io.WriteString(h, s)
	return h.Sum64()
}

// editor is one collaborating client, the way a real one works: it applies
// its own op locally at once, keeps at most one op in flight, and
// transforms ops from others against it. It records every ack, with the
// hash of its text at the acked revision, for the checks.
type editor struct {
	src  string
	conn *websocket.Conn
	rng  *rand.Rand

	rev      int64  // the newest server revision seen
	server   string // the server's text at rev
	text     string // server + inflight
	inflight ot.Op
	inSeq    uint64 // the in-flight op's seq (0: none)
	inBase   int64  // the revision the in-flight op was first sent on
	inJSON   string // the in-flight op as first sent
	seq      uint64 // the last seq used
	resendAt time.Time

	acks  []ackRecord
	acked atomic.Int64 // len(acks), readable while the editor runs
	// pace, if set, is the least time between two ops (a typist, not a
	// closed loop); nextAt is when the next may start.
	pace   time.Duration
	nextAt time.Time
	// rejected: the server answered the in-flight op with an error other
	// than rate_limited (e.g. "document is closing" during shutdown).
	rejected   string
	rateLimits int

	frames chan frameOrErr
	quit   chan struct{}
}

type frameOrErr struct {
	msgs []serverMsg
	err  error
}

// wsURL turns an http:// base URL into the document's WebSocket URL.
func wsURL(base, docID string, q url.Values) string {
	return "ws" + strings.TrimPrefix(base, "http") + "/api/docs/" + docID + "/ws?" + q.Encode()
}

// dialEditor connects to docID with a source key ("" lets the server
// issue one) and reads the hello.
func dialEditor(base, docID, key string, seed uint64) (*editor, error) {
	q := url.Values{"name": {"tester"}}
	if key != "" {
		q.Set("key", key)
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial(wsURL(base, docID, q), nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	e := &editor{conn: conn, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		frames: make(chan frameOrErr, 64), quit: make(chan struct{})}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := conn.ReadMessage()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read hello: %w", err)
	}
	msgs, err := parseFrame(data)
	if err != nil || len(msgs) == 0 || msgs[0].Type != "hello" || msgs[0].Text == nil {
		conn.Close()
		return nil, fmt.Errorf("first frame is not a hello with text: %.300s (%v)", data, err)
	}
	h := msgs[0]
	e.src, e.rev, e.server, e.text = h.Src, h.Rev, *h.Text, *h.Text
	if key != "" && e.src != collab.SourceOf(key) {
		conn.Close()
		return nil, fmt.Errorf("hello src %q, want the source of key %q", e.src, key)
	}
	conn.SetReadDeadline(time.Time{})
	go e.read(msgs[1:])
	return e, nil
}

// read feeds frames to the editor's loop until the connection fails.
func (e *editor) read(first []serverMsg) {
	if len(first) > 0 {
		select {
		case e.frames <- frameOrErr{msgs: first}:
		case <-e.quit:
			return
		}
	}
	for {
		// Bounded: no test waits a minute for a frame.
		e.conn.SetReadDeadline(time.Now().Add(time.Minute))
		_, data, err := e.conn.ReadMessage()
		var f frameOrErr
		if err != nil {
			f.err = err
		} else if f.msgs, err = parseFrame(data); err != nil {
			f.err = err
		}
		select {
		case e.frames <- f:
		case <-e.quit:
			return
		}
		if f.err != nil {
			return
		}
	}
}

// close drops the connection and stops the reader.
func (e *editor) close() {
	select {
	case <-e.quit:
	default:
		close(e.quit)
	}
	e.conn.Close()
}

var sampleRunes = []string{"a", "b", "c", " ", "\n", "é", "ß", "😀", "漢", "字", "🇯🇵", "x", "y", "z"}

// nextOp makes a random edit of e.text: mostly inserts, some deletes, and
// more deletes once the text passes maxLen code points.
func (e *editor) nextOp(maxLen int) ot.Op {
	n := utf8.RuneCountInString(e.text)
	pos := e.rng.IntN(n + 1)
	var op ot.Op
	if pos > 0 {
		op = append(op, ot.Skip(pos))
	}
	del := n > pos && (e.rng.IntN(4) == 0 || n > maxLen)
	if del {
		op = append(op, ot.Delete(1+e.rng.IntN(min(8, n-pos))))
	} else {
		var sb strings.Builder
		for range 1 + e.rng.IntN(6) {
			sb.WriteString(sampleRunes[e.rng.IntN(len(sampleRunes))])
		}
		op = append(op, ot.Insert(sb.String()))
	}
	return op
}

func (e *editor) sendInflight() error {
	opJSON, err := e.inflight.MarshalJSON()
	if err != nil {
		return err
	}
	msg := fmt.Appendf(nil, `{"type":"op","rev":%d,"seq":%d,"op":%s}`, e.rev, e.inSeq, opJSON)
	e.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return e.conn.WriteMessage(websocket.TextMessage, msg)
}

// startOp applies a new random op locally and sends it. A failed send
// returns why the connection ended (see writeFailed).
func (e *editor) startOp(maxLen int) error {
	op := e.nextOp(maxLen)
	text, err := ot.Apply(e.text, op)
	if err != nil {
		return fmt.Errorf("own op %v on %q: %w", op, e.text, err)
	}
	e.seq++
	e.text, e.inflight, e.inSeq, e.inBase = text, op, e.seq, e.rev
	b, _ := op.MarshalJSON()
	e.inJSON = string(b)
	if err := e.sendInflight(); err != nil {
		return e.writeFailed(err)
	}
	return nil
}

// errStopped: the editor's stop channel closed.
var errStopped = errors.New("editor stopped")

// writeFailed turns a failed write into the reason the connection ended:
// when the server closes the connection, the reader may have seen the
// close frame (and answered it, after which writes fail with ErrCloseSent)
// just before the loop wrote. The reader's error says why.
func (e *editor) writeFailed(err error) error {
	for {
		select {
		case f := <-e.frames:
			if f.err != nil {
				return f.err
			}
			for _, m := range f.msgs {
				if herr := e.handle(m); herr != nil {
					return herr
				}
			}
		case <-time.After(5 * time.Second):
			return fmt.Errorf("write: %w (and the connection did not end)", err)
		}
	}
}

// run edits until maxOps ops are acknowledged (0: no limit), stop closes,
// or the connection ends; it returns why it stopped: nil after maxOps, a
// connection error (a *websocket.CloseError for a close frame), errStopped,
// or a protocol violation.
func (e *editor) run(maxOps int, maxLen int, stop <-chan struct{}) error {
	var timer <-chan time.Time
	if err := e.startOp(maxLen); err != nil {
		return err
	}
	for {
		select {
		case f := <-e.frames:
			if f.err != nil {
				return f.err
			}
			for _, m := range f.msgs {
				if err := e.handle(m); err != nil {
					return err
				}
			}
		case <-timer:
			timer = nil
		case <-stop:
			return errStopped
		}
		if e.inSeq != 0 || e.rejected != "" {
			if e.inSeq != 0 && !e.resendAt.IsZero() && e.rejected == "" {
				if d := time.Until(e.resendAt); d > 0 {
					if timer == nil {
						timer = time.After(d)
					}
					continue
				}
				e.resendAt = time.Time{}
				if err := e.sendInflight(); err != nil {
					return e.writeFailed(err)
				}
			}
			continue
		}
		if maxOps > 0 && len(e.acks) >= maxOps {
			return nil
		}
		if e.pace > 0 {
			// A typist's pace: the next op after a pause, unless stopped.
			if !e.nextAt.IsZero() && time.Now().Before(e.nextAt) {
				if timer == nil {
					timer = time.After(time.Until(e.nextAt))
				}
				continue
			}
			e.nextAt = time.Now().Add(e.pace)
		}
		if err := e.startOp(maxLen); err != nil {
			return err
		}
	}
}

// handle applies one server message to the editor's state, checking the
// protocol's ordering promises: ops and acks arrive at consecutive
// revisions, and an ack answers the op in flight.
func (e *editor) handle(m serverMsg) error {
	switch m.Type {
	case "op":
		if m.Rev != e.rev+1 {
			return fmt.Errorf("op at revision %d after %d", m.Rev, e.rev)
		}
		if m.Src == e.src && m.Src != "" {
			return fmt.Errorf("own op (seq %d) sent as an op, not an ack", m.Seq)
		}
		op, err := ot.ParseJSON(m.Op)
		if err != nil {
			return fmt.Errorf("op at %d: %w", m.Rev, err)
		}
		if e.server, err = ot.Apply(e.server, op); err != nil {
			return fmt.Errorf("op at %d does not apply to the server text: %w", m.Rev, err)
		}
		if e.inSeq != 0 {
			theirs, err := ot.Transform(op, e.inflight, ot.Right)
			if err != nil {
				return err
			}
			if e.inflight, err = ot.Transform(e.inflight, op, ot.Left); err != nil {
				return err
			}
			op = theirs
		}
		if e.text, err = ot.Apply(e.text, op); err != nil {
			return fmt.Errorf("op at %d does not apply locally: %w", m.Rev, err)
		}
		e.rev = m.Rev
	case "ack":
		if e.inSeq == 0 || m.Seq != e.inSeq {
			return fmt.Errorf("ack of seq %d, in flight: %d", m.Seq, e.inSeq)
		}
		if m.Rev != e.rev+1 {
			return fmt.Errorf("ack at revision %d after %d", m.Rev, e.rev)
		}
		e.rev, e.server = m.Rev, e.text
		a := ackRecord{Src: e.src, Seq: m.Seq, Rev: m.Rev, Sent: e.inJSON, Base: e.inBase, Hash: textHash(e.text)}
		e.acks = append(e.acks, a)
		e.acked.Add(1)
		e.inflight, e.inSeq, e.resendAt = nil, 0, time.Time{}
	case "error":
		if m.Code == "rate_limited" && m.Seq == e.inSeq && e.inSeq != 0 {
			e.rateLimits++
			e.resendAt = time.Now().Add(20 * time.Millisecond)
			return nil
		}
		if m.Code == "invalid_op" && m.Seq == e.inSeq && e.inSeq != 0 && e.inflight.IsNoop() {
			// Others' edits, which it has, did what it does: never
			// committed, dropped (docs/protocol.md).
			e.inflight, e.inSeq, e.resendAt = nil, 0, time.Time{}
			return nil
		}
		if m.Seq == e.inSeq && e.inSeq != 0 && m.Code == "internal" {
			e.rejected = m.Code + ": " + m.Message
			return nil
		}
		return fmt.Errorf("error from server: %s: %s (seq %d, in flight %d)", m.Code, m.Message, m.Seq, e.inSeq)
	case "hello":
		return errors.New("second hello")
	}
	return nil
}

// REST helpers.

var httpClient = &http.Client{Timeout: 10 * time.Second}

func postJSON(u string, body any, out any) error {
	b, _ := json.Marshal(body)
	resp, err := httpClient.Post(u, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %d %s", u, resp.StatusCode, data)
	}
	return json.Unmarshal(data, out)
}

func getJSON(u string, out any) error {
	resp, err := httpClient.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, data)
	}
	return json.Unmarshal(data, out)
}

func createDoc(base, title, text string) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if err := postJSON(base+"/api/docs", map[string]string{"title": title, "text": text}, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

type docState struct {
	Text string `json:"text"`
	Rev  int64  `json:"rev"`
}

func getDoc(base, id string) (docState, error) {
	var d docState
	err := getJSON(base+"/api/docs/"+id, &d)
	return d, err
}

type opRecord struct {
	Rev int64           `json:"rev"`
	Op  json.RawMessage `json:"op"`
	Src string          `json:"src"`
	Seq uint64          `json:"seq"`
}

// getLog reads the records 1..head in pages.
func getLog(base, id string, head int64) ([]opRecord, error) {
	var all []opRecord
	for from := int64(0); from < head; {
		to := min(head, from+1000)
		var page struct {
			Ops []opRecord `json:"ops"`
		}
		if err := getJSON(fmt.Sprintf("%s/api/docs/%s/ops?from=%d&to=%d", base, id, from, to), &page); err != nil {
			return nil, err
		}
		if len(page.Ops) == 0 {
			return nil, fmt.Errorf("ops %d..%d: empty page", from, to)
		}
		all = append(all, page.Ops...)
		from = page.Ops[len(page.Ops)-1].Rev
	}
	return all, nil
}
