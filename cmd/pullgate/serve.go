package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("pullgate serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serveFlags
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cfg, err := f.resolve(os.Getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)
	storage.RouteDistributionLogs(log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	sopts, err := scannerOptions(cfg)
	if err != nil {
		return err
	}
	sc, err := scanner.New(sopts)
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	defer sc.Close()

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	stores, err := openStores(ctx, cfg)
	if err != nil {
		return err
	}
	defer stores.Close()
	for _, w := range stores.Without {
		log.Info("storage runs without", "capability", w)
	}
	blobs, verdicts, audit := stores.Blobs, stores.Verdicts, stores.Audit

	ups, err := newUpstreams(cfg)
	if err != nil {
		return err
	}
	srv, err := proxy.New(proxy.Options{
		Upstreams:         ups,
		Blobs:             blobs,
		Verdicts:          verdicts,
		Scanner:           sc,
		Hold:              time.Duration(cfg.Gate.Hold),
		HoldDocker:        time.Duration(cfg.Gate.HoldDocker),
		RetryAfter:        time.Duration(cfg.Gate.RetryAfter),
		TagTTL:            time.Duration(cfg.Gate.TagTTL),
		IngestTimeout:     time.Duration(cfg.Gate.IngestTimeout),
		IngestLease:       time.Duration(cfg.Gate.IngestLease),
		PrefetchPlatforms: append([]string{}, cfg.Platforms...),
		MaxStoreBytes:     cfg.MaxStoreBytes,
		Policy:            cfg.Policy,
		Decision:          cfg.Decision.policy(),
		KnownBad:          knownBadDigests{sopts.KnownBadFiles},
		MaxBlobBytes:      cfg.Gate.MaxBlobBytes,
		MaxConfigBytes:    cfg.Gate.MaxConfigBytes,
		MaxManifestLayers: cfg.Gate.MaxLayers,
		Serve:             serveOptions(cfg.Serve),
		Admin:             adminOptions(cfg.Admin, cfg.DataDir, audit, stores.Bus),
		Logger:            log,
		Version:           version,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// No WriteTimeout or ReadTimeout: a manifest may be held for minutes
	// and a large blob takes as long as it takes. Blob downloads carry a
	// write deadline of their own, renewed as bytes go out.
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	hs.RegisterOnShutdown(srv.StopStreams)
	names := make([]string, 0, len(ups))
	for n := range ups {
		names = append(names, n)
	}
	sort.Strings(names)
	log.Info("pullgate serving", "listen", ln.Addr().String(), "tls", cfg.TLS.Cert != "", "data_dir", cfg.DataDir,
		"verdicts", verdicts.Kind(), "upstreams", strings.Join(names, ","),
		"ruleset", sc.RulesetID(), "rules", sc.RuleCount(), "workers", sc.Workers(), "version", version)

	errc := make(chan error, 3)
	if cfg.TLS.Cert != "" {
		certs, err := newCertReloader(cfg.TLS.Cert, cfg.TLS.Key, log)
		if err != nil {
			return err
		}
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get}
		go func() { errc <- hs.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- hs.Serve(ln) }()
	}
	adm, err := startAdminListener(cfg.Admin, srv, log, errc)
	if err != nil {
		return err
	}
	gw, err := startGateway(cfg.Gateway, srv.GatewayHandler(), log, errc)
	if err != nil {
		return err
	}
	go keepWarm(ctx, cfg, ln.Addr(), log)
	rl := &reloader{cfg: cfg, srv: srv, sc: sc, log: log}
	go rl.run(ctx)
	// Blobs stored under other rules (an upgrade, a rules change while
	// stopped) get verdicts under these rules before anyone asks.
	go rl.rescan(ctx)
	if cfg.MaxStoreBytes > 0 {
		go keepStoreWithinSize(ctx, srv, log)
	}
	// Uploads a killed process left behind are never visible; reclaim
	// their space while running. Any upload older than one ingest can be
	// no replica's. It stops with ctx, at shutdown.
	go blobs.ReapUploads(ctx, time.Duration(cfg.Gate.IngestTimeout), time.Duration(cfg.Serve.ReapUploadsEvery), log)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = errors.Join(hs.Shutdown(shutdownCtx), gw.shutdown(shutdownCtx), adm.shutdown(shutdownCtx))
	// The queued audit records and alerts in flight, after the last request.
	srv.Close(shutdownCtx)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// knownBadDigests lets the gate ask the known-bad list about blobs.
type knownBadDigests struct{ *scanner.KnownBad }

func (k knownBadDigests) Has(d digest.Digest) bool { return k.KnownBad.Has(d.String()) }

func scannerOptions(cfg Config) (scanner.Options, error) {
	var kb *scanner.KnownBad
	if cfg.KnownBad != "" {
		var err error
		if kb, err = scanner.LoadKnownBad(cfg.KnownBad); err != nil {
			return scanner.Options{}, fmt.Errorf("known_bad: %w", err)
		}
	}
	return scanner.Options{
		KnownBadFiles: kb,
		Workers:       cfg.Workers,
		RulePaths:     cfg.Rules,
		Limits: scanner.Limits{
			MaxLayerBytes:   cfg.Scan.MaxLayerBytes,
			MaxFiles:        cfg.Scan.MaxFiles,
			MaxFileBytes:    cfg.Scan.MaxFileBytes,
			Window:          cfg.Scan.Window,
			LayerTimeout:    time.Duration(cfg.Scan.LayerTimeout),
			MaxArchiveDepth: cfg.Scan.MaxArchiveDepth,
		},
	}, nil
}

func newUpstreams(cfg Config) (map[string]*upstream.Registry, error) {
	out := make(map[string]*upstream.Registry, len(cfg.Upstreams))
	for name, u := range cfg.Upstreams {
		creds, err := upstreamCredentials(name, u)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
		allow, err := u.allowNetworks()
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
		r, err := upstream.New(upstream.Config{
			Name:          name,
			URL:           u.URL,
			Username:      creds.Username,
			Password:      creds.Password,
			Token:         creds.RefreshToken,
			MaxConcurrent: u.MaxConcurrent,
			SlotWait:      time.Duration(u.SlotWait),
			IdleTimeout:   time.Duration(u.IdleTimeout),
			Insecure:      u.Insecure,
			AllowNetworks: allow,
			UserAgent:     "pullgate/" + version,
		})
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", name, err)
		}
		out[name] = r
	}
	return out, nil
}

func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// evictEvery is how often the store is checked against max_store_bytes.
const evictEvery = time.Minute

// keepStoreWithinSize evicts the least recently used blobs past
// max_store_bytes, at start and then every evictEvery.
func keepStoreWithinSize(ctx context.Context, srv *proxy.Server, log *slog.Logger) {
	t := time.NewTicker(evictEvery)
	defer t.Stop()
	for {
		if _, err := srv.Evict(ctx); err != nil && ctx.Err() == nil {
			log.Warn("keep the store within max_store_bytes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// serveOptions turns the serve: section into the server's download bounds.
func serveOptions(c ServeConfig) proxy.ServeOptions {
	return proxy.ServeOptions{
		MaxStreams:       c.MaxBlobStreams,
		StreamWait:       time.Duration(c.BlobStreamWait),
		StreamRetryAfter: time.Duration(c.BlobStreamRetryAfter),
		WriteTimeout:     time.Duration(c.BlobWriteTimeout),
	}
}
