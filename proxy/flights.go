package proxy

import (
	"context"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/storage"
)

// flight is one ingest of one digest, shared by every request that needs it.
type flight struct {
	done    chan struct{}
	verdict storage.Verdict
	err     error
}

// flights runs at most one ingest per digest in this process. The ingest
// runs detached from the requests that wait on it: a client that gives up
// (or a hold that expires) does not cancel the scan, so its verdict is
// cached for the retry.
type flights struct {
	mu sync.Mutex
	m  map[digest.Digest]*flight
}

// start returns the running flight for d, or starts fn as a new one.
func (f *flights) start(d digest.Digest, fn func() (storage.Verdict, error)) *flight {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl, ok := f.m[d]; ok {
		return fl
	}
	if f.m == nil {
		f.m = make(map[digest.Digest]*flight)
	}
	fl := &flight{done: make(chan struct{})}
	f.m[d] = fl
	go func() {
		defer func() {
			if p := recover(); p != nil {
				fl.err = fmt.Errorf("ingest of %s failed: %v", d, p)
			}
			f.mu.Lock()
			delete(f.m, d)
			f.mu.Unlock()
			close(fl.done)
		}()
		fl.verdict, fl.err = fn()
	}()
	return fl
}

// running reports how many ingests are in progress.
func (f *flights) running() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

// wait returns the flight's outcome, or ctx's error if ctx ends first.
func (fl *flight) wait(ctx context.Context) (storage.Verdict, error) {
	select {
	case <-fl.done:
		return fl.verdict, fl.err
	case <-ctx.Done():
		return storage.Verdict{}, ctx.Err()
	}
}
