package events

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/storage"
)

// AuditRecord is the audit log's record of ev: the one place where an
// Event becomes a storage.AuditRecord. A retroactive block is a record of
// its own kind; every other decision is a pull.
func AuditRecord(ev Event) storage.AuditRecord {
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

// FromAudit is the Event an audit record of a pull or a retroactive block
// was made from, bounded (a record written by an older release may not
// be).
func FromAudit(r storage.AuditRecord) Event {
	return Event{
		Time: r.Time, Client: r.Client, UserAgent: r.UserAgent, Image: r.Image, Digest: r.Digest,
		Decision: r.Decision, Findings: r.Findings, Reason: r.Reason, Latency: r.Latency,
	}.Bounded()
}

// auditQueue is how many records wait for the audit log before new ones
// are dropped (and counted): a slow disk or Redis must not hold pulls.
const auditQueue = 4096

// Audit is the sink that appends decisions to the audit log off the
// request path. With no audit log it does nothing.
type Audit struct {
	log     storage.AuditLog
	logger  *slog.Logger
	metrics *Metrics

	q        chan storage.AuditRecord
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// NewAudit starts the writer of l; l may be nil (no audit log).
func NewAudit(l storage.AuditLog, logger *slog.Logger, m *Metrics) *Audit {
	a := &Audit{log: l, logger: logger, metrics: m, q: make(chan storage.AuditRecord, auditQueue),
		stop: make(chan struct{}), done: make(chan struct{})}
	if l == nil {
		close(a.done)
		return a
	}
	go a.run()
	return a
}

func (a *Audit) run() {
	defer close(a.done)
	for {
		select {
		case r := <-a.q:
			a.write(r)
		case <-a.stop:
			for {
				select {
				case r := <-a.q:
					a.write(r)
				default:
					return
				}
			}
		}
	}
}

func (a *Audit) write(r storage.AuditRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.log.Append(ctx, r); err != nil {
		a.metrics.AuditFailed()
		a.logger.Error("audit log append failed", "image", r.Image, "digest", r.Digest.String(), "err", err)
	}
}

// Emit queues ev's record; when the queue is full the record is dropped,
// counted and logged rather than holding the pull.
func (a *Audit) Emit(ev Event) {
	if a.log == nil {
		return
	}
	r := AuditRecord(ev)
	select {
	case a.q <- r:
	default:
		a.metrics.AuditDropped()
		a.logger.Error("audit log queue full; record dropped", "image", r.Image, "digest", r.Digest.String(), "decision", r.Decision.String())
	}
}

// Queued is how many records wait to be written.
func (a *Audit) Queued() int { return len(a.q) }

// Query asks the audit log; with none, the answer is empty.
func (a *Audit) Query(ctx context.Context, q storage.AuditQuery) ([]storage.AuditRecord, error) {
	if a.log == nil {
		return []storage.AuditRecord{}, nil
	}
	return a.log.Query(ctx, q)
}

// Close writes what is queued, waiting at most until ctx ends.
func (a *Audit) Close(ctx context.Context) {
	a.stopOnce.Do(func() { close(a.stop) })
	select {
	case <-a.done:
	case <-ctx.Done():
	}
}
