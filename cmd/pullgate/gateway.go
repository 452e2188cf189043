package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// GatewayConfig is the corporate egress gateway mode: a TLS listener that
// clients reach under the registries' own names (their DNS sends
// registry-1.docker.io, ghcr.io, … to pullgate), so no client can fall back
// around pullgate and every refusal reaches the user. The certificate must
// name every registry host clients use and chain to a CA they trust; it is
// re-read when the files change.
type GatewayConfig struct {
	Listen  string `yaml:"listen"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
}

// gatewayFlags are serve's gateway flags, each with a PULLGATE_* variable.
type gatewayFlags struct {
	listen, cert, key string
}

func (f *gatewayFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.listen, "gateway-listen", "", "TLS address for egress gateway mode, e.g. :443 (env PULLGATE_GATEWAY_LISTEN)")
	fs.StringVar(&f.cert, "tls-cert", "", "PEM certificate (chain) for the gateway listener, reloaded when it changes (env PULLGATE_TLS_CERT)")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key for the gateway listener (env PULLGATE_TLS_KEY)")
}

// apply sets c from the environment, then from the flags.
func (f *gatewayFlags) apply(c *GatewayConfig, getenv func(string) string) {
	applyStrings(getenv, []stringSetting{
		{&c.Listen, "PULLGATE_GATEWAY_LISTEN", f.listen},
		{&c.TLSCert, "PULLGATE_TLS_CERT", f.cert},
		{&c.TLSKey, "PULLGATE_TLS_KEY", f.key},
	})
}

func (c GatewayConfig) validate() error {
	if c.Listen == "" {
		return nil
	}
	if c.TLSCert == "" || c.TLSKey == "" {
		return errors.New("gateway: listen needs tls_cert and tls_key")
	}
	return nil
}

// gateway is the running TLS listener.
type gateway struct {
	hs   *http.Server
	addr net.Addr
}

// startGateway serves h over TLS on c.Listen until shutdown; a serving error
// is sent to errc. It returns nil when the gateway is not configured.
func startGateway(c GatewayConfig, h http.Handler, log *slog.Logger, errc chan<- error) (*gateway, error) {
	if c.Listen == "" {
		return nil, nil
	}
	certs, err := newCertReloader(c.TLSCert, c.TLSKey, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("gateway listen: %w", err)
	}
	hs := &http.Server{
		Handler:           h,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get},
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug), // TLS handshake noise from scanners and probes
	}
	go func() {
		if err := hs.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("gateway: %w", err)
		}
	}()
	log.Info("gateway serving", "listen", ln.Addr().String(), "tls_cert", c.TLSCert)
	return &gateway{hs: hs, addr: ln.Addr()}, nil
}

func (g *gateway) shutdown(ctx context.Context) error {
	if g == nil {
		return nil
	}
	return g.hs.Shutdown(ctx)
}

// certReloader hands out a listener's certificate, re-reading the files
// when their modification time or size changes (checked at most once a
// second), so a renewed certificate is used without a restart. A pair that
// does not load keeps the previous certificate in service and is logged.
type certReloader struct {
	certPath, keyPath string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     string
	lastCheck time.Time
}

func newCertReloader(certPath, keyPath string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certPath: certPath, keyPath: keyPath, log: log}
	stamp, err := r.fileStamp()
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s: %w", certPath, err)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s: %w", certPath, err)
	}
	r.cert, r.stamp, r.lastCheck = &cert, stamp, time.Now()
	return r, nil
}

// fileStamp identifies the current contents of both files.
func (r *certReloader) fileStamp() (string, error) {
	var s string
	for _, p := range []string{r.certPath, r.keyPath} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%d.%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return s, nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.lastCheck) < time.Second {
		return r.cert, nil
	}
	r.lastCheck = time.Now()
	stamp, err := r.fileStamp()
	if err != nil || stamp == r.stamp {
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certPath, r.keyPath)
	if err != nil {
		// Often the certificate and the key are being replaced one after
		// the other: keep serving the old pair and look again next second.
		r.log.Warn("TLS certificate not reloaded; keeping the previous one", "tls_cert", r.certPath, "err", err)
		return r.cert, nil
	}
	r.cert, r.stamp = &cert, stamp
	r.log.Info("TLS certificate reloaded", "tls_cert", r.certPath)
	return r.cert, nil
}
