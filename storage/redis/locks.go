package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/internal/kit"
)

// Redis leases: SET NX PX with a random token; Extend and Unlock act only
// if the token still matches, so an expired holder cannot release or
// prolong a lease someone else has taken since.
var (
	redisExtendScript = goredis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end`)
	redisUnlockScript = goredis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`)
)

func redisLockKey(key string) string { return redisPrefix + "lock:" + key }

// TryLock takes a lease shared by every replica using this Redis.
func (s *Store) TryLock(ctx context.Context, key string, ttl time.Duration) (storage.Lease, error) {
	if err := kit.ValidateLock(key, ttl); err != nil {
		return nil, err
	}
	token := kit.NewToken()
	ok, err := s.client.SetNX(ctx, redisLockKey(key), token, ttl).Result()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", key, s.wrap(err))
	}
	if !ok {
		return nil, fmt.Errorf("lock %s: %w", key, storage.ErrLocked)
	}
	return &redisLease{s: s, key: key, token: token}, nil
}

type redisLease struct {
	s     *Store
	key   string
	token string
}

func (l *redisLease) Extend(ctx context.Context, ttl time.Duration) error {
	if err := kit.ValidateLock(l.key, ttl); err != nil {
		return err
	}
	n, err := redisExtendScript.Run(ctx, l.s.client, []string{redisLockKey(l.key)}, l.token, ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("extend lock %s: %w", l.key, l.s.wrap(err))
	}
	if n == 0 {
		return fmt.Errorf("extend lock %s: %w", l.key, storage.ErrLockLost)
	}
	return nil
}

func (l *redisLease) Unlock(ctx context.Context) error {
	n, err := redisUnlockScript.Run(ctx, l.s.client, []string{redisLockKey(l.key)}, l.token).Int()
	if err != nil {
		return fmt.Errorf("unlock %s: %w", l.key, l.s.wrap(err))
	}
	if n == 0 {
		return fmt.Errorf("unlock %s: %w", l.key, storage.ErrLockLost)
	}
	l.s.publishRelease(ctx, l.key)
	return nil
}

// redisReleaseChannel carries the keys of released leases to every replica.
const redisReleaseChannel = redisPrefix + "released"

// WatchRelease watches for a release published by any replica on this
// Redis. The store keeps one subscription, started on the first watch.
func (s *Store) WatchRelease(key string) (<-chan struct{}, func()) {
	s.subscribe.Do(func() {
		ps := s.client.Subscribe(context.Background(), redisReleaseChannel)
		// Wait for Redis to confirm, so that a release published from now
		// on is seen (if Redis is away, waiters fall back on polling).
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = ps.Receive(ctx)
		cancel()
		s.pubsub = ps
		go func() {
			for msg := range ps.Channel() {
				s.released.Wake(msg.Payload)
			}
		}()
	})
	return s.released.Add(key)
}

// publishRelease tells every replica that key's lease is free. A lost
// message costs a waiter one poll interval, nothing more.
func (s *Store) publishRelease(ctx context.Context, key string) {
	_ = s.client.Publish(ctx, redisReleaseChannel, key).Err()
}

// closeSubscription ends the release subscription, if any; no new one
// starts after it.
func (s *Store) closeSubscription() {
	s.subscribe.Do(func() {})
	if s.pubsub != nil {
		_ = s.pubsub.Close()
	}
}
