package storage

import "context"

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
