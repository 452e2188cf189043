package redis

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/pullgate/pullgate/storage"
)

// AuditLog is the audit log as two Redis streams shared by every
// replica: pull records in pullgate:audit, trimmed to a maximum number of
// entries (so at most that many times MaxAuditRecordBytes), and override
// changes in pullgate:audit:overrides, never trimmed.
type AuditLog struct {
	client *goredis.Client
	addr   string
	max    int64

	sepMu     sync.Mutex
	separated bool // this process saw the copy done
}

var _ storage.AuditLog = (*AuditLog)(nil)

const (
	redisAuditKey          = redisPrefix + "audit"
	redisAuditOverridesKey = redisPrefix + "audit:overrides"
	// redisAuditSeparatedKey marks that the override changes of the pull
	// stream (written before they had a stream of their own) were copied.
	redisAuditSeparatedKey = redisPrefix + "audit:overrides:separated"
)

// AuditLog returns the audit streams on this store's Redis, keeping at most
// maxEntries pull records (storage.DefaultAuditRetention when 0 or less). It shares
// the store's connections: closing the store closes it.
func (s *Store) AuditLog(maxEntries int64) *AuditLog {
	if maxEntries <= 0 {
		maxEntries = storage.DefaultAuditRetention
	}
	return &AuditLog{client: s.client, addr: s.addr, max: maxEntries}
}

// separateOverrides copies, once per stream (the first replica to take
// the mark does it), the override changes a pull stream written by an
// earlier version holds into the overrides stream. A failure is retried
// by the next call.
func (l *AuditLog) separateOverrides(ctx context.Context) error {
	l.sepMu.Lock()
	defer l.sepMu.Unlock()
	if l.separated {
		return nil
	}
	took, err := l.client.SetNX(ctx, redisAuditSeparatedKey, time.Now().UTC().Format(time.RFC3339), 0).Result()
	if err != nil {
		return fmt.Errorf("copy override changes to %s on redis %s: %w", redisAuditOverridesKey, l.addr, err)
	}
	if took {
		if err := l.copyOverrides(ctx); err != nil {
			// Let a later call (here or on another replica) try again.
			l.client.Del(context.WithoutCancel(ctx), redisAuditSeparatedKey)
			return fmt.Errorf("copy override changes to %s on redis %s: %w", redisAuditOverridesKey, l.addr, err)
		}
	}
	l.separated = true
	return nil
}

func (l *AuditLog) copyOverrides(ctx context.Context) error {
	const page = 500
	start := "-"
	for {
		msgs, err := l.client.XRangeN(ctx, redisAuditKey, start, "+", page).Result()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			s, ok := m.Values["r"].(string)
			if !ok || !strings.Contains(s, `"kind":"override"`) {
				continue
			}
			if err := l.client.XAdd(ctx, &goredis.XAddArgs{Stream: redisAuditOverridesKey, Values: []any{"r", s}}).Err(); err != nil {
				return err
			}
		}
		if len(msgs) < page {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// Append adds r, bounded, to the stream its kind goes to; pull records
// are trimmed to the retention bound.
func (l *AuditLog) Append(ctx context.Context, r storage.AuditRecord) error {
	if err := storage.StampAudit(&r); err != nil {
		return err
	}
	line, err := storage.EncodeAudit(r)
	if err != nil {
		return err
	}
	// Before the first pull record trims the stream.
	if err := l.separateOverrides(ctx); err != nil {
		return err
	}
	args := &goredis.XAddArgs{Stream: redisAuditKey, MaxLen: l.max, Values: []any{"r", string(line[:len(line)-1])}}
	if r.Kind == storage.AuditOverride {
		args.Stream, args.MaxLen = redisAuditOverridesKey, 0
	}
	if err := l.client.XAdd(ctx, args).Err(); err != nil {
		return fmt.Errorf("append to audit stream %s on redis %s: %w", args.Stream, l.addr, err)
	}
	return nil
}

// Query pages through the streams from their newest entries and merges
// what they return.
func (l *AuditLog) Query(ctx context.Context, q storage.AuditQuery) ([]storage.AuditRecord, error) {
	var overrides []storage.AuditRecord
	if q.Kind == "" || q.Kind == storage.AuditOverride {
		if err := l.separateOverrides(ctx); err != nil {
			return nil, err
		}
		var err error
		if overrides, err = l.query(ctx, redisAuditOverridesKey, q); err != nil {
			return nil, err
		}
		// Copied ones sit after newer changes made meanwhile.
		sort.SliceStable(overrides, func(i, j int) bool { return overrides[i].Time.After(overrides[j].Time) })
	}
	var pulls []storage.AuditRecord
	if q.Kind != storage.AuditOverride {
		pq := q.PullsOnly()
		var err error
		if pulls, err = l.query(ctx, redisAuditKey, pq); err != nil {
			return nil, err
		}
	}
	return storage.MergeNewestFirst(pulls, overrides, q.Max()), nil
}

func (l *AuditLog) query(ctx context.Context, stream string, q storage.AuditQuery) ([]storage.AuditRecord, error) {
	limit := q.Max()
	out := []storage.AuditRecord{}
	const page = 500
	end := "+"
	for len(out) < limit {
		msgs, err := l.client.XRevRangeN(ctx, stream, end, "-", page).Result()
		if err != nil {
			return nil, fmt.Errorf("query audit stream %s on redis %s: %w", stream, l.addr, err)
		}
		for _, m := range msgs {
			if s, ok := m.Values["r"].(string); ok && len(out) < limit {
				out = q.AppendMatch(out, []byte(s))
			}
		}
		if len(msgs) < page {
			break
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
	return out, nil
}

// Close does nothing: the connections belong to the Store.
func (l *AuditLog) Close() error { return nil }
