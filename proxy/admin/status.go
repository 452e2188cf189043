package admin

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/pullgate/pullgate/proxy/upstream"
)

// Status is the admin page's overview, GET /admin/api/status.
type Status struct {
	Version      string           `json:"version"`
	Started      time.Time        `json:"started"`
	Uptime       string           `json:"uptime"`
	RulesetID    string           `json:"ruleset_id"`
	Rules        int              `json:"rules"`
	Workers      int              `json:"workers"`
	WorkersBusy  int              `json:"workers_busy"`
	QueueDepth   int              `json:"queue_depth"`
	Scans        int              `json:"scans_in_progress"`
	Cache        CacheStatus      `json:"cache"`
	ServedBytes  int64            `json:"served_bytes"`
	Upstreams    []UpstreamStatus `json:"upstreams"`
	VerdictStore StoreStatus      `json:"verdict_store"`
	BlobStore    StoreStatus      `json:"blob_store"`
	Audit        bool             `json:"audit_log"`
	Webhook      bool             `json:"webhook"`
}

// CacheStatus is the blob store's size (measured at most once a minute)
// and the verdict cache's hit ratio since start.
type CacheStatus struct {
	Bytes    int64     `json:"bytes"`
	Blobs    int64     `json:"blobs"`
	Measured time.Time `json:"measured"`
	Hits     int64     `json:"hits"`
	Misses   int64     `json:"misses"`
	HitRatio float64   `json:"hit_ratio"`
}

// UpstreamStatus is one upstream registry: its last upstream error and the
// pull budget it last reported.
type UpstreamStatus struct {
	Name      string              `json:"name"`
	URL       string              `json:"url"`
	State     string              `json:"state"` // ok, or errors
	LastError *time.Time          `json:"last_error,omitempty"`
	RateLimit *upstream.RateLimit `json:"rate_limit,omitempty"`
}

// StoreStatus says whether a store answered.
type StoreStatus struct {
	Kind  string `json:"kind,omitempty"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func (c *Console) status(ctx context.Context) Status {
	sc := c.opts.Gate.Scanner()
	st := Status{
		Version:     c.opts.Version,
		Started:     c.started,
		Uptime:      time.Since(c.started).Round(time.Second).String(),
		RulesetID:   sc.RulesetID(),
		Rules:       sc.RuleCount(),
		Workers:     sc.Workers(),
		WorkersBusy: sc.Busy(),
		QueueDepth:  sc.QueueDepth(),
		Scans:       len(c.opts.Gate.Scans()),
		ServedBytes: c.opts.Metrics.Served(),
		Audit:       c.opts.Audit != nil,
		Webhook:     c.opts.Webhook,
	}
	st.Cache = c.size.get(c)
	st.Cache.Hits, st.Cache.Misses = c.opts.Metrics.VerdictCacheCounts()
	if n := st.Cache.Hits + st.Cache.Misses; n > 0 {
		st.Cache.HitRatio = float64(st.Cache.Hits) / float64(n)
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st.VerdictStore = StoreStatus{Kind: c.opts.Verdicts.Kind(), OK: true}
	if err := c.opts.Verdicts.Ping(pctx); err != nil {
		st.VerdictStore.OK, st.VerdictStore.Error = false, err.Error()
	}
	st.BlobStore = StoreStatus{Kind: c.opts.Blobs.Driver().Name(), OK: true}
	if err := c.opts.Blobs.Ping(pctx); err != nil {
		st.BlobStore.OK, st.BlobStore.Error = false, err.Error()
	}
	for name, up := range c.opts.Upstreams {
		u := UpstreamStatus{Name: name, URL: up.URL(), State: "ok"}
		// Errors in the last five minutes make the upstream look unwell.
		if t := c.opts.Live.lastUpstreamError(name); !t.IsZero() {
			u.LastError = &t
			if time.Since(t) < 5*time.Minute {
				u.State = "errors"
			}
		}
		if rl := up.RateLimit(); !rl.Seen.IsZero() {
			u.RateLimit = &rl
		}
		st.Upstreams = append(st.Upstreams, u)
	}
	sort.Slice(st.Upstreams, func(i, j int) bool { return st.Upstreams[i].Name < st.Upstreams[j].Name })
	return st
}

// blobsRoot is where distribution's storage keeps blob data.
const blobsRoot = "/docker/registry/v2/blobs"

// storeSize measures the blob store by walking it, in the background and
// at most once a minute: the page shows the last measure.
type storeSize struct {
	mu       sync.Mutex
	last     CacheStatus
	running  bool
	interval time.Duration
}

func (z *storeSize) get(c *Console) CacheStatus {
	z.mu.Lock()
	defer z.mu.Unlock()
	if !z.running && time.Since(z.last.Measured) > z.interval {
		z.running = true
		go z.measure(c)
	}
	return z.last
}

func (z *storeSize) measure(c *Console) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var cs CacheStatus
	err := c.opts.Blobs.Driver().Walk(ctx, blobsRoot, func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			cs.Bytes += fi.Size()
			cs.Blobs++
		}
		return nil
	})
	var notFound storagedriver.PathNotFoundError
	z.mu.Lock()
	defer z.mu.Unlock()
	z.running = false
	if err != nil && !errors.As(err, &notFound) {
		c.log.Warn("measure blob store", "err", err)
		z.last.Measured = time.Now()
		return
	}
	cs.Measured = time.Now()
	z.last = cs
}
