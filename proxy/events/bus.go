package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pullgate/pullgate/storage"
)

// Sharing decisions between replicas. Each replica publishes its own
// decisions on the verdict store's event bus and hands the others' to one
// sink only (the admin page's live view): the metrics, the audit log and
// the alerts stay with the replica that decided, so each is counted,
// written and sent once.
const (
	// shareQueue bounds the decisions waiting to be published; past it
	// they are dropped, not waited for.
	shareQueue = 256
	// sharePublishTimeout bounds one publish.
	sharePublishTimeout = 2 * time.Second
	// maxSharedPayload is more than a bounded decision takes as JSON (see
	// Event.Bounded); a longer message is not read.
	maxSharedPayload = 256 << 10
)

// sharedEvent is a decision on the bus, with the replica that made it.
type sharedEvent struct {
	Origin string `json:"origin"`
	Event  Event  `json:"event"`
}

// Bus is the sink that publishes this replica's decisions on the event bus
// from one goroutine, and hands the other replicas' to a sink of its own.
// A nil *Bus (no event bus) takes events and does nothing.
type Bus struct {
	bus     storage.EventBus
	origin  string // random per Bus, to know our own messages
	queue   chan []byte
	log     *slog.Logger
	metrics *Metrics

	unsubscribe func()
	ctx         context.Context // cancelled when Close gives up on the queue
	cancel      context.CancelFunc
	done        chan struct{} // closed by Close: publish no more
	exited      chan struct{} // closed when the publisher has returned
	closeOnce   sync.Once
	dropping    atomic.Bool // a drop was logged; the next publish that succeeds clears it
}

// JoinBus subscribes to bus, handing other replicas' decisions to remote,
// and starts publishing. It returns nil when bus is nil.
func JoinBus(bus storage.EventBus, remote Sink, log *slog.Logger, m *Metrics) *Bus {
	if bus == nil {
		return nil
	}
	var id [16]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	b := &Bus{
		bus: bus, origin: hex.EncodeToString(id[:]), queue: make(chan []byte, shareQueue),
		log: log, metrics: m, done: make(chan struct{}), exited: make(chan struct{}),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.unsubscribe = bus.Subscribe(func(payload []byte) { b.receive(payload, remote) })
	go b.run()
	return b
}

func (b *Bus) receive(payload []byte, remote Sink) {
	if len(payload) > maxSharedPayload {
		b.metrics.EventBusError("malformed")
		b.log.Warn("event bus: ignored a message too long to be a decision", "bytes", len(payload))
		return
	}
	var msg sharedEvent
	if err := json.Unmarshal(payload, &msg); err != nil || msg.Origin == "" {
		b.metrics.EventBusError("malformed")
		b.log.Warn("event bus: ignored a message that is not a decision", "err", err)
		return
	}
	if msg.Origin != b.origin {
		// Another replica bounds its decisions too, unless it is older.
		remote.Emit(msg.Event.Bounded())
	}
}

// Emit queues ev for the other replicas without waiting: when the queue
// is full (the bus is slow or away), ev is dropped and counted.
func (b *Bus) Emit(ev Event) {
	if b == nil {
		return
	}
	select {
	case <-b.done:
		return
	default:
	}
	payload, err := json.Marshal(sharedEvent{Origin: b.origin, Event: ev})
	if err != nil {
		b.metrics.EventBusError("failed")
		return
	}
	select {
	case b.queue <- payload:
	default:
		b.metrics.EventBusError("dropped")
		if b.dropping.CompareAndSwap(false, true) {
			b.log.Warn("event bus: queue full, decisions not shared with the other replicas", "queue", shareQueue)
		}
	}
}

// run publishes the queue until Close, then what is left of it until
// Close gives up. A failure is logged when it starts and when it ends,
// not for every decision.
func (b *Bus) run() {
	defer close(b.exited)
	failing := false
	send := func(payload []byte) {
		ctx, cancel := context.WithTimeout(b.ctx, sharePublishTimeout)
		err := b.bus.Publish(ctx, payload)
		cancel()
		if err != nil {
			b.metrics.EventBusError("failed")
			if !failing {
				b.log.Warn("event bus: decisions not shared with the other replicas", "err", err)
			}
			failing = true
			return
		}
		if failing {
			b.log.Info("event bus: sharing decisions again")
			failing = false
		}
		b.dropping.Store(false)
	}
	for {
		select {
		case p := <-b.queue:
			send(p)
		case <-b.done:
			for {
				select {
				case p := <-b.queue:
					if b.ctx.Err() != nil {
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

// Close leaves the bus and publishes what is queued, until ctx ends.
func (b *Bus) Close(ctx context.Context) {
	if b == nil {
		return
	}
	b.closeOnce.Do(func() {
		b.unsubscribe()
		close(b.done)
		select {
		case <-b.exited:
		case <-ctx.Done():
			b.cancel()
			<-b.exited
		}
		b.cancel()
	})
}
