package collab

import (
	"slices"
	"time"

	"github.com/tandemdocs/tandem/ot"
)

// Presence across the nodes of a cluster.
//
// Each node tells the others, per document, of its own participants: the
// ones it announces to its clients (see tryHello). An update lists those
// who joined or moved (with their selection and the revision it is at) and
// those who left; every PresenceHeartbeat a node sends its whole list
// (Full), which repairs a lost update. A node that stops sending (it
// crashed, or lost NATS) has its participants expire PresenceTTL after its
// last word, and every other node tells its clients they left. A node that
// unloads a document or shuts down says so at once (a Full update with
// nobody).
//
// A node shows another's participants to its own clients as it shows its
// own: join, sel and leave messages, and in hellos, within the HelloPeers
// bound shared with its own. A remote selection is moved to the receiving
// node's durable revision through the records it holds, or waits for it
// when the sender is ahead.

// Peer is a participant of a document as the other nodes see it.
type Peer struct {
	Client string `json:"client"`
	User   string `json:"user,omitempty"`
	Name   string `json:"name,omitempty"`
	Color  string `json:"color,omitempty"`
	// Source is the participant's source: a caret moves past its own
	// inserts.
	Source string `json:"src,omitempty"`
	// Sel is the participant's selection at revision Rev.
	Rev int64          `json:"rev"`
	Sel []ot.Selection `json:"sel"`
}

// PresenceUpdate is what a node tells the others of its participants in
// one document.
type PresenceUpdate struct {
	Node string `json:"node"`
	// Full: Peers are all the node's participants in the document; any
	// other the receivers know of it has gone.
	Full  bool     `json:"full,omitempty"`
	Peers []Peer   `json:"peers,omitempty"` // joined or moved
	Left  []string `json:"left,omitempty"`
	// Head is the sender's durable revision (heartbeats): a node behind it
	// reads up to it, so a lost Publish is found within a heartbeat even
	// when nobody commits again.
	Head int64 `json:"head,omitempty"`
}

// PresenceBroker carries presence between the nodes of a cluster. Like a
// Broker it may lose messages: the next heartbeat repairs them.
type PresenceBroker interface {
	// PublishPresence must not block for long: it runs on the document's
	// loop.
	PublishPresence(doc string, u PresenceUpdate)
	// SubscribePresence calls deliver with the updates of every node
	// (possibly the subscriber's own, which it ignores) until the
	// returned function is called. deliver must not block.
	SubscribePresence(doc string, deliver func(PresenceUpdate)) (unsubscribe func())
}

// evRemotePresence: an update from another node, received at Now.
type evRemotePresence struct {
	Update PresenceUpdate
	Now    time.Time
}

// evPresenceBeat: time for this node's heartbeat, and to expire the
// participants of nodes that went quiet.
type evPresenceBeat struct{ Now time.Time }

func (evRemotePresence) isEvent() {}
func (evPresenceBeat) isEvent()   {}

// remotePeer is another node's participant as this core shows it.
type remotePeer struct {
	node  string
	peer  Peer // Sel at Rev as received
	sel   []ot.Selection
	at    bool // sel is placed at the durable revision (else it waits for Rev)
	seen  time.Time
	shown bool // this node's clients were told of it
}

// localPeer is one of this core's clients as the others see it.
func (c *core) localPeer(cl *client) Peer {
	p := cl.peer()
	p.Rev, p.Sel = c.durableRev, slices.Clone(cl.sel)
	return p
}

// tellPeer and tellLeft add to this step's update for the other nodes.
func (c *core) tellPeer(cl *client) {
	if !c.cfg.RemotePresence {
		return
	}
	u := c.presenceUpdate()
	u.Peers = append(u.Peers, c.localPeer(cl))
}

func (c *core) tellLeft(id string) {
	if !c.cfg.RemotePresence {
		return
	}
	u := c.presenceUpdate()
	u.Left = append(u.Left, id)
}

func (c *core) presenceUpdate() *PresenceUpdate {
	if c.out.Presence == nil {
		c.out.Presence = &PresenceUpdate{Node: c.cfg.Node}
	}
	return c.out.Presence
}

// presenceBeat sends this node's whole list (if it has anyone, or had at
// the last beat) and expires the participants of quiet nodes.
func (c *core) presenceBeat(now time.Time) {
	var peers []Peer
	for _, cl := range c.clients {
		if cl.announced && !cl.left {
			peers = append(peers, c.localPeer(cl))
		}
	}
	switch {
	case len(peers) > 0 || c.toldPeers:
		c.out.Presence = &PresenceUpdate{Node: c.cfg.Node, Full: true, Peers: peers, Head: c.durableRev}
		c.toldPeers = len(peers) > 0
		c.beatHead = c.durableRev
	case c.durableRev > c.beatHead:
		// Nobody here, but revisions committed since the last beat: the
		// other nodes may have missed their Publish.
		c.out.Presence = &PresenceUpdate{Node: c.cfg.Node, Head: c.durableRev}
		c.beatHead = c.durableRev
	}
	c.dropRemotes(func(rp *remotePeer) bool { return now.Sub(rp.seen) > c.cfg.PresenceTTL })
}

// presenceGone tells the other nodes this node has nobody left in the
// document (it closes).
func (c *core) presenceGone() {
	if c.cfg.RemotePresence && c.toldPeers {
		c.out.Presence = &PresenceUpdate{Node: c.cfg.Node, Full: true, Head: c.durableRev}
		c.toldPeers = false
	}
}

// remotePresence takes another node's update.
func (c *core) remotePresence(ev evRemotePresence) {
	u := ev.Update
	if u.Node == c.cfg.Node || u.Node == "" {
		return
	}
	if u.Head > c.durableRev {
		c.noteRemote(u.Head)
	}
	if len(u.Left) > 0 {
		c.dropRemotes(func(rp *remotePeer) bool { return rp.node == u.Node && slices.Contains(u.Left, rp.peer.Client) })
	}
	if u.Full {
		c.dropRemotes(func(rp *remotePeer) bool {
			return rp.node == u.Node && !slices.ContainsFunc(u.Peers, func(p Peer) bool { return p.Client == rp.peer.Client })
		})
	}
	var moved [][]byte
	for _, p := range u.Peers {
		if p.Client == "" || c.byID[p.Client] != nil {
			continue // nobody, or one of ours under that id (ids are random: not in practice)
		}
		rp := c.remoteByID(p.Client)
		if rp == nil {
			rp = &remotePeer{node: u.Node}
			c.remotes = append(c.remotes, rp)
		}
		changed := rp.peer.Rev != p.Rev || !slices.Equal(rp.peer.Sel, p.Sel)
		rp.node, rp.peer, rp.seen = u.Node, p, ev.Now
		if !rp.shown && c.announced+c.remoteShown < c.cfg.HelloPeers {
			rp.shown = true
			c.remoteShown++
			c.sendOthers(nil, encodeJoin(p))
			changed = len(p.Sel) > 0
		}
		if changed && c.placeRemote(rp) && rp.shown {
			moved = append(moved, encodeSel(rp.peer.Client, c.durableRev, rp.sel))
		}
	}
	if len(moved) > 0 {
		c.sendOthers(nil, encodeBatch(moved, -1))
	}
}

func (c *core) remoteByID(id string) *remotePeer {
	for _, rp := range c.remotes {
		if rp.peer.Client == id {
			return rp
		}
	}
	return nil
}

// dropRemotes removes the remote participants gone says are gone, telling
// this node's clients of those they were shown.
func (c *core) dropRemotes(gone func(*remotePeer) bool) {
	c.remotes = slices.DeleteFunc(c.remotes, func(rp *remotePeer) bool {
		if !gone(rp) {
			return false
		}
		if rp.shown {
			c.remoteShown--
			c.sendOthers(nil, encodeLeave(rp.peer.Client))
		}
		return true
	})
}

// placeRemote moves a remote selection from its revision to the durable
// one, and reports whether it is placed (false: it waits until this node
// has the revision it is at).
func (c *core) placeRemote(rp *remotePeer) bool {
	p := rp.peer
	if p.Rev > c.durableRev {
		rp.at = false
		c.remoteWaiting = true
		return false
	}
	sel := make([]ot.Selection, len(p.Sel))
	for i, s := range p.Sel {
		if p.Rev >= c.logStart {
			s = clampSelection(s, c.lenAt(p.Rev))
			since := c.log[p.Rev-c.logStart : c.durableRev-c.logStart]
			for j := range since {
				s = c.typ.TransformSelection(s, since[j].Op, sideOf(p.Source, &since[j]))
			}
		}
		// (From before the records held, it is only clamped: the next
		// update places it exactly.)
		sel[i] = clampSelection(s, c.durable.Len())
	}
	rp.sel, rp.at = sel, true
	return true
}

// placeWaiting places the remote selections this node has caught up
// with.
func (c *core) placeWaiting() {
	if !c.remoteWaiting {
		return
	}
	c.remoteWaiting = false
	var moved [][]byte
	for _, rp := range c.remotes {
		if rp.at {
			continue
		}
		if c.placeRemote(rp) && rp.shown {
			moved = append(moved, encodeSel(rp.peer.Client, c.durableRev, rp.sel))
		}
	}
	if len(moved) > 0 {
		c.sendOthers(nil, encodeBatch(moved, -1))
	}
}

// moveRemotes moves the placed remote selections through a record made
// durable.
func (c *core) moveRemotes(r *committed) {
	for _, rp := range c.remotes {
		if !rp.at {
			continue
		}
		for i, s := range rp.sel {
			rp.sel[i] = c.typ.TransformSelection(s, r.Op, sideOf(rp.peer.Source, r))
		}
	}
}

func sideOf(source string, r *committed) ot.Side {
	if r.Source != "" && r.Source == source {
		return ot.Right
	}
	return ot.Left
}
