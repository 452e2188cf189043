package proxy

import (
	"context"

	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/storage"
)

// auditLog is the audit sink as the proxy reads it back (the rescan asks
// it who pulled a blob found bad).
type auditLog struct{ *events.Audit }

func (a auditLog) query(ctx context.Context, q storage.AuditQuery) ([]storage.AuditRecord, error) {
	return a.Query(ctx, q)
}
