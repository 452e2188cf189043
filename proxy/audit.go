package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pullgate/pullgate/storage"
)

// auditQueue is how many pull records wait for the audit log before new
// ones are dropped (and counted): a slow disk or Redis must not hold pulls.
const auditQueue = 4096

// auditWriter appends pull decisions to the audit log off the request path.
// Its methods do nothing when no audit log is configured.
type auditWriter struct {
	log     storage.AuditLog
	logger  *slog.Logger
	metrics *metrics

	q        chan storage.AuditRecord
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

func newAuditWriter(l storage.AuditLog, logger *slog.Logger, m *metrics) *auditWriter {
	a := &auditWriter{log: l, logger: logger, metrics: m, q: make(chan storage.AuditRecord, auditQueue),
		stop: make(chan struct{}), done: make(chan struct{})}
	if l == nil {
		close(a.done)
		return a
	}
	go a.run()
	return a
}

func (a *auditWriter) run() {
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

func (a *auditWriter) write(r storage.AuditRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.log.Append(ctx, r); err != nil {
		a.metrics.auditFailed()
		a.logger.Error("audit log append failed", "image", r.Image, "digest", r.Digest.String(), "err", err)
	}
}

// enqueue queues r; when the queue is full the record is dropped, counted
// and logged rather than holding the pull.
func (a *auditWriter) enqueue(r storage.AuditRecord) {
	if a.log == nil {
		return
	}
	select {
	case a.q <- r:
	default:
		a.metrics.auditDropped()
		a.logger.Error("audit log queue full; record dropped", "image", r.Image, "digest", r.Digest.String(), "decision", r.Decision)
	}
}

// appendNow writes r before returning: an operator's change is refused
// when it cannot be audited.
func (a *auditWriter) appendNow(ctx context.Context, r storage.AuditRecord) error {
	if a.log == nil {
		return nil
	}
	return a.log.Append(ctx, r)
}

func (a *auditWriter) query(ctx context.Context, q storage.AuditQuery) ([]storage.AuditRecord, error) {
	if a.log == nil {
		return []storage.AuditRecord{}, nil
	}
	return a.log.Query(ctx, q)
}

// close writes what is queued, waiting at most until ctx ends.
func (a *auditWriter) close(ctx context.Context) {
	a.stopOnce.Do(func() { close(a.stop) })
	select {
	case <-a.done:
	case <-ctx.Done():
	}
}
