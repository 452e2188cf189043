package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/upstream"
)

// warm runs in-process through the gate, so it works whatever the
// listener speaks: here the service is started as serve starts it, with a
// certificate on its listener, and the images it warms are judged and
// their blobs stored (served from the store once the upstream is gone).
func TestWarmWithTLSOnTheListener(t *testing.T) {
	hub := testregistry.Start(t)
	clean := testregistry.CleanImage("warm clean")
	hub.Push(t, "library/warmclean", "1", clean)
	hub.Push(t, "someone/warmminer", "1", testregistry.MinerImage("warm miner"))

	dir := t.TempDir()
	cfg := defaultConfig()
	cfg.Listen, cfg.DataDir = "127.0.0.1:0", filepath.Join(dir, "data")
	cfg.TLS.Cert, cfg.TLS.Key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeSelfSigned(t, cfg.TLS.Cert, cfg.TLS.Key, "localhost")
	cfg.Upstreams = map[string]Upstream{"docker.io": {URL: hub.URL(), AllowNetworks: []string{"127.0.0.0/8"},
		SlotWait: Duration(upstream.DefaultSlotWait), IdleTimeout: Duration(upstream.DefaultIdleTimeout)}}
	cfg.Workers = 2
	cfg.Warm.Images = []string{"library/warmclean:1", "docker.io/someone/warmminer:1"}

	logs := &records{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runService(ctx, cfg, slog.New(logs)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	status := map[string]string{}
	logs.waitFor(t, time.Minute, "both images warmed", func(r record) bool {
		if r.msg == "warmed" {
			status[r.attrs["image"]] = r.attrs["status"]
		}
		return len(status) == 2
	})
	if status["library/warmclean:1"] != "clean" || status["docker.io/someone/warmminer:1"] != "blocked" {
		t.Fatalf("warmed: %v", status)
	}

	// The upstream goes away: what warm fetched is served from the store,
	// over the TLS listener.
	hub.SetDown(true)
	var addr string
	logs.waitFor(t, time.Second, "the listener's address", func(r record) bool {
		addr = r.attrs["listen"]
		return r.msg == "pullgate serving"
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	layer := digest.FromBytes(clean.Layers[1])
	resp, err := client.Get("https://" + addr + "/v2/library/warmclean/blobs/" + layer.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || digest.FromBytes(body) != layer {
		t.Fatalf("a warmed layer from the store: %d (%d bytes)", resp.StatusCode, len(body))
	}
}

// records is a slog handler that keeps every record's message and
// attributes as text, for tests that wait on what the service logs.
type records struct {
	mu   sync.Mutex
	list []record
}

type record struct {
	msg   string
	attrs map[string]string
}

func (l *records) Enabled(context.Context, slog.Level) bool { return true }
func (l *records) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *records) WithGroup(string) slog.Handler            { return l }

func (l *records) Handle(_ context.Context, r slog.Record) error {
	rec := record{msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool { rec.attrs[a.Key] = a.Value.String(); return true })
	l.mu.Lock()
	l.list = append(l.list, rec)
	l.mu.Unlock()
	return nil
}

// waitFor passes every record, old and new, to cond until it returns true;
// the test fails with what was awaited if that takes longer than within.
func (l *records) waitFor(t *testing.T, within time.Duration, what string, cond func(record) bool) {
	t.Helper()
	seen := 0
	testsync.WaitFor(t, within, what, func() bool {
		l.mu.Lock()
		fresh := l.list[seen:]
		seen = len(l.list)
		l.mu.Unlock()
		return slices.ContainsFunc(fresh, cond)
	})
}
