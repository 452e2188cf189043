package redis

import (
	"context"

	"github.com/pullgate/pullgate/storage"
)

// Name is the name the shared store registers under.
const Name = "redis"

func init() { storage.Register(Name, open) }

// open is the shared backend: verdicts, overrides, tags, leases, the
// event bus and the audit streams, all on one Redis.
func open(ctx context.Context, c storage.Config) (storage.Backend, error) {
	s, err := Open(ctx, c.RedisURL)
	if err != nil {
		return storage.Backend{}, err
	}
	return storage.Backend{Store: s, Locks: s, Bus: s, Audit: s.AuditLog(c.AuditRetention)}, nil
}
