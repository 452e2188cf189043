package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/storage"
)

// Event is one decision pullgate made about a pull (events.Event).
type Event = events.Event

// event is Event under the name the handlers use.
type event = Event

// record logs one line per decision, with stable keys, and hands the event
// to the metrics, the admin page (this replica's and, through the event
// bus, the others'), the audit log and the alerts. None of them can hold up
// the pull: the bus, the audit log and the webhook are queued.
func (s *Server) record(ev event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	ev = ev.Bounded()
	s.metrics.decision(ev)
	attrs := []any{
		slog.String("image", ev.Image),
		slog.String("digest", ev.Digest.String()),
		slog.String("decision", ev.Decision.String()),
		slog.String("client", ev.Client),
		slog.String("user_agent", ev.UserAgent),
		slog.Duration("latency", ev.Latency),
	}
	if ev.Reason != "" {
		attrs = append(attrs, slog.String("reason", ev.Reason))
	}
	for i, f := range ev.Findings {
		if i == 3 {
			break
		}
		attrs = append(attrs, slog.Group("finding", "rule", f.Rule, "layer", f.Layer.String(), "path", f.Path))
	}
	level := slog.LevelInfo
	if ev.Decision.Refused() {
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "decision", attrs...)

	s.live.add(ev)
	s.share.publish(ev)
	s.audit.enqueue(auditOf(ev))
	if kind, ok := alertOn[ev.Decision]; ok {
		s.hook.send(webhookPayload{Type: kind, Time: ev.Time, Image: ev.Image, Digest: ev.Digest,
			Client: ev.Client, UserAgent: ev.UserAgent, Reason: ev.Reason, Findings: ev.Findings})
	}
}

// alertOn maps the decisions that send a webhook alert to its type.
var alertOn = map[verdict.Outcome]string{
	verdict.Blocked:          "block",
	verdict.RetroactiveBlock: "retroactive_block",
}

func auditOf(ev Event) storage.AuditRecord {
	kind := storage.AuditPull
	if ev.Decision == verdict.RetroactiveBlock {
		kind = storage.AuditRetroactive
	}
	return storage.AuditRecord{
		Time: ev.Time, Kind: kind, Client: ev.Client, UserAgent: ev.UserAgent,
		Image: ev.Image, Digest: ev.Digest, Decision: ev.Decision, Findings: ev.Findings,
		Reason: ev.Reason, Latency: ev.Latency,
	}
}

func eventOf(r storage.AuditRecord) Event {
	return Event{
		Time: r.Time, Client: r.Client, UserAgent: r.UserAgent, Image: r.Image, Digest: r.Digest,
		Decision: r.Decision, Findings: r.Findings, Reason: r.Reason, Latency: r.Latency,
	}.Bounded()
}

// Sharing decisions between replicas. Each replica publishes its own
// decisions on the verdict store's event bus and adds the others' to its
// admin page only: the metrics, the audit log and the alerts stay with the
// replica that decided, so each is counted, written and sent once.
const (
	// shareQueue bounds the decisions waiting to be published; past it
	// they are dropped, not waited for.
	shareQueue = 256
	// sharePublishTimeout bounds one publish.
	sharePublishTimeout = 2 * time.Second
	// maxSharedPayload is more than a bounded decision takes as JSON (see
	// Event.bounded); a longer message is not read.
	maxSharedPayload = 256 << 10
)

// sharedEvent is a decision on the bus, with the replica that made it.
type sharedEvent struct {
	Origin string `json:"origin"`
	Event  Event  `json:"event"`
}

// eventShare publishes this replica's decisions on the bus from one
// goroutine, and hands the other replicas' to the admin page.
type eventShare struct {
	bus     storage.EventBus
	origin  string // random per Server, to know our own messages
	queue   chan []byte
	log     *slog.Logger
	metrics *metrics

	unsubscribe func()
	ctx         context.Context // cancelled when close gives up on the queue
	cancel      context.CancelFunc
	done        chan struct{} // closed by close: publish no more
	exited      chan struct{} // closed when the publisher has returned
	closeOnce   sync.Once
	dropping    atomic.Bool // a drop was logged; the next publish that succeeds clears it
}

// startSharing joins the event bus when the verdict store has one (Redis);
// decisions from other replicas go to l. It returns nil otherwise.
func startSharing(store storage.Store, l *live, log *slog.Logger, m *metrics) *eventShare {
	bus, ok := store.(storage.EventBus)
	if !ok {
		return nil
	}
	var id [16]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	e := &eventShare{
		bus: bus, origin: hex.EncodeToString(id[:]), queue: make(chan []byte, shareQueue),
		log: log, metrics: m, done: make(chan struct{}), exited: make(chan struct{}),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.unsubscribe = bus.Subscribe(func(payload []byte) {
		if len(payload) > maxSharedPayload {
			m.eventBusError("malformed")
			log.Warn("event bus: ignored a message too long to be a decision", "bytes", len(payload))
			return
		}
		var msg sharedEvent
		if err := json.Unmarshal(payload, &msg); err != nil || msg.Origin == "" {
			m.eventBusError("malformed")
			log.Warn("event bus: ignored a message that is not a decision", "err", err)
			return
		}
		if msg.Origin != e.origin {
			// Another replica bounds its decisions too, unless it is older.
			l.addShared(msg.Event.Bounded())
		}
	})
	go e.run()
	return e
}

// publish queues ev for the other replicas without waiting: when the queue
// is full (the bus is slow or away), ev is dropped and counted.
func (e *eventShare) publish(ev Event) {
	if e == nil {
		return
	}
	select {
	case <-e.done:
		return
	default:
	}
	payload, err := json.Marshal(sharedEvent{Origin: e.origin, Event: ev})
	if err != nil {
		e.metrics.eventBusError("failed")
		return
	}
	select {
	case e.queue <- payload:
	default:
		e.metrics.eventBusError("dropped")
		if e.dropping.CompareAndSwap(false, true) {
			e.log.Warn("event bus: queue full, decisions not shared with the other replicas", "queue", shareQueue)
		}
	}
}

// run publishes the queue until close, then what is left of it until
// close gives up. A failure is logged when it starts and when it ends,
// not for every decision.
func (e *eventShare) run() {
	defer close(e.exited)
	failing := false
	send := func(payload []byte) {
		ctx, cancel := context.WithTimeout(e.ctx, sharePublishTimeout)
		err := e.bus.Publish(ctx, payload)
		cancel()
		if err != nil {
			e.metrics.eventBusError("failed")
			if !failing {
				e.log.Warn("event bus: decisions not shared with the other replicas", "err", err)
			}
			failing = true
			return
		}
		if failing {
			e.log.Info("event bus: sharing decisions again")
			failing = false
		}
		e.dropping.Store(false)
	}
	for {
		select {
		case p := <-e.queue:
			send(p)
		case <-e.done:
			for {
				select {
				case p := <-e.queue:
					if e.ctx.Err() != nil {
						return
					}
					send(p)
				default:
					return
				}
			}
		}
	}
}

// close leaves the bus and publishes what is queued, until ctx ends.
func (e *eventShare) close(ctx context.Context) {
	if e == nil {
		return
	}
	e.closeOnce.Do(func() {
		e.unsubscribe()
		close(e.done)
		select {
		case <-e.exited:
		case <-ctx.Done():
			e.cancel()
			<-e.exited
		}
		e.cancel()
	})
}
