package gate

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// flight is one ingest of one digest, shared by every request that needs it.
type flight struct {
	done    chan struct{}
	verdict storage.Verdict
	err     error

	info  FlightInfo   // fixed at start
	bytes atomic.Int64 // compressed bytes read so far
	// prio is the priority of its scan: background for a prefetch or a
	// rescan until a request comes to wait on it.
	prio *scanner.PriorityVar

	// spool is the copy of the upstream bytes readers are streamed from
	// (stream mode); published by the ingest before it fetches, when its
	// Ref asks for one. spooled is closed once it is published or known
	// not to come.
	spool     *spool
	spooled   chan struct{}
	spoolOnce sync.Once
}

// publishSpool makes sp (nil: none) the flight's spool for readers.
func (fl *flight) publishSpool(sp *spool) {
	fl.spoolOnce.Do(func() {
		fl.spool = sp
		close(fl.spooled)
	})
}

// attachSpool waits until the flight's spool is published and takes a
// reader's reference on it. nil when the flight has none (it ended, or
// it never fetched from upstream: the verdict was there, the blob was in
// the store, another replica held the lease) or ctx ended first.
func (fl *flight) attachSpool(ctx context.Context) *spool {
	select {
	case <-fl.spooled:
	case <-fl.done:
		return nil
	case <-ctx.Done():
		return nil
	}
	if fl.spool == nil || !fl.spool.acquire() {
		return nil
	}
	return fl.spool
}

// FlightInfo describes an ingest in progress, for the operator's view.
type FlightInfo struct {
	Digest   digest.Digest `json:"digest"`
	Registry string        `json:"registry"`
	Repo     string        `json:"repo"`
	Kind     string        `json:"kind"` // layer, config, artifact, override; "rescan" added for a rescan
	// Context is how the blob is scanned; one flight never serves two.
	Context storage.Context `json:"context,omitempty"`
	Size    int64           `json:"size"` // -1 when unknown
	Started time.Time       `json:"started"`
	Bytes   int64           `json:"bytes"` // read so far
	// Background is true for a prefetch or a rescan nobody waits on yet.
	Background bool `json:"background"`
}

// flights runs at most one ingest per digest in this process. The ingest
// runs detached from the requests that wait on it: a client that gives up
// (or a hold that expires) does not cancel the scan, so its verdict is
// cached for the retry.
type flights struct {
	mu sync.Mutex
	m  map[flightKey]*flight
}

// flightKey: the same bytes scanned in two contexts are two ingests, each
// with its own verdict.
type flightKey struct {
	digest  digest.Digest
	context storage.Context
}

// start returns the running flight for info.Digest in info.Context, or starts fn as a new
// one; fn reports its progress on the flight it is given. A caller at
// Interactive priority joining a background flight raises its scan to
// Interactive: a client never waits behind prefetches and rescans.
func (f *flights) start(info FlightInfo, prio scanner.Priority, fn func(*flight) (storage.Verdict, error)) *flight {
	d := info.Digest
	key := flightKey{d, info.Context}
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl, ok := f.m[key]; ok {
		if prio == scanner.Interactive {
			fl.prio.Set(scanner.Interactive)
		}
		return fl
	}
	if f.m == nil {
		f.m = make(map[flightKey]*flight)
	}
	info.Started = time.Now().UTC()
	fl := &flight{done: make(chan struct{}), info: info, prio: scanner.NewPriorityVar(prio), spooled: make(chan struct{})}
	f.m[key] = fl
	go func() {
		defer func() {
			if p := recover(); p != nil {
				fl.err = fmt.Errorf("ingest of %s failed: %v", d, p)
			}
			f.mu.Lock()
			delete(f.m, key)
			f.mu.Unlock()
			fl.publishSpool(nil)
			close(fl.done)
		}()
		fl.verdict, fl.err = fn(fl)
	}()
	return fl
}

// drain waits until no ingest is running, or ctx ends; it returns how many
// were still running when ctx ended.
func (f *flights) drain(ctx context.Context) int {
	for {
		f.mu.Lock()
		running := make([]*flight, 0, len(f.m))
		for _, fl := range f.m {
			running = append(running, fl)
		}
		f.mu.Unlock()
		if len(running) == 0 {
			return 0
		}
		for _, fl := range running {
			select {
			case <-fl.done:
			case <-ctx.Done():
				f.mu.Lock()
				n := len(f.m)
				f.mu.Unlock()
				return n
			}
		}
	}
}

// list describes the ingests in progress, oldest first.
func (f *flights) list() []FlightInfo {
	f.mu.Lock()
	out := make([]FlightInfo, 0, len(f.m))
	for _, fl := range f.m {
		info := fl.info
		info.Bytes = fl.bytes.Load()
		info.Background = fl.prio.Priority() == scanner.Background
		out = append(out, info)
	}
	f.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

// progress counts the bytes an ingest has read.
type progress struct {
	r  io.Reader
	fl *flight
}

func (p progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.fl.bytes.Add(int64(n))
	return n, err
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
