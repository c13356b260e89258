package collab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/tandemdocs/tandem/ot"
	"github.com/tandemdocs/tandem/ot/doctype"
	"github.com/tandemdocs/tandem/storage"
	"github.com/tandemdocs/tandem/storage/memstore"
)

// TestCoreTranscripts runs the transcripts in testdata/core: events fed to
// a document's core and everything it asked for in return, in order. The
// harness plays the driver with a real memstore, but only when a
// transcript says so (commit, read, lookup, ...), so every interleaving is
// explicit. Regenerate the expected output with
//
//	go test ./internal/collab -run TestCoreTranscripts -rewrite
//
// and read the diff.
//
// Commands:
//
//	open doc=ID [text=...] [ops=N] [snapshot-every=N] [history=N] [max-lag=N] [catch-up=N] [work=N] [max-insert=N] [max-doc=N] [max-clients=N] [hello-peers=N] [node=NODE]
//	    creates the document in a fresh store (with N one-character ops
//	    committed before the core loads it) and loads the core
//	join CLIENT src=S [rev=N] [name=NAME]
//	leave CLIENT / overflow CLIENT
//	msg CLIENT [t=MS]             the frame is the input (parse errors are printed)
//	commit [fail]                 the outstanding append goes to the store (its CAS outcome is fed back), or fails
//	read [fail=compacted|io]      answers the oldest outstanding read from the store
//	lookup                        answers every outstanding lookup from the store
//	snapshot-saved [fail]         saves the outstanding snapshot
//	presence-from [t=MS]          another node's presence update (the input, JSON); needs node= on open
//	beat [t=MS]                   this node's presence heartbeat
//	turn-asked NODE               another node lost a race and asks for a turn (needs turn-wait-ms= on open)
//	yield-over                    the turn held for others timed out
//	remote-restored CLIENT rev=N  a client of another node restored revision N
//	writer src=S seq=N [push [from=NODE]]  another writer commits the op in the input at the store's head; push feeds it as evRemote
//	writable [err=TEXT]
//	shutdown [code=N] [snapshot]
//	state                         prints the core's revisions, lifecycle, idleness and the store's log
func TestCoreTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata/core", func(t *testing.T, path string) {
		h := &harness{}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			out, err := h.run(t, d)
			if err != nil {
				return "error: " + err.Error() + "\n"
			}
			return out
		})
	})
}

type harness struct {
	store   *memstore.Store
	doc     string
	typ     doctype.Type // the document's (open type=rich)
	c       *core
	appends []*storage.Append
	reads   []readRequest
	lookups []lookupRequest
	snaps   []*storage.Snapshot
}

var errInjected = errors.New("injected failure")

func argInt(d *datadriven.TestData, key string, def int64) int64 {
	if a, ok := d.Arg(key); ok && len(a.Vals) > 0 {
		n, err := strconv.ParseInt(a.Vals[0], 10, 64)
		if err != nil {
			panic(fmt.Sprintf("%s: %s=%q: %v", d.Pos, key, a.Vals[0], err))
		}
		return n
	}
	return def
}

func argStr(d *datadriven.TestData, key, def string) string {
	if a, ok := d.Arg(key); ok && len(a.Vals) > 0 {
		return strings.Join(a.Vals, ",")
	}
	return def
}

// target is the command's first argument without a value (a client id).
func target(d *datadriven.TestData) string {
	if len(d.CmdArgs) == 0 || len(d.CmdArgs[0].Vals) > 0 {
		panic(d.Pos + ": the command needs a client")
	}
	return d.CmdArgs[0].Key
}

func (h *harness) run(t *testing.T, d *datadriven.TestData) (string, error) {
	ctx := context.Background()
	switch d.Cmd {
	case "open":
		return h.open(d)
	case "join":
		lastRev := argInt(d, "rev", -1)
		src := argStr(d, "src", "")
		name := argStr(d, "name", target(d))
		return h.step(evJoin{Client: target(d), Info: ClientInfo{Source: src, User: "u-" + name, Name: name, Color: "#" + name, LastRev: lastRev}}), nil
	case "leave":
		return h.step(evLeave{Client: target(d)}), nil
	case "title":
		return h.step(evTitle{Title: strings.TrimSpace(d.Input)}), nil
	case "overflow":
		return h.step(evOverflow{Client: target(d)}), nil
	case "msg":
		m, perr := ParseClientMessage(h.typ, []byte(strings.TrimSpace(d.Input)))
		if perr != nil {
			return "parse: " + string(EncodeError(perr)) + "\n", nil
		}
		return h.step(evMessage{Client: target(d), Msg: m, Now: time.UnixMilli(argInt(d, "t", 1000))}), nil
	case "commit":
		if len(h.appends) == 0 {
			return "", errors.New("no append outstanding")
		}
		app := h.appends[0]
		h.appends = h.appends[1:]
		if d.HasArg("fail") {
			return h.step(evCommitted{Err: errInjected}), nil
		}
		results, err := h.store.Commit(ctx, []storage.Append{*app})
		if err == nil {
			err = results[0]
		}
		return h.step(commitOutcome(err)), nil
	case "read":
		if len(h.reads) == 0 {
			return "", errors.New("no read outstanding")
		}
		r := h.reads[0]
		h.reads = h.reads[1:]
		ev := evRecords{Forward: r.Forward, From: r.From}
		switch argStr(d, "fail", "") {
		case "compacted":
			ev.Err = fmt.Errorf("records: %w", storage.ErrCompacted)
		case "io":
			ev.Err = errInjected
		default:
			to := r.To
			if to < 0 {
				doc, err := h.store.Document(ctx, h.doc)
				if err != nil {
					return "", err
				}
				to = doc.Head
			}
			recs, err := h.store.Records(ctx, h.doc, r.From, to)
			ev.Records, ev.Err = recs, err
		}
		return h.step(ev), nil
	case "lookup":
		if len(h.lookups) == 0 {
			return "", errors.New("no lookup outstanding")
		}
		var b strings.Builder
		for _, l := range h.lookups {
			rev, found, err := h.store.LookupSubmission(ctx, h.doc, l.Source, l.Seq)
			fmt.Fprintf(&b, "> lookup %s/%d: found=%v rev=%d\n", l.Source, l.Seq, found, rev)
			b.WriteString(h.step(evLookup{Source: l.Source, Seq: l.Seq, Rev: rev, Found: found, Err: err}))
		}
		h.lookups = nil
		return b.String(), nil
	case "snapshot-saved":
		if len(h.snaps) == 0 {
			return "", errors.New("no snapshot outstanding")
		}
		s := h.snaps[0]
		h.snaps = h.snaps[1:]
		if d.HasArg("fail") {
			return h.step(evSnapshotSaved{Rev: s.Rev, Err: errInjected}), nil
		}
		return h.step(evSnapshotSaved{Rev: s.Rev, Err: h.store.SaveSnapshot(ctx, h.doc, *s)}), nil
	case "writer":
		op, _, err := h.typ.ParseOp([]byte(strings.TrimSpace(d.Input)))
		if err != nil {
			return "", err
		}
		doc, err := h.store.Document(ctx, h.doc)
		if err != nil {
			return "", err
		}
		rec := storage.Record{Rev: doc.Head + 1, Op: op, Source: argStr(d, "src", ""), Seq: uint64(argInt(d, "seq", 0)), User: "u-other", Time: time.UnixMilli(argInt(d, "t", 5000))}
		results, err := h.store.Commit(ctx, []storage.Append{{DocID: h.doc, Head: doc.Head, Records: []storage.Record{rec}}})
		if err == nil {
			err = results[0]
		}
		if err != nil {
			return "", err
		}
		out := fmt.Sprintf("> the other writer committed rev %d\n", rec.Rev)
		if d.HasArg("push") {
			var from []string
			if n := argStr(d, "from", ""); n != "" {
				from = []string{n}
			}
			out += h.step(evRemote{Records: []storage.Record{rec}, From: from})
		}
		return out, nil
	case "writable":
		var err error
		if e := argStr(d, "err", ""); e != "" {
			err = errors.New(e)
		}
		return h.step(evWritable{Err: err}), nil
	case "shutdown":
		return h.step(evShutdown{Code: int(argInt(d, "code", CloseGoingAway)), Reason: "shutdown", Snapshot: d.HasArg("snapshot")}), nil
	case "tick":
		return h.step(evPresenceTick{}), nil
	case "presence-from":
		var u PresenceUpdate
		if err := json.Unmarshal([]byte(strings.TrimSpace(d.Input)), &u); err != nil {
			return "", err
		}
		return h.step(evRemotePresence{Update: u, Now: time.UnixMilli(argInt(d, "t", 1000))}), nil
	case "turn-asked":
		return h.step(evTurnAsked{Node: target(d)}), nil
	case "yield-over":
		return h.step(evYieldOver{}), nil
	case "remote-restored":
		return h.step(evRemoteRestored{Client: target(d), Rev: argInt(d, "rev", 0)}), nil
	case "beat":
		return h.step(evPresenceBeat{Now: time.UnixMilli(argInt(d, "t", 1000))}), nil
	case "linger-tick":
		return h.step(evLingerTick{}), nil
	case "state":
		return h.state()
	}
	return "", fmt.Errorf("unknown command %q", d.Cmd)
}

func (h *harness) open(d *datadriven.TestData) (string, error) {
	ctx := context.Background()
	h.store = memstore.New()
	h.doc = argStr(d, "doc", "doc")
	h.appends, h.reads, h.lookups, h.snaps = nil, nil, nil, nil
	var err error
	if h.typ, err = doctype.Lookup(argStr(d, "type", "")); err != nil {
		return "", err
	}
	content := argStr(d, "text", "")
	if h.typ.Name() == doctype.RichName {
		content = strings.TrimSpace(d.Input) // the document's Delta
	}
	if err := h.store.CreateDocument(ctx, storage.Document{ID: h.doc, Title: "T", Created: time.UnixMilli(0), Type: h.typ.Name()}, content); err != nil {
		return "", err
	}
	for i := range argInt(d, "ops", 0) {
		rec := storage.Record{Rev: i + 1, Op: doctype.PlainOp(ot.Op{ot.Insert(string(rune('a' + i%26)))}), Source: "old", Seq: uint64(i + 1), Time: time.UnixMilli(100)}
		if _, err := h.store.Commit(ctx, []storage.Append{{DocID: h.doc, Head: i, Records: []storage.Record{rec}}}); err != nil {
			return "", err
		}
	}
	cfg := Config{
		SnapshotEvery:    argInt(d, "snapshot-every", 0),
		HistoryInMemory:  int(argInt(d, "history", 0)),
		MaxLag:           argInt(d, "max-lag", 0),
		CatchUpMax:       argInt(d, "catch-up", 0),
		WorkPerToken:     argInt(d, "work", 0),
		MaxInsertBytes:   int(argInt(d, "max-insert", 0)),
		MaxDocBytes:      int(argInt(d, "max-doc", 0)),
		MaxClientsPerDoc: int(argInt(d, "max-clients", 0)),
		HelloPeers:       int(argInt(d, "hello-peers", 0)),
		PresenceCrowd:    int(argInt(d, "presence-crowd", 0)),
		CommitLinger:     time.Duration(argInt(d, "linger-us", 0)) * time.Microsecond,
		MaxConflicts:     int(argInt(d, "max-conflicts", 0)),
	}
	cfg.setDefaults()
	core := cfg.core()
	core.Node = "n1"
	if us := argInt(d, "pace-us", 0); us > 0 {
		core.FanOutPace, core.FanOutPaceFrom = time.Duration(us)*time.Microsecond, 2
	}
	if d.HasArg("node") {
		core.RemotePresence, core.Node, core.PresenceTTL = true, argStr(d, "node", ""), 6*time.Second
	}
	if ms := argInt(d, "turn-wait-ms", 0); ms > 0 {
		core.TurnWait, core.OtherWriters = time.Duration(ms)*time.Millisecond, true
	}
	doc, rope, err := storage.Load(ctx, h.store, h.doc)
	if err != nil {
		return "", err
	}
	snap, err := h.store.Snapshot(ctx, h.doc, doc.Head)
	if err != nil {
		return "", err
	}
	h.c, err = newCore(core, doc, rope, snap.Rev)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("loaded %s at rev %d: %q\n", h.doc, doc.Head, rope.Content()), nil
}

// step feeds ev to the core and prints its ready, remembering what it
// asked for.
func (h *harness) step(ev event) string {
	rd := h.c.step(ev)
	var b strings.Builder
	for _, err := range rd.Errs {
		fmt.Fprintf(&b, "log: %v\n", err)
	}
	if a := rd.Append; a != nil {
		h.appends = append(h.appends, a)
		fmt.Fprintf(&b, "append on %d:", a.Head)
		for _, r := range a.Records {
			fmt.Fprintf(&b, " %d:%s(%s/%d)", r.Rev, r.Op, r.Source, r.Seq)
		}
		b.WriteString("\n")
	}
	for _, r := range rd.Read {
		h.reads = append(h.reads, r)
		if r.Forward {
			fmt.Fprintf(&b, "read forward after %d\n", r.From)
		} else {
			fmt.Fprintf(&b, "read history %d..%d\n", r.From+1, r.To)
		}
	}
	for _, l := range rd.Lookups {
		h.lookups = append(h.lookups, l)
		fmt.Fprintf(&b, "lookup %s/%d\n", l.Source, l.Seq)
	}
	if s := rd.Snapshot; s != nil {
		if !rd.Done {
			h.snaps = append(h.snaps, s)
		}
		text := strconv.Quote(s.Content)
		if len(text) > 60 {
			text = fmt.Sprintf("(%d bytes)", len(s.Content))
		}
		fmt.Fprintf(&b, "snapshot at %d: %s\n", s.Rev, text)
	}
	if len(rd.Publish) > 0 {
		fmt.Fprintf(&b, "publish %d..%d\n", rd.Publish[0].Rev, rd.Publish[len(rd.Publish)-1].Rev)
	}
	for _, ch := range rd.Charges {
		fmt.Fprintf(&b, "charge %s %d\n", ch.Client, ch.Tokens)
	}
	for _, m := range rd.Messages {
		fmt.Fprintf(&b, "%s <- %s\n", m.To, m.Msg)
	}
	for _, c := range rd.Closes {
		fmt.Fprintf(&b, "close %s %d %q\n", c.Client, c.Code, c.Reason)
	}
	for _, j := range rd.Joined {
		if j.Err != nil {
			fmt.Fprintf(&b, "join of %s refused: %v\n", j.Client, j.Err)
		} else {
			fmt.Fprintf(&b, "joined %s\n", j.Client)
		}
	}
	if rd.PresenceTick > 0 {
		fmt.Fprintf(&b, "presence tick in %v\n", rd.PresenceTick)
	}
	if rd.CommitLinger > 0 {
		fmt.Fprintf(&b, "linger tick in %v\n", rd.CommitLinger)
	}
	for _, s := range rd.Signals {
		j, _ := json.Marshal(s)
		fmt.Fprintf(&b, "signal -> %s\n", j)
	}
	if rd.YieldTick > 0 {
		fmt.Fprintf(&b, "yield tick in %v\n", rd.YieldTick)
	}
	if rd.Presence != nil {
		j, _ := json.Marshal(rd.Presence)
		fmt.Fprintf(&b, "presence -> %s\n", j)
	}
	if rd.Done {
		b.WriteString("done\n")
	}
	if b.Len() == 0 {
		return "(nothing)\n"
	}
	return b.String()
}

func (h *harness) state() (string, error) {
	c := h.c
	var b strings.Builder
	fmt.Fprintf(&b, "%s: durable %d %q, head %d %q, log %d..%d, idle %v\n",
		c.state, c.durableRev, c.durable.Content(), c.headRev, c.head.Content(), c.logStart+1, c.headRev, c.idle())
	doc, rope, err := storage.Load(context.Background(), h.store, h.doc)
	if err != nil {
		return "", err
	}
	recs, err := h.store.Records(context.Background(), h.doc, doc.Oldest, doc.Head)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "store: %d %q:", doc.Head, rope.Content())
	for _, r := range recs {
		fmt.Fprintf(&b, " %d:%s(%s/%d)", r.Rev, r.Op, r.Source, r.Seq)
	}
	b.WriteString("\n")
	return b.String(), nil
}

// TestCoreIsPure holds the core to what makes it a state machine: its files
// start no goroutine, use no channel or select, read no clock, take no lock
// and call no Store method; the driver does all of that.
func TestCoreIsPure(t *testing.T) {
	allowed := []string{"errors", "fmt", "slices", "time", "github.com/tandemdocs/tandem/ot", "github.com/tandemdocs/tandem/ot/doctype", "github.com/tandemdocs/tandem/storage"}
	storeMethods := map[string]bool{}
	for _, name := range []string{"CreateDocument", "Document", "ListDocuments", "DeleteDocument", "Commit", "Records", "Snapshot", "SaveSnapshot", "LookupSubmission", "Compact", "Close"} {
		storeMethods[name] = true
	}
	pure := []string{"core.go", "join.go", "messages.go", "sources.go", "history.go", "commit.go", "writers.go", "events.go", "presence.go"}
	// Every file with a method of the core is one of them.
	all, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range all {
		if strings.HasSuffix(file, "_test.go") || slices.Contains(pure, file) {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv != nil && len(fn.Recv.List) == 1 {
				if star, ok := fn.Recv.List[0].Type.(*ast.StarExpr); ok {
					if id, ok := star.X.(*ast.Ident); ok && id.Name == "core" {
						t.Errorf("%s has core.%s: add the file to the pure ones this test checks", file, fn.Name.Name)
					}
				}
			}
		}
	}
	for _, file := range pure {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !slices.Contains(allowed, p) {
				t.Errorf("%s imports %s", file, p)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				t.Errorf("%s: go statement", fset.Position(n.Pos()))
			case *ast.SelectStmt, *ast.ChanType, *ast.SendStmt:
				t.Errorf("%s: channel use", fset.Position(n.Pos()))
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "time" {
					switch sel.Sel.Name {
					case "Duration", "UnixMilli", "Unix": // conversions of values the events carry
					default:
						t.Errorf("%s: time.%s", fset.Position(n.Pos()), sel.Sel.Name)
					}
				}
				if storeMethods[sel.Sel.Name] {
					t.Errorf("%s: calls %s", fset.Position(n.Pos()), sel.Sel.Name)
				}
				if sel.Sel.Name == "Lock" || sel.Sel.Name == "RLock" {
					t.Errorf("%s: takes a lock", fset.Position(n.Pos()))
				}
			}
			return true
		})
	}
}

// FuzzCore drives a core with two clients, another writer and every
// outcome the driver can report, in an order the fuzzer picks, with ops
// and selections built from its bytes. Whatever the order, the core must
// not panic, must never acknowledge or broadcast a revision it has not
// seen durable, and, once everything outstanding is answered, must hold the
// store's text.
func FuzzCore(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 2, 0, 9, 2, 5, 0, 2, 3, 2})
	f.Add([]byte{0, 0, 0, 5, 1, 2, 3, 2, 3, 4, 2, 7, 0, 2})
	f.Add([]byte{5, 5, 0, 1, 2, 4, 3, 2, 3, 2, 1, 6})
	// Found by the fuzzer: an op resubmitted after a conflict made the core
	// forget a newer seq of its source that the other writer had committed.
	f.Add([]byte("21710000171100082000071"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		h := &harness{}
		h.store = memstore.New()
		h.doc = "doc"
		if err := h.store.CreateDocument(ctx, storage.Document{ID: "doc"}, "abcdef"); err != nil {
			t.Fatal(err)
		}
		// PresenceCrowd 1: two clients are a crowd, selections wait for ticks.
		// CommitLinger: appends may wait for a tick.
		cfg := Config{HistoryInMemory: 2, MaxLag: 6, SnapshotEvery: 3, PresenceCrowd: 1, CommitLinger: time.Millisecond}
		cfg.setDefaults()
		doc, rope, _ := storage.Load(ctx, h.store, "doc")
		var err error
		core := cfg.core()
		// Another node: it asks for turns and has participants.
		core.Node, core.TurnWait, core.OtherWriters, core.RemotePresence, core.PresenceTTL = "n1", time.Millisecond, true, true, time.Second
		if h.c, err = newCore(core, doc, rope, 0); err != nil {
			t.Fatal(err)
		}
		var seq [3]uint64
		check := func(rd *ready) {
			for _, m := range rd.Messages {
				var v struct {
					Type string
					Rev  int64
				}
				if json.Unmarshal(m.Msg, &v) == nil && (v.Type == "ack" || v.Type == "op" || v.Type == "sel") && v.Rev > h.c.durableRev {
					t.Fatalf("%s at revision %d, durable is %d: %s", v.Type, v.Rev, h.c.durableRev, m.Msg)
				}
			}
			if rd.Append != nil {
				h.appends = append(h.appends, rd.Append)
			}
			h.reads = append(h.reads, rd.Read...)
			h.lookups = append(h.lookups, rd.Lookups...)
		}
		step := func(ev event) { check(h.c.step(ev)) }
		step(evJoin{Client: "c1", Info: ClientInfo{Source: "a", LastRev: -1}})
		step(evJoin{Client: "c2", Info: ClientInfo{Source: "b", LastRev: -1}})
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		commit := func(fail bool) {
			app := h.appends[0]
			h.appends = h.appends[1:]
			if fail {
				step(evCommitted{Err: errInjected})
				return
			}
			res, err := h.store.Commit(ctx, []storage.Append{*app})
			if err == nil {
				err = res[0]
			}
			step(commitOutcome(err))
		}
		read := func() {
			r := h.reads[0]
			h.reads = h.reads[1:]
			to := r.To
			if to < 0 {
				d, _ := h.store.Document(ctx, "doc")
				to = d.Head
			}
			recs, err := h.store.Records(ctx, "doc", r.From, to)
			step(evRecords{Forward: r.Forward, From: r.From, Records: recs, Err: err})
		}
		lookup := func() {
			l := h.lookups[0]
			h.lookups = h.lookups[1:]
			rev, found, err := h.store.LookupSubmission(ctx, "doc", l.Source, l.Seq)
			step(evLookup{Source: l.Source, Seq: l.Seq, Rev: rev, Found: found, Err: err})
		}
		for len(data) > 0 && h.c.state == stateOpen {
			switch next() % 11 {
			case 0, 1: // an op from c1 or c2, maybe stale, maybe a resend
				c := 1 + int(next()%2)
				if next()%4 != 0 {
					seq[c]++
				}
				rev := max(0, h.c.durableRev-int64(next()%5))
				n := int(next() % 8)
				var frame string
				switch next() % 3 {
				case 0:
					frame = fmt.Sprintf(`[%d,"x%d"]`, max(n, 1), c)
				case 1:
					frame = fmt.Sprintf(`[{"d":%d}]`, max(n%3, 1))
				default:
					frame = fmt.Sprintf(`["%d",%d]`, c, max(n, 1))
				}
				m, perr := ParseClientMessage(doctype.Plain(), fmt.Appendf(nil, `{"type":"op","rev":%d,"seq":%d,"op":%s}`, rev, seq[c], frame))
				if perr == nil {
					step(evMessage{Client: fmt.Sprintf("c%d", c), Msg: m, Now: time.UnixMilli(int64(len(data)))})
				}
			case 2:
				if len(h.appends) > 0 {
					commit(false)
				}
			case 3:
				if len(h.reads) > 0 {
					read()
				}
			case 4:
				if len(h.lookups) > 0 {
					lookup()
				}
			case 5: // the other writer commits, pushing the record or not
				d, _ := h.store.Document(ctx, "doc")
				rec := storage.Record{Rev: d.Head + 1, Op: doctype.PlainOp(ot.Op{ot.Insert("w")}), Source: "z", Seq: uint64(d.Head + 1)}
				if pending := h.c.log[h.c.durableRev-h.c.logStart:]; len(pending) > 0 && next()%2 == 0 {
					// A client moved: the other server got the resend of a
					// pending op and committed it first.
					// (It checks the index, as a server does.)
					p := pending[len(pending)-1]
					if _, found, _ := h.store.LookupSubmission(ctx, "doc", p.Source, p.Seq); !found {
						rec.Source, rec.Seq = p.Source, p.Seq
					}
				}
				if res, err := h.store.Commit(ctx, []storage.Append{{DocID: "doc", Head: d.Head, Records: []storage.Record{rec}}}); err == nil && res[0] == nil && next()%2 == 0 {
					step(evRemote{Records: []storage.Record{rec}})
				}
			case 6:
				m, perr := ParseClientMessage(doctype.Plain(), fmt.Appendf(nil, `{"type":"sel","rev":%d,"sel":[{"anchor":%d,"head":%d}]}`, max(0, h.c.durableRev-int64(next()%4)), next(), next()))
				if perr == nil {
					step(evMessage{Client: "c2", Msg: m, Now: time.UnixMilli(1)})
				}
				switch next() % 4 {
				case 0, 2:
					step(evPresenceTick{})
				case 1:
					step(evLingerTick{})
				}
			case 7:
				if next()%8 == 0 && len(h.appends) > 0 {
					commit(true)
				}
			case 9: // the other node asks for a turn, or the wait ends
				if next()%2 == 0 {
					step(evTurnAsked{Node: "n2"})
				} else {
					step(evYieldOver{})
				}
			case 10: // the other node's participant moves, at any revision; or it goes quiet
				rev := h.c.durableRev + int64(next()%5) - 2
				u := PresenceUpdate{Node: "n2", Full: next()%3 == 0, Peers: []Peer{{Client: "r1", Rev: rev,
					Sel: []ot.Selection{{Anchor: int(next()) - 10, Head: int(next())}}}}}
				if next()%4 == 0 {
					u.Peers, u.Left = nil, []string{"r1"}
				}
				step(evRemotePresence{Update: u, Now: time.UnixMilli(int64(next()) * 100)})
				if next()%3 == 0 {
					step(evPresenceBeat{Now: time.UnixMilli(int64(next()) * 100)})
				}
			case 8:
				step(evLeave{Client: "c2"})
				step(evJoin{Client: "c2", Info: ClientInfo{Source: "b", LastRev: h.c.durableRev - int64(next()%3)}})
			}
		}
		// Answer everything outstanding until the core is quiet.
		for range 1000 {
			switch {
			case h.c.state != stateOpen:
				return
			case len(h.lookups) > 0:
				lookup()
			case len(h.reads) > 0:
				read()
			case len(h.appends) > 0:
				commit(false)
			case h.c.yielding: // (a linger tick waits for it)
				step(evYieldOver{})
			case h.c.lingering:
				step(evLingerTick{})
			default:
				d, rope, err := storage.Load(ctx, h.store, "doc")
				if err != nil {
					t.Fatal(err)
				}
				if d.Head == h.c.durableRev && rope.Content() != h.c.durable.Content() {
					t.Fatalf("at %d the core holds %q, the store %q", d.Head, h.c.durable.Content(), rope.Content())
				}
				if h.c.headRev != h.c.durableRev || h.c.head.Content() != h.c.durable.Content() {
					t.Fatalf("quiet, but head %d %q and durable %d %q differ", h.c.headRev, h.c.head.Content(), h.c.durableRev, h.c.durable.Content())
				}
				recs, err := h.store.Records(ctx, "doc", 0, d.Head)
				if err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				for _, r := range recs {
					k := fmt.Sprintf("%s/%d", r.Source, r.Seq)
					if seen[k] {
						t.Fatalf("%s committed twice", k)
					}
					seen[k] = true
				}
				return
			}
		}
		t.Fatalf("the core never went quiet: head %d durable %d committing %v reading %v/%v lingering %v over %v skip %d expect %d lookups %d parked %v",
			h.c.headRev, h.c.durableRev, h.c.committing, h.c.readingBack, h.c.readingFwd, h.c.lingering, h.c.lingerOver, h.c.lingerSkip, h.c.expect, len(h.c.lookups), parkedCount(h.c))
	})
}

func parkedCount(c *core) []int {
	var n []int
	for _, cl := range c.clients {
		n = append(n, len(cl.parked))
	}
	return n
}

// TestCrowdPresenceTraffic: 2,000 participants joining one document. With
// every presence message sent to everyone, that was O(n²): 386 MB of
// hellos and joins measured before. Now hellos list at most HelloPeers
// peers and only those are announced.
func TestCrowdPresenceTraffic(t *testing.T) {
	// crowd simulates 2,000 peers joining a document, then one second in
	// which every peer moves its caret moves times every 100 ms, and counts
	// what the core sends.
	crowd := func(presenceCrowd, moves int) (joinMsgs, joinBytes, selMsgs, selBytes int) {
		h := &harness{}
		if _, err := h.run(t, &datadriven.TestData{Cmd: "open", CmdArgs: []datadriven.CmdArg{{Key: "text", Vals: []string{"hello"}},
			{Key: "presence-crowd", Vals: []string{fmt.Sprint(presenceCrowd)}}}}); err != nil {
			t.Fatal(err)
		}
		for i := range 2000 {
			rd := h.c.step(evJoin{Client: fmt.Sprintf("client-%04d", i), Info: ClientInfo{Source: fmt.Sprintf("source-%04d", i), User: "user", Name: "A Name", Color: "#e11d48", LastRev: -1}})
			if len(rd.Joined) != 1 || rd.Joined[0].Err != nil {
				t.Fatalf("join %d: %+v", i, rd.Joined)
			}
			for _, m := range rd.Messages {
				joinBytes += len(m.Msg)
				joinMsgs++
			}
		}
		// Simulated time: a round of moves every 100 ms; the tick comes
		// when the core asked for it.
		var now, due time.Duration
		count := func(rd *ready) {
			for _, m := range rd.Messages {
				selBytes += len(m.Msg)
				selMsgs++
			}
			if rd.PresenceTick > 0 {
				due = now + rd.PresenceTick
			}
		}
		for ; now < time.Second; now += 100 * time.Millisecond {
			if due > 0 && now >= due {
				due = 0
				count(h.c.step(evPresenceTick{}))
			}
			for i := range 2000 {
				for k := range moves {
					m, err := ParseClientMessage(doctype.Plain(), fmt.Appendf(nil, `{"type":"sel","rev":0,"sel":[{"anchor":%d,"head":%d}]}`, (int(now/time.Millisecond)+k)%5, k%5))
					if err != nil {
						t.Fatal(err)
					}
					count(h.c.step(evMessage{Client: fmt.Sprintf("client-%04d", i), Msg: m}))
				}
			}
		}
		if due > 0 {
			count(h.c.step(evPresenceTick{}))
		}
		return
	}
	joinMsgs, joinBytes, _, _ := crowd(0, 1)
	t.Logf("2,000 joins: %d messages, %.1f MB of presence traffic", joinMsgs, float64(joinBytes)/1e6)
	if joinBytes > 40e6 {
		t.Fatalf("%d bytes of presence traffic for 2,000 joins", joinBytes)
	}
	for _, moves := range []int{1, 3} {
		_, _, eachMsgs, eachBytes := crowd(1<<30, moves)
		_, _, tickMsgs, tickBytes := crowd(0, moves)
		t.Logf("2,000 peers each moving %d times per 100 ms for 1 s: %d messages, %.1f MB if sent as they come; %d messages, %.1f MB coalesced",
			moves, eachMsgs, float64(eachBytes)/1e6, tickMsgs, float64(tickBytes)/1e6)
		// 2,000 connections: a tick a second, one message per peer per tick
		// (the second tick sends the last moves), however often people move.
		if tickMsgs > 2*2000 {
			t.Errorf("coalesced: %d messages for 2,000 peers in one second", tickMsgs)
		}
		if tickBytes*5 > eachBytes {
			t.Errorf("coalesced: %d bytes, uncoalesced %d: expected a fifth or less", tickBytes, eachBytes)
		}
	}
}

// TestHistoryFollowsClients: a document keeps in memory the history its
// clients may still base a message on (down to minHistory), not always
// HistoryInMemory records; a client that has sent nothing since it joined
// holds it back to its join, and what it sends then still transforms.
func TestHistoryFollowsClients(t *testing.T) {
	h := &harness{}
	run := func(cmd, target, input string, args ...datadriven.CmdArg) string {
		t.Helper()
		d := &datadriven.TestData{Cmd: cmd, Input: input, CmdArgs: args}
		if target != "" {
			d.CmdArgs = append([]datadriven.CmdArg{{Key: target}}, d.CmdArgs...)
		}
		out, err := h.run(t, d)
		if err != nil {
			t.Fatalf("%s %s: %v", cmd, target, err)
		}
		return out
	}
	arg := func(k, v string) datadriven.CmdArg { return datadriven.CmdArg{Key: k, Vals: []string{v}} }
	run("open", "", "", arg("text", "abc"), arg("history", "1000"))
	run("join", "c1", "", arg("src", "a"))
	run("join", "c2", "", arg("src", "b"))
	type1 := func(who string, seq int) {
		out := run("msg", who, fmt.Sprintf(`{"type":"op","rev":%d,"seq":%d,"op":["x"]}`, h.c.durableRev, seq))
		if strings.Contains(out, "lookup") {
			out = run("lookup", "", "")
		}
		if !strings.Contains(out, "append on") {
			t.Fatalf("op %d of %s: %s", seq, who, out)
		}
		run("commit", "", "")
	}
	for i := 1; i <= 300; i++ {
		type1("c1", i)
		type1("c2", i)
	}
	if n := len(h.c.log); n > minHistory+minHistory/4 {
		t.Fatalf("two clients at the head: %d records in memory, want at most %d", n, minHistory+minHistory/4)
	}
	// c3 joins and stays quiet: what it may send is based on its join.
	joinedAt := h.c.durableRev
	run("join", "c3", "", arg("src", "c"))
	for i := 301; i <= 600; i++ {
		type1("c1", i)
		type1("c2", i)
	}
	if h.c.logStart > joinedAt {
		t.Fatalf("history from %d in memory, c3 joined at %d", h.c.logStart, joinedAt)
	}
	out := run("msg", "c3", fmt.Sprintf(`{"type":"op","rev":%d,"seq":1,"op":["y"]}`, joinedAt))
	if strings.Contains(out, "lookup") {
		out = run("lookup", "", "")
	}
	if !strings.Contains(out, "append on") || strings.Contains(out, "read history") {
		t.Fatalf("c3's op from its join: %s", out)
	}
	run("commit", "", "")
	// Its next ops are based on its acks: it is at the head too, and the
	// history shrinks again.
	for i := 601; i <= 700; i++ {
		type1("c1", i)
		type1("c2", i)
		type1("c3", i-599)
	}
	if n := len(h.c.log); n > minHistory+minHistory/4 {
		t.Fatalf("every client at the head again: %d records in memory", n)
	}
	// A client that never sends again holds at most HistoryInMemory.
	for i := 701; i <= 1500; i++ {
		type1("c1", i)
	}
	if n := len(h.c.log); n > 1000+1000/4 {
		t.Fatalf("a quiet client: %d records in memory, HistoryInMemory 1000", n)
	}
}
