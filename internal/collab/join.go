package collab

import (
	"slices"

	"github.com/tandemdocs/tandem/ot"
)

// ---------------------------------------------------------------------------
// Joining and leaving.

func (c *core) join(ev evJoin) {
	if c.state != stateOpen {
		c.out.Joined = append(c.out.Joined, joinOutcome{Client: ev.Client, Err: protoErr(CodeInternal, "document %s is closing; retry", c.id)})
		return
	}
	if c.cfg.MaxClients > 0 && len(c.clients) >= c.cfg.MaxClients {
		c.out.Joined = append(c.out.Joined, joinOutcome{Client: ev.Client, Err: protoErr(CodeDocumentFull, "document %s has %d connections, the most it takes; try again later", c.id, len(c.clients))})
		return
	}
	if _, dup := c.byID[ev.Client]; dup {
		c.out.Joined = append(c.out.Joined, joinOutcome{Client: ev.Client, Err: protoErr(CodeInternal, "connection %s joined twice", ev.Client)})
		return
	}
	cl := &client{id: ev.Client, info: ev.Info}
	if _, known := c.sources[cl.info.Source]; !known && cl.info.KeyIssued {
		// A key issued just now: its source has committed nothing.
		c.sources[cl.info.Source] = source{mine: true}
	}
	c.clients = append(c.clients, cl)
	c.byID[cl.id] = cl
	c.tryHello(cl)
}

// tryHello sends cl its hello if the core has what it needs, and reports
// whether it did; otherwise it has asked for it (a read) and tries again
// when it comes.
func (c *core) tryHello(cl *client) bool {
	if c.state != stateOpen {
		c.leave(cl.id, false)
		return false
	}
	from := cl.info.LastRev
	if from > c.durableRev {
		// The client saw a revision another writer committed and this core
		// has not heard of yet: catch up first, with a forward read that
		// starts after the join, so that the client's view never goes back.
		if cl.fwdTicket == 0 {
			cl.fwdTicket = c.fwdIssued + 1
			c.noteRemote(from)
		}
		if c.fwdDone < cl.fwdTicket {
			return false
		}
	}
	catchUp := from >= 0 && from <= c.durableRev && c.durableRev-from <= c.cfg.CatchUpMax && from >= c.oldest
	if catchUp && from < c.logStart && c.histErr == nil {
		c.readHistory(from)
		return false
	}
	catchUp = catchUp && from >= c.logStart
	var ops []committed
	if catchUp {
		ops = c.log[from-c.logStart : c.durableRev-c.logStart]
		catchUp = catchUpBytes(ops) <= max(c.durable.Size(), 256<<10)
	}
	c.send(cl, c.hello(cl, catchUp, ops))
	cl.joined = true
	cl.joinRev = c.durableRev
	cl.floor = c.durableRev
	if r := cl.info.LastRev; r >= 0 && r < cl.floor {
		cl.floor = r // it may resend ops based on where it was
	}
	// Presence is announced for the first HelloPeers participants only: in
	// a crowded document the others are counted in hellos, and their
	// joins, leaves and selections go to nobody, so a crowd of n costs
	// O(n × HelloPeers) presence traffic, not O(n²).
	if c.announced+c.remoteShown < c.cfg.HelloPeers {
		cl.announced = true
		c.announced++
		c.sendOthers(cl, encodeJoin(cl.peer()))
		c.tellPeer(cl)
	}
	c.out.Joined = append(c.out.Joined, joinOutcome{Client: cl.id})
	c.drainClient(cl)
	return true
}

// hello builds the first message for cl: the durable state (the text, or
// the ops after cl's last revision), the peers and their selections.
func (c *core) hello(cl *client, catchUp bool, ops []committed) []byte {
	size := 256
	if !catchUp {
		size += c.durable.Size()
	}
	b := append(make([]byte, 0, size), `{"type":"hello","protocol":`...)
	b = appendInt(b, ProtocolVersion)
	b = appendField(b, "doc")
	b = appendString(b, c.id)
	b = appendField(b, "title")
	b = appendString(b, c.title)
	b = appendField(b, "client")
	b = appendString(b, cl.id)
	b = appendField(b, "src")
	b = appendString(b, cl.info.Source)
	if cl.info.Key != "" && cl.info.KeyIssued {
		b = appendField(b, "key")
		b = appendString(b, cl.info.Key)
	}
	b = appendField(b, "doctype")
	b = appendString(b, c.typ.Name())
	b = appendField(b, "rev")
	b = appendInt(b, c.durableRev)
	if catchUp {
		b = appendField(b, "from")
		b = appendInt(b, cl.info.LastRev)
		b = appendField(b, "ops")
		b = append(b, '[')
		for i := range ops {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendObject(b, func(b []byte) []byte { return appendOpFields(b, &ops[i]) })
		}
		b = append(b, ']')
	} else {
		b = appendContent(b, c.typ, c.durable)
	}
	b = appendField(b, "peers")
	b = append(b, '[')
	// A hello lists the announced peers, this node's and other nodes' (at
	// most HelloPeers); the others come as a count.
	listed, more := 0, 0
	list := func(announced bool, p Peer, sel []ot.Selection) {
		if !announced || listed >= c.cfg.HelloPeers {
			more++
			return
		}
		if listed > 0 {
			b = append(b, ',')
		}
		listed++
		b = appendObject(b, func(b []byte) []byte {
			b = appendPeerFields(b, p)
			b = appendField(b, "sel")
			return appendSelections(b, sel)
		})
	}
	for _, p := range c.clients {
		if p != cl && p.joined && !p.left {
			list(p.announced, p.peer(), p.sel)
		}
	}
	for _, rp := range c.remotes {
		sel := rp.sel
		if !rp.at {
			sel = nil // placed when this node reaches its revision
		}
		list(rp.shown, rp.peer, sel)
	}
	b = append(b, ']')
	if more > 0 {
		b = appendField(b, "more")
		b = appendInt(b, int64(more))
	}
	return append(b, '}')
}

// catchUpBytes estimates the size of ops in a hello: past the text's size,
// sending the text is cheaper.
func catchUpBytes(ops []committed) int {
	n := 0
	for _, r := range ops {
		n += 96 + opBytes(r.Op)
	}
	return n
}

// leave removes a client; overflow closes its connection for resync first
// (its queue overflowed: it missed messages). Ops it sent that wait for a
// lookup or history are still committed (as they would have been had they
// not waited): the client is kept, out of sight, until they are done.
func (c *core) leave(id string, overflow bool) {
	cl := c.byID[id]
	if cl == nil || cl.left {
		return
	}
	if overflow {
		c.out.Closes = append(c.out.Closes, closing{Client: id, Code: CloseResync, Reason: "outbound queue full: reconnect and catch up"})
	}
	if !cl.joined {
		c.remove(cl)
		c.out.Joined = append(c.out.Joined, joinOutcome{Client: id, Err: protoErr(CodeInternal, "connection closed before it joined")})
		return
	}
	if cl.announced {
		cl.announced = false
		c.announced--
		c.sendOthers(cl, encodeLeave(id))
		c.tellLeft(id)
	}
	cl.parked = slices.DeleteFunc(cl.parked, func(p *parked) bool { return p.msg.Type != "op" })
	if len(cl.parked) > 0 {
		cl.left = true
		return
	}
	c.remove(cl)
}

func (c *core) remove(cl *client) {
	delete(c.byID, cl.id)
	c.clients = slices.DeleteFunc(c.clients, func(o *client) bool { return o == cl })
}
