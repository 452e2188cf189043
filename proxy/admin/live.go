package admin

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/storage"
)

// The admin page's memory is bounded in entries, and each entry in bytes
// (events.Event.Bounded): recentEvents decisions in the ring (and as many
// waiting in pending at start), maxBlocked refused digests,
// maxBlockedClients addresses for each.
const (
	// recentEvents is how many pull decisions the admin page keeps in
	// memory (and reloads from the audit log at start).
	recentEvents = 1000
	// maxBlocked is how many refused digests the blocked list keeps; past
	// it, the one seen least recently goes.
	maxBlocked = 1000
	// maxBlockedClients is how many addresses a refused digest counts one
	// by one; the others are counted together under otherClients.
	maxBlockedClients = 64
	otherClients      = "other"
)

// BlockedImage is a refused image (or blob) as the admin page shows it:
// what was found where, when, and who kept asking.
type BlockedImage struct {
	Image     string            `json:"image"` // as last asked for
	Digest    digest.Digest     `json:"digest"`
	Decision  verdict.Outcome   `json:"decision"` // of the last attempt
	Reason    string            `json:"reason"`
	Findings  []storage.Finding `json:"findings"`
	FirstSeen time.Time         `json:"first_seen"`
	LastSeen  time.Time         `json:"last_seen"`
	Attempts  int               `json:"attempts"`
	Clients   map[string]int    `json:"clients"` // address -> attempts
	Override  *storage.Override `json:"override,omitempty"`
}

// sseMessage is one server-sent event: its name and JSON data.
type sseMessage struct {
	Event string
	Data  any
}

// Live is the admin page's memory: a ring of recent decisions (this
// replica's and, with a shared store, the others'), the blocked images, the
// last upstream errors, and the subscribers to changes.
type Live struct {
	mu       sync.Mutex
	ring     []events.Event // oldest first once full, see add
	next     int
	full     bool
	blocked  map[digest.Digest]*BlockedImage
	upErrors map[string]time.Time // registry -> last upstream error
	subs     map[chan sseMessage]struct{}

	// Other replicas' decisions wait in pending until load has replayed
	// the audit log; one that load already kept (written to the shared
	// log before it reached us) is then dropped, once, by its key.
	loaded  map[eventKey]struct{} // nil until load
	pending []events.Event
}

// eventKey tells a decision from the others, wherever it comes from.
type eventKey struct {
	time     int64 // Unix nanoseconds: the decision's time survives JSON
	digest   digest.Digest
	decision verdict.Outcome
	client   string
}

func keyOf(ev events.Event) eventKey {
	return eventKey{time: ev.Time.UnixNano(), digest: ev.Digest, decision: ev.Decision, client: ev.Client}
}

// NewLive makes an empty live view.
func NewLive() *Live {
	return &Live{
		ring:     make([]events.Event, recentEvents),
		blocked:  map[digest.Digest]*BlockedImage{},
		upErrors: map[string]time.Time{},
		subs:     map[chan sseMessage]struct{}{},
	}
}

// Emit keeps ev and tells the subscribers: Live is the sink of this
// replica's decisions.
func (l *Live) Emit(ev events.Event) { l.add(ev) }

// Remote is the sink of the other replicas' decisions (from the event
// bus): each is kept once, whether or not the audit log had it at Load.
func (l *Live) Remote() events.Sink { return events.SinkFunc(l.addShared) }

// add keeps ev and tells the subscribers.
func (l *Live) add(ev events.Event) {
	l.mu.Lock()
	l.keep(ev)
	l.mu.Unlock()
	l.notify(sseMessage{Event: "pull", Data: ev})
}

// addShared keeps a decision another replica made, once.
func (l *Live) addShared(ev events.Event) {
	l.mu.Lock()
	if l.loaded == nil {
		if len(l.pending) < recentEvents {
			l.pending = append(l.pending, ev)
		}
		l.mu.Unlock()
		return
	}
	if k := keyOf(ev); l.seen(k) {
		l.mu.Unlock()
		return
	}
	l.keep(ev)
	l.mu.Unlock()
	l.notify(sseMessage{Event: "pull", Data: ev})
}

// seen reports whether load kept the decision k, and forgets it: each
// arrives on the bus at most once.
func (l *Live) seen(k eventKey) bool {
	_, ok := l.loaded[k]
	delete(l.loaded, k)
	return ok
}

// LoadFrom reloads the recent decisions from the audit log a (nil: there
// is none). A log that cannot be read leaves the view empty, and says so.
func (l *Live) LoadFrom(a storage.AuditLog, log *slog.Logger) {
	var recs []storage.AuditRecord
	if a != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if recs, err = a.Query(ctx, storage.AuditQuery{Limit: recentEvents}); err != nil {
			log.Warn("admin: recent decisions not reloaded from the audit log", "err", err)
		}
	}
	l.load(recs)
}

// load replays records from the audit log (newest first, as a query
// returns them; nil without one), then the decisions shared while it was
// read, without telling anyone. It is called once, at start, after the
// bus is joined, so that no decision falls between the two.
func (l *Live) load(records []storage.AuditRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loaded = make(map[eventKey]struct{}, len(records))
	for i := len(records) - 1; i >= 0; i-- {
		if records[i].Kind == storage.AuditPull || records[i].Kind == storage.AuditRetroactive {
			ev := events.FromAudit(records[i])
			l.keep(ev)
			l.loaded[keyOf(ev)] = struct{}{}
		}
	}
	for _, ev := range l.pending {
		if !l.seen(keyOf(ev)) {
			l.keep(ev)
		}
	}
	l.pending = nil
}

func (l *Live) keep(ev events.Event) {
	l.ring[l.next] = ev
	l.next = (l.next + 1) % len(l.ring)
	l.full = l.full || l.next == 0
	switch {
	case class(ev.Decision) == classBad:
		b := l.blocked[ev.Digest]
		if b == nil {
			if len(l.blocked) >= maxBlocked {
				l.forgetOldestBlocked()
			}
			b = &BlockedImage{Digest: ev.Digest, FirstSeen: ev.Time, Clients: map[string]int{}}
			l.blocked[ev.Digest] = b
		}
		b.Image, b.Decision, b.Reason, b.LastSeen = ev.Image, ev.Decision, ev.Reason, ev.Time
		if len(ev.Findings) > 0 {
			b.Findings = ev.Findings
		}
		b.Attempts++
		client := ev.Client
		if _, ok := b.Clients[client]; !ok && len(b.Clients) >= maxBlockedClients {
			client = otherClients
		}
		b.Clients[client]++
	case ev.Decision == verdict.UpstreamFailed:
		l.upErrors[ev.Registry()] = ev.Time
	default:
		// A digest served since (an operator allowed it) keeps its row,
		// with the decision that changed.
		if b := l.blocked[ev.Digest]; b != nil {
			b.Decision, b.LastSeen = ev.Decision, ev.Time
		}
	}
}

// forgetOldestBlocked drops the refused digest seen least recently. The
// caller holds l.mu.
func (l *Live) forgetOldestBlocked() {
	var oldest *BlockedImage
	for _, b := range l.blocked {
		if oldest == nil || b.LastSeen.Before(oldest.LastSeen) {
			oldest = b
		}
	}
	if oldest != nil {
		delete(l.blocked, oldest.Digest)
	}
}

// Recent returns up to n decisions, newest first.
func (l *Live) Recent(n int) []events.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	size := l.next
	if l.full {
		size = len(l.ring)
	}
	n = min(n, size)
	out := make([]events.Event, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, l.ring[(l.next-i+len(l.ring))%len(l.ring)])
	}
	return out
}

// BlockedImages returns the blocked images, most recently seen first.
func (l *Live) BlockedImages() []BlockedImage {
	l.mu.Lock()
	out := make([]BlockedImage, 0, len(l.blocked))
	for _, b := range l.blocked {
		c := *b
		c.Clients = make(map[string]int, len(b.Clients))
		for k, v := range b.Clients {
			c.Clients[k] = v
		}
		out = append(out, c)
	}
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].LastSeen.After(out[j].LastSeen) })
	return out
}

func (l *Live) lastUpstreamError(registry string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.upErrors[registry]
}

// subscribe returns a channel of changes and a function to stop them.
func (l *Live) subscribe() (<-chan sseMessage, func()) {
	ch := make(chan sseMessage, 64)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}

// notify sends m to every subscriber without waiting: one that is not
// keeping up misses it (the page catches up on the next message or tick).
func (l *Live) notify(m sseMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.subs {
		select {
		case ch <- m:
		default:
		}
	}
}

// classBad is the class of a refusal for what the content or its name is:
// those are the blocked list's.
const classBad = "bad"

// class sorts an outcome for the page and the blocked list: a refusal
// for the content or its name, one that says nothing about either (still
// scanning, upstream down: "warn"), served ("ok"), an index ("muted"),
// or an operator's override ("info").
func class(o verdict.Outcome) string {
	switch o {
	case verdict.Allowed:
		return "ok"
	case verdict.Blocked, verdict.Failed, verdict.Policy, verdict.RetroactiveBlock:
		return classBad
	case verdict.Index:
		return "muted"
	case verdict.Pending, verdict.UpstreamFailed:
		return "warn"
	}
	return "info"
}
