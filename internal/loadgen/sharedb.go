package loadgen

// tandem bench --protocol sharedb: the same editing clients against a
// ShareDB server (its JSON protocol, share/sharedb lib/agent.js, with the
// ot-text-unicode type), so the two can be compared on one machine with
// one load generator. scripts/sharedb/ has the server the benchmark
// script runs.
//
// The client works as ShareDB's own does: handshake, subscribe, one op in
// flight with the edits made meanwhile composed, others' ops transformed
// against ours (ours on the left), acks matched by src and seq.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tandemdocs/tandem/client"
	"github.com/tandemdocs/tandem/ot"
)

const (
	sharedbCollection = "bench"
	sharedbType       = "http://sharejs.org/types/text-unicode"
)

// shareDBDocuments creates the run's documents on a ShareDB server.
func (b *bench) shareDBDocuments(ctx context.Context) ([]string, error) {
	if b.cfg.DocIDs != "" {
		return nil, errors.New("bench: --doc-ids is for Tandem; ShareDB documents are created by the run")
	}
	run := time.Now().UnixNano()
	ids := make([]string, b.cfg.Docs)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%d-%d", run, i)
		e, err := b.dialShareDB(ctx, ids[i], 0)
		if err != nil {
			return nil, err
		}
		err = e.create(b.cfg.InitialText)
		e.close()
		if err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// shareDBTarget speaks ShareDB's protocol; the server's state is what a
// fresh subscriber gets.
func (b *bench) shareDBTarget() benchTarget {
	return benchTarget{
		dial: func(ctx context.Context, id string, i int) (benchClient, error) { return b.dialShareDB(ctx, id, i) },
		head: func(ctx context.Context, id string) (string, int64, error) {
			fresh, err := b.dialShareDB(ctx, id, -1)
			if err != nil {
				return "", 0, err
			}
			defer fresh.close()
			return fresh.text(), fresh.rev(), nil
		},
	}
}

// sharedbEditor is one ShareDB client on one document.
type sharedbEditor struct {
	b    *bench
	id   string
	conn *websocket.Conn
	src  string

	writeMu sync.Mutex

	mu       sync.Mutex
	version  int64 // the next version: ops applied so far
	rope     *ot.Rope
	inflight ot.Op
	inSeq    int64
	pending  ot.Op
	seq      int64
	sentAt   time.Time
	syncedCh chan struct{} // closed and replaced when nothing is in flight or pending
	subReply chan sharedbMsg
	pv       int64 // the presence version (--presence)
	err      error
	done     chan struct{}
}

type sharedbMsg struct {
	A      string          `json:"a"`
	C      string          `json:"c"`
	D      string          `json:"d"`
	V      *int64          `json:"v"`
	Src    string          `json:"src"`
	Seq    int64           `json:"seq"`
	Op     json.RawMessage `json:"op"`
	Create json.RawMessage `json:"create"`
	ID     string          `json:"id"`
	Data   json.RawMessage `json:"data"`
	Error  *struct {
		Code    any    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (b *bench) dialShareDB(ctx context.Context, id string, i int) (*sharedbEditor, error) {
	u := strings.Replace(strings.Replace(b.cfg.Server, "https://", "wss://", 1), "http://", "ws://", 1)
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, u, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: sharedb: dial %s: %w", u, err)
	}
	e := &sharedbEditor{b: b, id: id, conn: conn, syncedCh: make(chan struct{}), subReply: make(chan sharedbMsg, 1), done: make(chan struct{})}
	// The server's init message carries this connection's id (its src).
	var init sharedbMsg
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := conn.ReadJSON(&init); err != nil || init.A != "init" {
		conn.Close()
		return nil, fmt.Errorf("bench: sharedb: no init message: %v", err)
	}
	conn.SetReadDeadline(time.Time{})
	e.src = init.ID
	go e.read()
	if err := e.send(map[string]any{"a": "s", "c": sharedbCollection, "d": id}); err != nil {
		return nil, err
	}
	select {
	case m := <-e.subReply:
		if m.Error != nil {
			return nil, fmt.Errorf("bench: sharedb: subscribe %s: %s", id, m.Error.Message)
		}
		var snap struct {
			V    int64  `json:"v"`
			Data string `json:"data"`
		}
		if len(m.Data) > 0 {
			json.Unmarshal(m.Data, &snap)
		}
		r, err := ot.NewRope(snap.Data)
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		e.rope, e.version = r, snap.V
		e.mu.Unlock()
	case <-e.done:
		return nil, fmt.Errorf("bench: sharedb: subscribe %s: %v", id, e.err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b.cfg.Presence {
		// ShareDB's presence on the document's channel (ot-text-unicode
		// has no transformPresence, so it is relayed as sent, not moved
		// by ops: less work than Tandem's). Its seq is apart from the ops'.
		if err := e.send(map[string]any{"a": "ps", "ch": id, "seq": int64(1) << 40}); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// create makes the document (at version 0) with text.
func (e *sharedbEditor) create(text string) error {
	e.mu.Lock()
	e.seq++
	seq := e.seq
	e.inSeq, e.inflight = seq, ot.Op{} // waits for the ack like an op
	e.mu.Unlock()
	err := e.send(map[string]any{"a": "op", "c": sharedbCollection, "d": e.id, "v": 0, "seq": seq,
		"create": map[string]any{"type": sharedbType, "data": text}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.waitSynced(ctx)
}

func (e *sharedbEditor) send(msg any) error {
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	return e.conn.WriteMessage(websocket.TextMessage, data)
}

func (e *sharedbEditor) read() {
	defer close(e.done)
	for {
		_, data, err := e.conn.ReadMessage()
		if err != nil {
			e.mu.Lock()
			e.err = err
			e.mu.Unlock()
			return
		}
		var m sharedbMsg
		if err := json.Unmarshal(data, &m); err != nil {
			e.fail(fmt.Errorf("sharedb: %w: %.200s", err, data))
			return
		}
		if err := e.handle(m); err != nil {
			e.fail(err)
			return
		}
	}
}

func (e *sharedbEditor) fail(err error) {
	e.mu.Lock()
	e.err = err
	e.mu.Unlock()
	e.conn.Close()
}

func (e *sharedbEditor) handle(m sharedbMsg) error {
	switch m.A {
	case "s":
		e.subReply <- m
		return nil
	case "op":
	default:
		return nil // presence, pings, handshake replies
	}
	if m.Error != nil {
		e.b.countError(fmt.Sprint(m.Error.Code))
		return fmt.Errorf("sharedb: op refused: %v %s", m.Error.Code, m.Error.Message)
	}
	if m.V == nil {
		return nil
	}
	e.mu.Lock()
	if m.Src == e.src && m.Seq == e.inSeq && e.inflight != nil && len(m.Op) == 0 {
		// The ack of our op, committed at version v.
		at := e.sentAt
		e.inflight = nil
		e.version = *m.V + 1
		var frame map[string]any
		if e.pending != nil {
			frame = e.flushLocked()
		}
		synced := e.inflight == nil && e.pending == nil
		if synced {
			close(e.syncedCh)
			e.syncedCh = make(chan struct{})
		}
		e.mu.Unlock()
		if !at.IsZero() {
			e.b.ack.add(time.Since(at))
			e.b.committed.Add(1)
		}
		if frame != nil {
			return e.send(frame)
		}
		return nil
	}
	if *m.V < e.version || len(m.Op) == 0 {
		e.mu.Unlock() // an op we have already (resubscribe), or a create
		return nil
	}
	if *m.V > e.version {
		e.mu.Unlock()
		return fmt.Errorf("sharedb: op at version %d, the client is at %d", *m.V, e.version)
	}
	op, err := ot.ParseJSON(m.Op)
	if err != nil {
		e.mu.Unlock()
		return fmt.Errorf("sharedb: op at version %d: %w", *m.V, err)
	}
	for _, mine := range []*ot.Op{&e.inflight, &e.pending} {
		if len(*mine) == 0 {
			continue
		}
		a, err := ot.Transform(*mine, op, ot.Left)
		if err == nil {
			op, err = ot.Transform(op, *mine, ot.Right)
		}
		if err != nil {
			e.mu.Unlock()
			return fmt.Errorf("sharedb: transform at version %d: %w", *m.V, err)
		}
		*mine = a
	}
	if err := e.rope.Apply(op); err != nil {
		e.mu.Unlock()
		return fmt.Errorf("sharedb: apply the op at version %d: %w", *m.V, err)
	}
	e.version++
	e.mu.Unlock()
	e.b.delivered.Add(1)
	if at, ok := e.b.sentAt.Load(opKey{m.Src, uint64(m.Seq)}); ok {
		e.b.seen.add(time.Since(at.(time.Time)))
	}
	return nil
}

// flushLocked makes the pending op the in-flight one and returns its
// message.
func (e *sharedbEditor) flushLocked() map[string]any {
	if e.pending.IsNoop() {
		e.pending = nil
		return nil
	}
	e.inflight, e.pending = e.pending, nil
	e.seq++
	e.inSeq = e.seq
	e.sentAt = time.Now()
	e.b.sentAt.Store(opKey{e.src, uint64(e.seq)}, e.sentAt)
	return map[string]any{"a": "op", "c": sharedbCollection, "d": e.id, "v": e.version, "seq": e.seq, "op": e.inflight}
}

func (e *sharedbEditor) edit(rng *rand.Rand) error {
	e.b.edits.Add(1)
	e.mu.Lock()
	if e.err != nil {
		err := e.err
		e.mu.Unlock()
		return err
	}
	n := e.rope.Len()
	var op ot.Op
	var caret int
	if n > 0 && rng.Float64() < e.b.cfg.DeleteRatio {
		caret = rng.IntN(n)
		op = client.Delete(caret, 1)
	} else {
		caret = rng.IntN(n + 1)
		op = client.Insert(caret, string(rune('a'+rng.IntN(26))))
		caret++
	}
	if err := e.rope.Apply(op); err != nil {
		e.mu.Unlock()
		return err
	}
	if e.pending == nil {
		e.pending = op
	} else if c, err := ot.Compose(e.pending, op); err == nil {
		e.pending = c
	} else {
		e.mu.Unlock()
		return err
	}
	var frame, sel map[string]any
	if e.inflight == nil {
		frame = e.flushLocked()
	}
	if e.b.cfg.Presence {
		sel = map[string]any{"a": "p", "ch": e.id, "id": e.src + "-caret", "p": map[string]int{"index": caret, "length": 0}, "pv": e.pv}
		e.pv++
	}
	e.mu.Unlock()
	if frame != nil {
		if err := e.send(frame); err != nil {
			return err
		}
	}
	if sel != nil {
		return e.send(sel)
	}
	return nil
}

func (e *sharedbEditor) waitSynced(ctx context.Context) error {
	for {
		e.mu.Lock()
		if e.inflight == nil && e.pending == nil {
			e.mu.Unlock()
			return nil
		}
		ch, err := e.syncedCh, e.err
		e.mu.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-ch:
		case <-e.done:
			return fmt.Errorf("sharedb: connection closed: %v", e.err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (e *sharedbEditor) synced(ctx context.Context) error { return e.waitSynced(ctx) }
func (e *sharedbEditor) lost() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}
func (e *sharedbEditor) text() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rope.String()
}
func (e *sharedbEditor) rev() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.version
}
func (e *sharedbEditor) close() {
	e.writeMu.Lock()
	e.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	e.writeMu.Unlock()
	e.conn.Close()
	<-e.done
}
