package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// Options configure a Gate. Zero durations and sizes take the defaults
// documented on each field.
type Options struct {
	// Upstreams by registry name ("docker.io"), for warm.
	Upstreams map[string]*upstream.Registry
	Blobs     *storage.Blobs
	Verdicts  storage.Store
	Scanner   *scanner.Scanner
	// Locks is the lease an ingest takes so that replicas sharing the
	// stores fetch and scan each blob once; Releases wakes a replica
	// waiting on another's lease. nil: one process (its own flights
	// de-duplicate; replicas would scan twice). A nil Releases makes
	// waiters poll.
	Locks    storage.Locker
	Releases storage.LeaseWatcher

	// Policy is the publisher policy per registry, checked before anything
	// is fetched. Decision turns findings into block, warn or pass (default
	// scanner.DefaultPolicy). KnownBad lists digests that always block.
	Policy   map[string]RepoPolicy
	Decision scanner.Policy
	KnownBad DigestSet

	RetryAfter time.Duration // told to a client still waiting; default 10s
	// TagTTL is how long a tag→digest mapping is trusted before it is
	// revalidated upstream with a HEAD. Default 60s.
	TagTTL        time.Duration
	IngestTimeout time.Duration // one blob's fetch and scan; default 30m
	// IngestLease is how long a replica's claim on an ingest lasts without
	// renewal (it is renewed every third of it); a crashed replica's work
	// is taken over after at most this. Default 10s, well inside a hold.
	IngestLease time.Duration

	MaxBlobBytes      int64 // a blob whose size no manifest declared; default 16 GiB
	MaxConfigBytes    int64 // an image config; default 8 MiB
	MaxManifestLayers int   // layers of one image; default 500
	MaxStoreBytes     int64 // Evict keeps the store within it; 0: unbounded
	// PrefetchPlatforms ("os/arch[/variant]") are pre-scanned in the
	// background when their index is pulled. Default linux/amd64 and
	// linux/arm64; an empty, non-nil slice turns prefetch off.
	PrefetchPlatforms []string

	// Metrics observes the gate's work; Events receives the decisions the
	// gate makes on its own (retroactive blocks); Audit answers who pulled
	// what, for those. Each may be nil.
	Metrics Metrics
	Events  events.Sink
	Audit   func(context.Context, storage.AuditQuery) ([]storage.AuditRecord, error)
	Logger  *slog.Logger
	Version string // in warm's user agent

	// Warm lists images Run keeps fetched and scanned (warm.go).
	Warm WarmOptions
	// ReapUploadsEvery is how often Run removes uploads a killed process
	// left behind (those older than IngestTimeout). Default 5m.
	ReapUploadsEvery time.Duration
	// Rules is where Run reloads the scanner's rules from (rules.go).
	Rules RulesSource

	// SpoolDir is the folder where ingests spool the bytes of layers that
	// clients are streamed while they are scanned (stream mode, see
	// StreamBlob); New empties it. Empty: nothing is streamed, every blob
	// is held until its verdict.
	SpoolDir string
}

// Metrics is what the gate reports to the service's metrics.
type Metrics interface {
	VerdictCache(hit bool)
	TagCache(hit bool)
	Scanned(storage.Verdict)
	UpstreamBlob(registry string)
	Evicted(blobs int, bytes int64)
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.RetryAfter, 10*time.Second)
	def(&o.TagTTL, 60*time.Second)
	def(&o.ReapUploadsEvery, 5*time.Minute)
	def(&o.Rules.Poll, 5*time.Second)
	def(&o.Warm.Interval, time.Hour)
	def(&o.Warm.Timeout, o.IngestTimeout)
	def(&o.IngestTimeout, 30*time.Minute)
	def(&o.IngestLease, 10*time.Second)
	if o.MaxBlobBytes <= 0 {
		o.MaxBlobBytes = 16 << 30
	}
	if o.MaxConfigBytes <= 0 {
		o.MaxConfigBytes = 8 << 20
	}
	if o.MaxManifestLayers <= 0 {
		o.MaxManifestLayers = 500
	}
	if o.Decision.Actions == nil && o.Decision.MediumToBlock == 0 && o.Decision.PackerCorroborators == nil {
		o.Decision = scanner.DefaultPolicy()
	}
	if o.PrefetchPlatforms == nil {
		o.PrefetchPlatforms = []string{"linux/amd64", "linux/arm64"}
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	if o.Events == nil {
		o.Events = events.SinkFunc(func(events.Event) {})
	}
	if o.Audit == nil {
		o.Audit = func(context.Context, storage.AuditQuery) ([]storage.AuditRecord, error) { return nil, nil }
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Gate ingests blobs (single flight, the lease across replicas, the tee
// into the store writer and the scanner, commit only on a verified digest
// and a clean verdict) and judges images and blobs with Decide.
type Gate struct {
	opts    Options
	log     *slog.Logger
	metrics Metrics
	flights flights
	// allowFlights fetch blobs an operator allowed despite their verdict.
	allowFlights flights
	// images judge the images whose manifests were served early (stream
	// mode), and remember those refused (imageflights.go).
	images     imageFlights
	usage      usage
	tags       tagCache
	prefetches prefetcher
	maxStore   atomic.Int64 // Options.MaxStoreBytes, changeable
	policy     atomic.Pointer[map[string]RepoPolicy]
	reloads    chan string   // ReloadRules to Run
	rescans    chan struct{} // a rescan wanted (one waiting at most)
	verifies   chan struct{} // bounds the stored blobs hashed in the background (verifyStored)
	// rulesPrint is the fingerprint of the rule files as the running
	// rules were compiled from them, as near as New can tell.
	rulesPrint string
}

// New checks the options and builds a Gate.
func New(opts Options) (*Gate, error) {
	if opts.Blobs == nil || opts.Verdicts == nil || opts.Scanner == nil {
		return nil, errors.New("gate: blob store, verdict store and scanner are required")
	}
	opts.setDefaults()
	if opts.SpoolDir != "" {
		// What a restart mid-ingest left was never judged: it goes.
		if err := resetSpoolDir(opts.SpoolDir); err != nil {
			return nil, fmt.Errorf("gate: %w", err)
		}
	}
	g := &Gate{opts: opts, log: opts.Logger, metrics: opts.Metrics, reloads: make(chan string, 1),
		rescans: make(chan struct{}, 1)}
	// The stored blobs are rescanned at start: an upgrade or a rules change
	// while stopped leaves them without a verdict under these rules.
	g.rescans <- struct{}{}
	g.rulesPrint = scanner.Fingerprint(opts.Scanner.RulePaths())
	g.maxStore.Store(opts.MaxStoreBytes)
	g.SetPolicy(opts.Policy)
	g.tags.ttl = opts.TagTTL
	g.prefetches.sem = make(chan struct{}, 2)
	g.verifies = make(chan struct{}, 1)
	return g, nil
}

// Scanner is the one scanner, whose rules Run reloads in place.
func (g *Gate) Scanner() *scanner.Scanner { return g.opts.Scanner }

// Scans describes the blobs being fetched and scanned right now.
func (g *Gate) Scans() []FlightInfo { return g.flights.list() }

// Drain waits until no ingest is running, or ctx ends; it returns how many
// were still running when ctx ended.
func (g *Gate) Drain(ctx context.Context) int {
	return g.flights.drain(ctx) + g.allowFlights.drain(ctx)
}

type noMetrics struct{}

func (noMetrics) VerdictCache(bool)          {}
func (noMetrics) TagCache(bool)              {}
func (noMetrics) Scanned(storage.Verdict)    {}
func (noMetrics) UpstreamBlob(string)        {}
func (noMetrics) Evicted(blobs int, n int64) {}
