package storage

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// EventBus carries small messages to every process sharing a store, so that
// each replica's admin page shows the decisions of all of them. Delivery is
// best effort: a replica that is disconnected when a message is published
// never gets it. The embedded store has no bus: it has one process.
type EventBus interface {
	// Publish sends payload to every subscriber, this process's included.
	Publish(ctx context.Context, payload []byte) error
	// Subscribe calls fn with each payload published from now on, one at
	// a time, until stop is called; fn is not called after stop returns.
	Subscribe(fn func(payload []byte)) (stop func())
}

var _ EventBus = (*RedisStore)(nil)

// redisEventsChannel carries the payloads of the event bus.
const redisEventsChannel = redisPrefix + "events"

// Publish publishes payload on pullgate:events. Errors name the server,
// never the payload.
func (s *RedisStore) Publish(ctx context.Context, payload []byte) error {
	if err := s.client.Publish(ctx, redisEventsChannel, payload).Err(); err != nil {
		return fmt.Errorf("publish on %s: %w", redisEventsChannel, s.wrap(err))
	}
	return nil
}

// Subscribe keeps a subscription of its own to pullgate:events. If Redis
// goes away, the subscription reconnects by itself; what was published in
// between is lost. Closing the store ends it too.
func (s *RedisStore) Subscribe(fn func(payload []byte)) (stop func()) {
	ps := s.client.Subscribe(context.Background(), redisEventsChannel)
	// Wait for Redis to confirm, so that what is published once Subscribe
	// returns is seen (if Redis is away, the subscription is made when it
	// comes back).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, _ = ps.Receive(ctx)
	cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for msg := range ps.Channel() {
			fn([]byte(msg.Payload))
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = ps.Close()
			<-done
		})
	}
}
