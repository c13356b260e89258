package tandem

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tandemdocs/tandem/feed"
)

// Webhook is an endpoint that receives the change feed: batches of events
// POSTed as JSON, signed per the Standard Webhooks convention
// (standardwebhooks.com: webhook-id, webhook-timestamp and
// webhook-signature headers, HMAC-SHA256), so any of its verifiers checks
// them. Delivery is at least once, in feed order (so in revision order per
// document); webhook-id names the batch and is the same on every retry,
// for the receiver to de-duplicate. A batch that fails (no 2xx answer
// within Timeout) is retried with exponential backoff and jitter, from 1s
// to 5 minutes, for as long as it takes: the endpoint's position is saved
// in the store after each delivered batch, so neither a restart nor a
// receiver down for hours loses anything (within the feed's retention,
// Config.ChangesRetain). Events are read from the store as they are sent,
// never queued in memory: a receiver that never answers slows nothing and
// holds no memory, it only falls behind (tandem_webhook_lag_seconds).
//
// The body is
//
//	{"type": "tandem.changes", "timestamp": "<RFC 3339>",
//	 "data": {"events": [<feed.Event>...], "next": <cursor>}}
//
// With Debounce, each document's events are instead summed up once it has
// been quiet that long (as Hocuspocus' webhook extension does): one event
// of kind "changed" per document and quiet period, with its newest
// revision and title and no ops; deletions are sent as they come.
type Webhook struct {
	URL string
	// Secret is the signing key, "whsec_" and the key in base64 (as
	// Standard Webhooks' libraries make them). Required.
	Secret string
	// Name identifies the endpoint in the store (its position), the logs
	// and the metrics. Default: the URL's host and path.
	Name string
	// Debounce, if positive, sends one "changed" event per document per
	// quiet period of this length instead of every event.
	Debounce time.Duration
	// Timeout of one delivery (10s); MaxBatch events at most per request
	// (100).
	Timeout  time.Duration
	MaxBatch int
	// Client sends the requests (a client with this Timeout).
	Client *http.Client
}

// checkWebhooks validates the endpoints and fills in their defaults.
func checkWebhooks(hooks []Webhook) ([]Webhook, error) {
	names := map[string]bool{}
	out := make([]Webhook, 0, len(hooks))
	for _, w := range hooks {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("tandem: webhook %q: want an http(s) URL", w.URL)
		}
		if _, err := webhookKey(w.Secret); err != nil {
			return nil, fmt.Errorf("tandem: webhook %s: %w", w.URL, err)
		}
		if w.Name == "" {
			w.Name = u.Host + u.Path
		}
		if names[w.Name] {
			return nil, fmt.Errorf("tandem: two webhooks named %q: give them Names", w.Name)
		}
		names[w.Name] = true
		if w.Timeout <= 0 {
			w.Timeout = 10 * time.Second
		}
		if w.MaxBatch <= 0 {
			w.MaxBatch = 100
		}
		if w.Client == nil {
			w.Client = &http.Client{Timeout: w.Timeout}
		}
		out = append(out, w)
	}
	return out, nil
}

// webhookKey decodes a "whsec_<base64>" secret.
func webhookKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New(`the secret must be "whsec_" and the key in base64`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) < 24 {
		return nil, errors.New("the secret's key must be base64 of at least 24 bytes")
	}
	return key, nil
}

// SignWebhook returns the webhook-signature header of a message, per
// Standard Webhooks: "v1," and the base64 HMAC-SHA256, under the secret's
// key, of "<id>.<timestamp>.<body>".
func SignWebhook(secret, id string, timestamp time.Time, body []byte) (string, error) {
	key, err := webhookKey(secret)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%d.", id, timestamp.Unix())
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// deliverer sends the feed to one endpoint.
type deliverer struct {
	w    Webhook
	feed *feed.Reader
	log  *slog.Logger
	obs  *promObserver

	pending map[string]*debounced // Debounce: documents waiting to be quiet
	// start is the cursor delivery starts after: the saved position, or
	// the newest cursor when the Server was made (so that nothing made
	// after New returns is missed).
	start uint64
}

type debounced struct {
	event feed.Event // the summary so far
	first uint64     // the cursor of its oldest event not yet sent
	last  time.Time  // when its newest event was read
}

func newDeliverer(ctx context.Context, w Webhook, f *feed.Reader, log *slog.Logger, obs *promObserver) (*deliverer, error) {
	d := &deliverer{w: w, feed: f, log: log.With("webhook", w.Name), obs: obs, pending: map[string]*debounced{}}
	obs.webhook(w.Name)
	fol := follower{name: d.position(), feed: f, log: d.log}
	var err error
	if d.start, err = fol.start(ctx); err != nil {
		return nil, fmt.Errorf("tandem: webhook %s: %w", w.Name, err)
	}
	return d, nil
}

func (d *deliverer) position() string { return "webhook:" + d.w.Name }

func (d *deliverer) run(ctx context.Context) {
	after := d.start
	if d.w.Debounce > 0 {
		d.runDebounced(ctx, after)
		return
	}
	for ctx.Err() == nil {
		events, next, ok := readFeed(ctx, d.feed, d.log, after, d.w.MaxBatch)
		if !ok {
			continue
		}
		if len(events) > 0 {
			d.obs.webhookLag(d.w.Name, time.Since(events[0].Time))
			if !d.send(ctx, events, next) {
				return
			}
		}
		if next > after {
			d.save(ctx, next)
			after = next
		}
		if len(events) == 0 {
			d.obs.webhookLag(d.w.Name, 0)
			if next == after {
				d.feed.Wait(ctx, after)
			}
		}
	}
}

// runDebounced reads the feed as it comes and sends each document's
// summary once it has been quiet for Debounce. The saved position stays
// before the oldest event not yet summed up and sent.
func (d *deliverer) runDebounced(ctx context.Context, after uint64) {
	read := after
	for ctx.Err() == nil {
		events, next, ok := readFeed(ctx, d.feed, d.log, read, d.w.MaxBatch)
		if !ok {
			continue
		}
		now := time.Now()
		var urgent []feed.Event
		for _, e := range events {
			p := d.pending[e.Doc]
			if e.Kind == feed.KindDelete {
				// Sent as it comes, after what was pending for it.
				if p != nil {
					urgent = append(urgent, p.event)
					delete(d.pending, e.Doc)
				}
				urgent = append(urgent, e)
				continue
			}
			if p == nil {
				p = &debounced{first: e.Cursor, event: feed.Event{Kind: "changed", Doc: e.Doc}}
				d.pending[e.Doc] = p
			}
			p.last = now
			p.event.Cursor, p.event.Time, p.event.Rev = e.Cursor, e.Time, max(p.event.Rev, e.Rev)
			if e.Title != "" || e.Kind == feed.KindRename {
				p.event.Title = e.Title
			}
			if e.Type != "" {
				p.event.Type = e.Type
			}
		}
		read = max(read, next)
		// The quiet ones, and all of them when too many wait (memory is
		// bounded by the documents edited within one period).
		due := urgent
		for doc, p := range d.pending {
			if now.Sub(p.last) >= d.w.Debounce || len(d.pending) > 10000 {
				due = append(due, p.event)
				delete(d.pending, doc)
			}
		}
		if len(due) > 0 {
			slices.SortFunc(due, func(a, b feed.Event) int { return cmp.Compare(a.Cursor, b.Cursor) })
			if !d.send(ctx, due, read) {
				return
			}
		}
		// Saved: before the oldest pending document's first event.
		pos := read
		for _, p := range d.pending {
			pos = min(pos, p.first-1)
		}
		if pos > after {
			d.save(ctx, pos)
			after = pos
		}
		if len(events) == 0 {
			wait := d.w.Debounce
			if len(d.pending) == 0 {
				wait = time.Minute
			}
			wctx, cancel := context.WithTimeout(ctx, wait)
			d.feed.Wait(wctx, read)
			cancel()
		}
	}
}

func (d *deliverer) save(ctx context.Context, cursor uint64) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := d.feed.Log().SetPosition(sctx, d.position(), cursor); err != nil {
		d.log.Warn("saving the webhook's position", "err", err)
	}
}

// send delivers one batch until the endpoint takes it; false if ctx ended
// first.
func (d *deliverer) send(ctx context.Context, events []feed.Event, next uint64) bool {
	now := time.Now()
	body, err := json.Marshal(map[string]any{
		"type": "tandem.changes", "timestamp": now.UTC().Format(time.RFC3339Nano),
		"data": map[string]any{"events": events, "next": next},
	})
	if err != nil {
		d.log.Error("encoding a webhook batch", "err", err)
		return true
	}
	id := fmt.Sprintf("msg_%d_%d", events[0].Cursor, events[len(events)-1].Cursor)
	pause := time.Second
	for attempt := 1; ; attempt++ {
		err := d.post(ctx, id, body)
		if err == nil {
			d.obs.webhookDelivered(d.w.Name, len(events))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d.obs.webhookFailed(d.w.Name)
		d.obs.webhookLag(d.w.Name, time.Since(events[0].Time))
		// Full jitter on an exponential backoff: receivers that come
		// back are not hit by every server at once.
		wait := pause/2 + rand.N(pause/2+1)
		d.log.Warn("webhook delivery failed: retrying", "id", id, "events", len(events), "attempt", attempt, "err", err, "in", wait.Round(time.Millisecond))
		if !sleep(ctx, wait) {
			return false
		}
		pause = min(2*pause, 5*time.Minute)
	}
}

func (d *deliverer) post(ctx context.Context, id string, body []byte) error {
	ts := time.Now()
	sig, err := SignWebhook(d.w.Secret, id, ts, body)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, d.w.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, d.w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tandem-webhooks")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := d.w.Client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}
