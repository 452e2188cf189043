package gate

import (
	"context"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
)

// Image flights: in stream mode an image manifest is served before its
// blobs are judged, and the whole-image judgment (every blob ingested, the
// image's findings added up) runs in the background, once per name and
// manifest digest at a time. Its layers' ingests spool their bytes, so
// that clients can be streamed each layer while it is scanned; its config
// is answered only once the image's decision is in and clean. A refused
// image's decision is remembered for a while after its flight ends, so
// that its config stays refused to the clients that got its manifest.

// imageFlight is the judgment of one image manifest under one name.
type imageFlight struct {
	name   string // "docker.io/library/alpine"
	digest digest.Digest
	refs   []Ref // config first, each with its size from the manifest
	// judgeAgain decides on the image again, now: a remembered refusal
	// gives way to an operator's allow or new rules made since.
	judgeAgain func(ctx context.Context, hold time.Duration) Decision
	done       chan struct{}
	// decision is the image's, set before done is closed.
	decision Decision
	ended    time.Time
}

type imageKey struct {
	name   string
	digest digest.Digest
}

type imageFlights struct {
	mu sync.Mutex
	m  map[imageKey]*imageFlight
}

// Refused images are remembered this long after their flight ended, and
// at most this many flights are kept.
const (
	imageMemory     = time.Hour
	maxImageFlights = 4096
)

// start returns the running flight of key, or starts judge as a new one.
func (f *imageFlights) start(key imageKey, refs []Ref, judge func() Decision, judgeAgain func(context.Context, time.Duration) Decision) *imageFlight {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl, ok := f.m[key]; ok && fl.running() {
		return fl
	}
	if f.m == nil {
		f.m = make(map[imageKey]*imageFlight)
	}
	f.prune()
	fl := &imageFlight{name: key.name, digest: key.digest, refs: refs, judgeAgain: judgeAgain, done: make(chan struct{})}
	f.m[key] = fl
	go func() {
		d := Decision{Kind: Upstream, Message: "pullgate: the image's judgment failed"}
		defer func() {
			// A judgment that panicked refuses the image (d's default);
			// the process goes on.
			_ = recover()
			f.mu.Lock()
			fl.decision, fl.ended = d, time.Now()
			if !d.Refused() {
				delete(f.m, key) // nothing to remember: its blobs have their verdicts
			}
			f.mu.Unlock()
			close(fl.done)
		}()
		d = judge()
	}()
	return fl
}

func (fl *imageFlight) running() bool {
	select {
	case <-fl.done:
		return false
	default:
		return true
	}
}

// prune drops remembered decisions past imageMemory, and the oldest ones
// past maxImageFlights. Called with mu held.
func (f *imageFlights) prune() {
	var oldest *imageKey
	for k, fl := range f.m {
		if fl.running() {
			continue
		}
		if time.Since(fl.ended) > imageMemory {
			delete(f.m, k)
			continue
		}
		if oldest == nil || fl.ended.Before(f.m[*oldest].ended) {
			oldest = &k
		}
	}
	if len(f.m) >= maxImageFlights && oldest != nil {
		delete(f.m, *oldest)
	}
}

// find returns a flight under name (running, or ended refused) that names
// dgst as one of its blobs, with that blob's Ref. A running flight is
// preferred.
func (f *imageFlights) find(name string, dgst digest.Digest) (*imageFlight, Ref, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var found *imageFlight
	var ref Ref
	for _, fl := range f.m {
		if fl.name != name {
			continue
		}
		for _, r := range fl.refs {
			if r.Digest == dgst && (found == nil || (fl.running() && !found.running())) {
				found, ref = fl, r
			}
		}
	}
	return found, ref, found != nil
}

// configOf returns the flights, under any name, running or ended refused,
// whose image has dgst as its config. Two images with one config have the
// same layers' contents (the config lists them), so one's refusal is the
// other's.
func (f *imageFlights) configOf(dgst digest.Digest) []*imageFlight {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*imageFlight
	for _, fl := range f.m {
		if len(fl.refs) > 0 && fl.refs[0].IsConfig() && fl.refs[0].Digest == dgst {
			out = append(out, fl)
		}
	}
	return out
}

// refused returns the remembered refusal of an image under name whose
// flight has ended, if it was a decision against the content (a transient
// failure is judged again).
func (f *imageFlights) refused(key imageKey) (Decision, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.m[key]
	if !ok || fl.running() || fl.decision.Kind != Denied {
		return Decision{}, false
	}
	return fl.decision, true
}

// streamImage starts the background judgment of an image manifest served
// early (stream mode), once per name and digest at a time: at Interactive
// priority, detached from the request, bounded by IngestTimeout, its
// layers spooled. Its decision is recorded as ev when it comes.
func (g *Gate) streamImage(up *upstream.Registry, t Target, dgst digest.Digest, body []byte, refs []Ref, ev events.Event) {
	key := imageKey{name: t.Name(), digest: dgst}
	for i := range refs {
		refs[i].Prio, refs[i].Spool = scanner.Interactive, true
	}
	g.images.start(key, refs, func() Decision {
		ctx, cancel := context.WithTimeout(context.Background(), g.opts.IngestTimeout)
		defer cancel()
		start := time.Now()
		d := g.judgeImage(ctx, up, t.Repo, dgst, body, g.opts.IngestTimeout, scanner.Interactive, true)
		ev.Digest, ev.Decision, ev.Findings, ev.Reason = dgst, d.Outcome, d.Findings, d.Message
		ev.Latency = time.Since(start)
		g.opts.Events.Emit(ev)
		if d.Refused() {
			g.log.Warn("image refused after its manifest was streamed", "image", t.ImageAt(dgst), "reason", d.Message)
		}
		return d
	}, func(ctx context.Context, hold time.Duration) Decision {
		return g.judgeImage(ctx, up, t.Repo, dgst, body, hold, scanner.Interactive, false)
	})
}

// AwaitConfig holds a request for the config blob t.Digest of an image
// whose manifest was served early (stream mode) until that image's
// decision is in, within hold: nil when it is clean (the blob is then
// judged and served as any other), the image's refusal when it is not,
// "still scanning" when the hold runs out. It holds the config under
// every name, not only the image's: asked for under another repository
// that carries it, or before the manifest, the config would otherwise
// complete an image refused only as a whole. A blob that is no running
// (or refused) image's config gets nil at once.
func (g *Gate) AwaitConfig(ctx context.Context, t Target, hold time.Duration) error {
	holdCtx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	for _, fl := range g.images.configOf(t.Digest) {
		select {
		case <-fl.done:
		case <-holdCtx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			msg := "pullgate: config " + t.Digest.String() + " of " + fl.name + "@" + fl.digest.String() + " waits for the image's scan; retry in " + g.opts.RetryAfter.String()
			return stillScanning(msg, g.opts.RetryAfter)
		}
		if !fl.decision.Refused() {
			continue
		}
		// Refused when its flight ended: decided again now (from the
		// stored verdicts, as a held manifest is), so that an operator's
		// allow, or rules changed since, are heard.
		if d := fl.judgeAgain(ctx, max(time.Until(deadline(holdCtx)), 0)); d.Refused() {
			return d
		}
	}
	return nil
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
