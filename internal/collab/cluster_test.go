package collab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tandemdocs/tandem/internal/collab"
	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/memstore"
)

// otc is a ShareDB-style client over a fakeConn: one op in flight, later
// edits composed into a buffer, both transformed against others' ops (its
// own on the left); after a reconnect it catches up from its revision,
// takes its own op in the catch-up as the ack, and otherwise resends the op
// in flight with the same seq.
type otc struct {
	name string
	key  string
	src  string
	rng  *rand.Rand
	p    *peer

	text        string
	rev         int64
	seq         uint64
	inflight    ot.Op
	inflightSeq uint64
	buffer      ot.Op
	acked       []uint64 // seqs acknowledged, in order
	moves       int
	// dropped: seqs whose op others' edits reduced to nothing before the
	// server committed it (refused as empty when resent). A server that
	// still had it in flight may commit it yet, as an empty revision.
	dropped map[uint64]bool
}

func newOTC(name string, seed uint64) *otc {
	key := keyFor(name)
	return &otc{name: name, key: key, src: collab.SourceOf(key), rng: rand.New(rand.NewPCG(seed, 7)), rev: -1, dropped: map[uint64]bool{}}
}

func (c *otc) connect(m *collab.Manager, doc string) error {
	conn := newConn()
	conn.noDisconnect = true // the test says when the client leaves
	p, err := connectE(m, doc, collab.ClientInfo{Key: c.key, User: c.name, Name: c.name, LastRev: c.rev}, conn)
	if err != nil {
		return fmt.Errorf("%s: connect: %w", c.name, err)
	}
	c.p = p
	h := p.hello
	switch {
	case c.rev < 0:
		if h.Text == nil {
			return fmt.Errorf("%s: first hello without text: %v", c.name, h)
		}
		c.text, c.rev = *h.Text, h.Rev
		return nil
	case h.From == nil || *h.From != c.rev:
		return fmt.Errorf("%s: reconnect at %d got no catch-up: %v", c.name, c.rev, h)
	}
	for _, o := range h.Ops {
		if err := c.serverOp(o); err != nil {
			return err
		}
	}
	if c.rev != h.Rev {
		return fmt.Errorf("%s: catch-up ended at %d, hello at %d", c.name, c.rev, h.Rev)
	}
	if c.inflight != nil {
		c.send() // same seq: exactly once
	}
	return nil
}

func (c *otc) send() {
	b, err := json.Marshal(c.inflight)
	if err != nil {
		panic(err)
	}
	c.p.op(c.rev, c.inflightSeq, string(b))
}

// edit makes a random edit and sends or buffers it.
func (c *otc) edit() error {
	n := len([]rune(c.text))
	var op ot.Op
	pos := c.rng.IntN(n + 1)
	if n > 0 && c.rng.IntN(3) == 0 {
		del := 1 + c.rng.IntN(min(3, n))
		pos = min(pos, n-del)
		op = ot.Op{ot.Delete(del)}
	} else {
		op = ot.Op{ot.Insert([]string{"a", "b", "😀", "漢"}[c.rng.IntN(4)] + c.name)}
	}
	if pos > 0 {
		op = append(ot.Op{ot.Skip(pos)}, op...)
	}
	var err error
	if c.text, err = ot.Apply(c.text, op); err != nil {
		return fmt.Errorf("%s: local edit %v: %w", c.name, op, err)
	}
	switch {
	case c.inflight == nil:
		c.seq++
		c.inflight, c.inflightSeq = op, c.seq
		c.send()
	case c.buffer == nil:
		c.buffer = op
	default:
		if c.buffer, err = ot.Compose(c.buffer, op); err != nil {
			return err
		}
	}
	return nil
}

func (c *otc) acknowledged(rev int64) error {
	if rev != c.rev+1 {
		return fmt.Errorf("%s: ack of %d at rev %d, client at %d", c.name, c.inflightSeq, rev, c.rev)
	}
	c.rev = rev
	c.acked = append(c.acked, c.inflightSeq)
	c.inflight, c.buffer = c.buffer, nil
	if len(c.inflight) == 0 {
		c.inflight = nil
	}
	if c.inflight != nil {
		c.seq++
		c.inflightSeq = c.seq
		c.send()
	}
	return nil
}

// serverOp applies a committed op from someone else, or takes our own as
// the ack of the op in flight.
func (c *otc) serverOp(m msg) error {
	if m.Src == c.src && c.dropped[uint64(m.seq())] {
		m.Src = "" // an op that came to nothing: apply it as anyone's
	}
	if m.Src == c.src {
		if c.inflight == nil || m.seq() != int64(c.inflightSeq) {
			return fmt.Errorf("%s: our own op %v, in flight %d", c.name, m, c.inflightSeq)
		}
		return c.acknowledged(m.Rev)
	}
	if m.Rev != c.rev+1 {
		return fmt.Errorf("%s: op at %d, client at %d", c.name, m.Rev, c.rev)
	}
	server, err := ot.ParseJSON(m.Op)
	if err != nil {
		return err
	}
	for _, local := range []*ot.Op{&c.inflight, &c.buffer} {
		if *local == nil {
			continue
		}
		l, err := ot.Transform(*local, server, ot.Left)
		if err != nil {
			return err
		}
		if server, err = ot.Transform(server, *local, ot.Right); err != nil {
			return err
		}
		*local = l
	}
	if c.text, err = ot.Apply(c.text, server); err != nil {
		return fmt.Errorf("%s: apply %v: %w", c.name, m, err)
	}
	c.rev = m.Rev
	return nil
}

// pump handles one message, waiting for it.
func (c *otc) pump() error {
	e, err := c.p.nextEvent(wait)
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	if e.close != 0 {
		return fmt.Errorf("%s: closed %d %s", c.name, e.close, e.reason)
	}
	switch m := e.msg; m.Type {
	case "ack":
		if c.dropped[uint64(m.seq())] && m.Rev == c.rev+1 {
			c.rev++ // committed by the old server after all, as nothing
			return nil
		}
		if c.inflight == nil || m.seq() != int64(c.inflightSeq) {
			return fmt.Errorf("%s: ack %v with %d in flight", c.name, m, c.inflightSeq)
		}
		return c.acknowledged(m.Rev)
	case "op":
		return c.serverOp(m)
	case "error":
		if m.Code == collab.CodeInvalidOp && c.inflight != nil && len(c.inflight) == 0 && m.seq() == int64(c.inflightSeq) {
			c.dropped[c.inflightSeq] = true
			c.inflight, c.buffer = c.buffer, nil
			if c.inflight != nil {
				c.seq++
				c.inflightSeq = c.seq
				c.send()
			}
			return nil
		}
		return fmt.Errorf("%s: error %v", c.name, m)
	}
	return nil // presence
}

// TestTwoWritersConverge: two Managers over one shared store (a cluster
// of two servers), clients on both editing one document at once and
// moving between them mid-flight. Every append races the other server's:
// conflicts are resolved by reading the other's records and submitting
// again on top of them. In the end every client and the store have the
// same text, the log has no gap and no (source, seq) twice, and every op a
// client had acknowledged is in it exactly once.
func TestTwoWritersConverge(t *testing.T) {
	t.Parallel()
	mem := memstore.New()
	createDoc(t, mem, "doc", "shared start\n")
	broker := collab.NewMemoryBroker()
	ms := []*collab.Manager{
		newManager(t, mem, collab.Config{Broker: broker, HistoryInMemory: 16}),
		newManager(t, mem, collab.Config{Broker: broker, HistoryInMemory: 16}),
	}
	const clients, edits = 8, 60
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	cls := make([]*otc, clients)
	var wg sync.WaitGroup
	for i := range clients {
		c := newOTC(fmt.Sprintf("c%d", i), seed+uint64(i))
		cls[i] = c
		wg.Go(func() {
			at := i % 2
			if err := c.connect(ms[at], "doc"); err != nil {
				t.Error(err)
				return
			}
			for k := range edits {
				if err := c.edit(); err != nil {
					t.Error(err)
					return
				}
				if k%15 == 7 {
					// Move to the other server with the op in flight:
					// its ack may be lost, the resend must not apply
					// twice.
					c.p.cl.Disconnect()
					at = 1 - at
					c.moves++
					if err := c.connect(ms[at], "doc"); err != nil {
						t.Error(err)
						return
					}
				}
				for c.inflight != nil {
					if err := c.pump(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	headRev, text := head(t, mem, "doc")
	for _, c := range cls {
		for c.rev < headRev {
			if err := c.pump(); err != nil {
				t.Fatal(err)
			}
		}
		if c.text != text {
			t.Fatalf("%s at %d: %q, store at %d: %q", c.name, c.rev, c.text, headRev, text)
		}
	}
	recs, err := mem.Records(context.Background(), "doc", 0, headRev)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int64{}
	for i, r := range recs {
		if r.Rev != int64(i+1) {
			t.Fatalf("record %d has rev %d", i, r.Rev)
		}
		k := fmt.Sprintf("%s/%d", r.Source, r.Seq)
		if prev, dup := seen[k]; dup {
			t.Fatalf("%s committed twice: revs %d and %d", k, prev, r.Rev)
		}
		seen[k] = r.Rev
	}
	total := 0
	for _, c := range cls {
		for seq := range c.dropped {
			if _, ok := seen[fmt.Sprintf("%s/%d", c.src, seq)]; ok {
				total++ // committed as nothing after all
			}
		}
		for _, seq := range c.acked {
			if _, ok := seen[fmt.Sprintf("%s/%d", c.src, seq)]; !ok {
				t.Fatalf("%s: acknowledged seq %d is not in the log", c.name, seq)
			}
		}
		total += len(c.acked)
	}
	if total != len(recs) {
		t.Fatalf("%d acknowledged ops, %d records", total, len(recs))
	}
	st := []collab.CommitStats{ms[0].Stats(), ms[1].Stats()}
	t.Logf("%d records; writes by server: %+v %+v", len(recs), st[0], st[1])
	if st[0].Records == 0 || st[1].Records == 0 {
		t.Fatalf("one server committed nothing: %+v %+v", st[0], st[1])
	}
	if st[0].Records+st[1].Records != int64(len(recs)) {
		t.Fatalf("the servers committed %d records, the log has %d", st[0].Records+st[1].Records, len(recs))
	}
}

// TestTwoWritersWithoutBroker: without a broker a server hears of the
// other's commits only when its own append conflicts; clients still
// converge once each server has committed after the other.
func TestTwoWritersWithoutBroker(t *testing.T) {
	t.Parallel()
	mem := memstore.New()
	createDoc(t, mem, "doc", "")
	m1 := newManager(t, mem, collab.Config{})
	m2 := newManager(t, mem, collab.Config{})
	a := newOTC("a", 1)
	b := newOTC("b", 2)
	if err := a.connect(m1, "doc"); err != nil {
		t.Fatal(err)
	}
	if err := b.connect(m2, "doc"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		for _, c := range []*otc{a, b} {
			if err := c.edit(); err != nil {
				t.Fatal(err)
			}
			for c.inflight != nil {
				if err := c.pump(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	headRev, text := head(t, mem, "doc")
	if headRev != 10 {
		t.Fatalf("head %d", headRev)
	}
	// a's last commit (rev 9) was before b's; b saw everything (each of
	// its appends conflicted with a's last one and read it).
	for b.rev < headRev {
		if err := b.pump(); err != nil {
			t.Fatal(err)
		}
	}
	if b.text != text {
		t.Fatalf("b: %q, store %q", b.text, text)
	}
	recs, err := mem.Records(context.Background(), "doc", 0, headRev)
	if err != nil {
		t.Fatal(err)
	}
	var prev storage.Record
	for _, r := range recs {
		if r.Rev != prev.Rev+1 {
			t.Fatalf("gap after %d", prev.Rev)
		}
		prev = r
	}
}
