package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/storage"
)

// AdminConfig is the operator's window: the /admin/ page and API, where it
// listens, the audit log's shared retention and the block alerts.
type AdminConfig struct {
	Token          string        `yaml:"token"`
	ReadOnlyToken  string        `yaml:"readonly_token"`
	Listen         string        `yaml:"listen"`
	AuditRetention int64         `yaml:"audit_retention"`
	AuditFileBytes int64         `yaml:"audit_file_bytes"`
	AuditFileKeep  int           `yaml:"audit_file_keep"`
	Webhook        WebhookConfig `yaml:"webhook"`
}

// WebhookConfig is where block alerts go and the secret that signs them.
type WebhookConfig struct {
	URL    string `yaml:"url"`
	Secret string `yaml:"secret"`
}

// minTokenLength refuses tokens short enough to guess.
const minTokenLength = 16

// adminFlags are serve's admin flags, each with a PULLGATE_* variable. The
// environment or the config file keep tokens out of the process list.
type adminFlags struct {
	token, readonly, listen, webhookURL, webhookSecret string
}

func (f *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.token, "admin-token", "", "token for /admin/ with the admin role; prefer the env PULLGATE_ADMIN_TOKEN (flags show in ps)")
	fs.StringVar(&f.readonly, "admin-readonly-token", "", "token for /admin/ with the read-only role (env PULLGATE_ADMIN_READONLY_TOKEN)")
	fs.StringVar(&f.listen, "admin-listen", "", "serve /admin/ (and /metrics, /healthz, /readyz) on this address only (env PULLGATE_ADMIN_LISTEN)")
	fs.StringVar(&f.webhookURL, "webhook-url", "", "POST a signed JSON alert here on each block (env PULLGATE_WEBHOOK_URL)")
	fs.StringVar(&f.webhookSecret, "webhook-secret", "", "HMAC-SHA256 key for the alerts (env PULLGATE_WEBHOOK_SECRET)")
}

// apply sets c from the environment, then from the flags.
func (f *adminFlags) apply(c *AdminConfig, getenv func(string) string) {
	applyStrings(getenv, []stringSetting{
		{&c.Token, "PULLGATE_ADMIN_TOKEN", f.token},
		{&c.ReadOnlyToken, "PULLGATE_ADMIN_READONLY_TOKEN", f.readonly},
		{&c.Listen, "PULLGATE_ADMIN_LISTEN", f.listen},
		{&c.Webhook.URL, "PULLGATE_WEBHOOK_URL", f.webhookURL},
		{&c.Webhook.Secret, "PULLGATE_WEBHOOK_SECRET", f.webhookSecret},
	})
}

func (c AdminConfig) validate() error {
	var errs []error
	for name, tok := range map[string]string{"admin.token": c.Token, "admin.readonly_token": c.ReadOnlyToken} {
		if tok != "" && len(tok) < minTokenLength {
			errs = append(errs, fmt.Errorf("%s is shorter than %d characters", name, minTokenLength))
		}
	}
	if c.Token != "" && c.Token == c.ReadOnlyToken {
		errs = append(errs, errors.New("admin.token and admin.readonly_token are the same"))
	}
	if c.Webhook.URL != "" && c.Webhook.Secret == "" {
		errs = append(errs, errors.New("admin.webhook.url needs admin.webhook.secret to sign alerts"))
	}
	if c.AuditFileKeep < 1 {
		errs = append(errs, errors.New("admin.audit_file_keep must be at least 1"))
	}
	if c.AuditRetention < 0 {
		errs = append(errs, errors.New("admin.audit_retention is negative"))
	}
	return errors.Join(errs...)
}

func adminOptions(c AdminConfig, dataDir string, audit storage.AuditLog, bus storage.EventBus) proxy.AdminOptions {
	return proxy.AdminOptions{
		Token:         c.Token,
		ReadOnlyToken: c.ReadOnlyToken,
		Separate:      c.Listen != "",
		Audit:         audit,
		Bus:           bus,
		Webhook: events.WebhookOptions{
			URL: c.Webhook.URL, Secret: c.Webhook.Secret,
			SpoolDir: filepath.Join(dataDir, "webhook"),
		},
	}
}

// adminListener is the separate admin listener, when configured.
type adminListener struct{ hs *http.Server }

// startAdminListener serves the admin handler on c.Listen; a serving error
// goes to errc. It returns nil when the admin page shares the main listener.
func startAdminListener(c AdminConfig, srv *proxy.Server, log *slog.Logger, errc chan<- error) (*adminListener, error) {
	if c.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listen: %w", err)
	}
	hs := &http.Server{
		Handler:           srv.AdminHandler(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	hs.RegisterOnShutdown(srv.StopStreams)
	log.Info("admin page serving", "listen", ln.Addr().String())
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("admin listener: %w", err)
		}
	}()
	return &adminListener{hs: hs}, nil
}

func (a *adminListener) shutdown(ctx context.Context) error {
	if a == nil {
		return nil
	}
	return a.hs.Shutdown(ctx)
}
