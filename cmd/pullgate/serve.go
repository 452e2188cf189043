package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/gate"
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
	return runService(ctx, cfg, log)
}

// runService wires the service from cfg and serves until ctx ends or a
// listener fails: the scanner, the stores, the upstreams, the server and
// its listeners, the rules reloader, and the server's background work.
func runService(ctx context.Context, cfg Config, log *slog.Logger) error {
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

	ups, err := newUpstreams(cfg)
	if err != nil {
		return err
	}
	opts := serverOptions(cfg, log)
	opts.KnownBad = knownBadDigests{sc}
	opts.Upstreams, opts.Blobs, opts.Verdicts, opts.Scanner = ups, stores.Blobs, stores.Verdicts, sc
	opts.Locks, opts.Releases = stores.Locks, stores.Locks
	opts.Admin = adminOptions(cfg.Admin, cfg.DataDir, stores.Audit, stores.Bus)
	opts.Rules = gate.RulesSource{Load: func() (scanner.Options, error) { return scannerOptions(cfg) }}
	srv, err := proxy.New(opts)
	if err != nil {
		return err
	}
	log.Info("pullgate starting", "listen", cfg.Listen, "tls", cfg.TLS.Cert != "", "data_dir", cfg.DataDir,
		"verdicts", stores.Verdicts.Kind(), "upstreams", strings.Join(slices.Sorted(maps.Keys(ups)), ","),
		"ruleset", sc.RulesetID(), "rules", sc.RuleCount(), "workers", sc.Workers(), "version", version)
	return serveUntilDone(ctx, cfg, srv, log)
}

// serverOptions turns the config into the server's options, all but the
// pieces opened elsewhere (stores, scanner, upstreams, admin).
func serverOptions(cfg Config, log *slog.Logger) proxy.Options {
	return proxy.Options{
		Hold:       time.Duration(cfg.Gate.Hold),
		HoldDocker: time.Duration(cfg.Gate.HoldDocker),
		Mode:       proxy.Mode(cfg.Gate.Mode),
		AgentModes: agentModes(cfg.Gate.AgentModes),
		Serve:      serveOptions(cfg.Serve),
		Options:    gateOptions(cfg, log),
	}
}

func agentModes(m map[string]string) map[string]proxy.Mode {
	out := make(map[string]proxy.Mode, len(m))
	for prefix, mode := range m {
		out[prefix] = proxy.Mode(mode)
	}
	return out
}

// gateOptions turns the config into the gate's options, all but the pieces
// opened elsewhere (stores, scanner, upstreams, rules, known-bad list).
func gateOptions(cfg Config, log *slog.Logger) gate.Options {
	return gate.Options{
		RetryAfter:        time.Duration(cfg.Gate.RetryAfter),
		TagTTL:            time.Duration(cfg.Gate.TagTTL),
		IngestTimeout:     time.Duration(cfg.Gate.IngestTimeout),
		IngestLease:       time.Duration(cfg.Gate.IngestLease),
		PrefetchPlatforms: append([]string{}, cfg.Platforms...),
		MaxStoreBytes:     cfg.MaxStoreBytes,
		Policy:            cfg.Policy,
		Decision:          cfg.Decision.policy(),
		MaxBlobBytes:      cfg.Gate.MaxBlobBytes,
		MaxConfigBytes:    cfg.Gate.MaxConfigBytes,
		MaxManifestLayers: cfg.Gate.MaxLayers,
		ReapUploadsEvery:  time.Duration(cfg.Serve.ReapUploadsEvery),
		Warm: gate.WarmOptions{Images: cfg.Warm.Images, Platforms: append([]string{}, cfg.Platforms...),
			Interval: time.Duration(cfg.Warm.Interval), Timeout: time.Duration(cfg.Warm.Timeout)},
		SpoolDir: filepath.Join(cfg.DataDir, "spool"),
		Logger:   log,
		Version:  version,
	}
}

// serveUntilDone runs the listeners, the reloader and the server's
// background work until ctx ends or a listener fails, then shuts down.
func serveUntilDone(ctx context.Context, cfg Config, srv *proxy.Server, log *slog.Logger) error {
	errc := make(chan error, 3)
	hs, err := startMain(cfg, srv, log, errc)
	if err != nil {
		return err
	}
	adm, err := startAdminListener(cfg.Admin, srv, log, errc)
	if err != nil {
		return err
	}
	gw, err := startGateway(cfg.Gateway, srv.GatewayHandler(), log, errc)
	if err != nil {
		return err
	}
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { defer close(ran); srv.Run(runCtx) }()
	go reloadOnHangup(runCtx, srv)
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	log.Info("shutting down")
	stopRun()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = errors.Join(err, hs.Shutdown(shutdownCtx), gw.shutdown(shutdownCtx), adm.shutdown(shutdownCtx))
	<-ran
	// The queued audit records and alerts in flight, after the last request.
	srv.Close(shutdownCtx)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// startMain serves the registry API on cfg.Listen, over TLS when a
// certificate is configured. No WriteTimeout or ReadTimeout: a manifest may
// be held for minutes and a large blob takes as long as it takes; blob
// downloads carry a write deadline of their own, renewed as bytes go out.
func startMain(cfg Config, srv *proxy.Server, log *slog.Logger, errc chan<- error) (*http.Server, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	hs.RegisterOnShutdown(srv.StopStreams)
	log.Info("pullgate serving", "listen", ln.Addr().String(), "tls", cfg.TLS.Cert != "")
	if cfg.TLS.Cert == "" {
		go func() { errc <- hs.Serve(ln) }()
		return hs, nil
	}
	certs, err := newCertReloader(cfg.TLS.Cert, cfg.TLS.Key, log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get}
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	return hs, nil
}

// knownBadDigests lets the gate ask the known-bad list about blobs. It
// asks the scanner's current list at each call, so a reload that changes
// the list changes the gate's answer at once, as it changes the scans'.
type knownBadDigests struct{ sc *scanner.Scanner }

func (k knownBadDigests) Has(d digest.Digest) bool { return k.sc.KnownBad().Has(d.String()) }

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

// serveOptions turns the serve: section into the server's download bounds.
func serveOptions(c ServeConfig) proxy.ServeOptions {
	return proxy.ServeOptions{
		MaxStreams:       c.MaxBlobStreams,
		StreamWait:       time.Duration(c.BlobStreamWait),
		StreamRetryAfter: time.Duration(c.BlobStreamRetryAfter),
		WriteTimeout:     time.Duration(c.BlobWriteTimeout),
	}
}
