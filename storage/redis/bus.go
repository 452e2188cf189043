package redis

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pullgate/pullgate/storage"
)

var _ storage.EventBus = (*Store)(nil)

// redisEventsChannel carries the payloads of the event bus.
const redisEventsChannel = redisPrefix + "events"

// Publish publishes payload on pullgate:events. Errors name the server,
// never the payload.
func (s *Store) Publish(ctx context.Context, payload []byte) error {
	if err := s.client.Publish(ctx, redisEventsChannel, payload).Err(); err != nil {
		return fmt.Errorf("publish on %s: %w", redisEventsChannel, s.wrap(err))
	}
	return nil
}

// Subscribe keeps a subscription of its own to pullgate:events. If Redis
// goes away, the subscription reconnects by itself; what was published in
// between is lost. Closing the store ends it too.
func (s *Store) Subscribe(fn func(payload []byte)) (stop func()) {
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
