package proxy

import (
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/storage"
)

// BenchmarkServeWarmBlob serves a warm 100 MB blob from the filesystem
// store over loopback HTTP: as pullgate does (hashed on the way out, the
// tail held until the digest matched), and unverified for comparison,
// through distribution's blob reader (what pullgate used before) and
// through the bare file, which lets net/http use sendfile.
func BenchmarkServeWarmBlob(b *testing.B) {
	const size = 100 << 20
	blobs, err := storage.NewFilesystemBlobs(b.Context(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	p := make([]byte, size)
	_, _ = mrand.NewChaCha8([32]byte{7}).Read(p)
	dgst := digest.FromBytes(p)
	w, err := blobs.Create(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.Write(p); err != nil {
		b.Fatal(err)
	}
	if err := w.Commit(b.Context(), dgst, size); err != nil {
		b.Fatal(err)
	}
	p = nil

	s := &Server{opts: Options{Options: gate.Options{Blobs: blobs}}, log: slog.New(slog.DiscardHandler)}
	s.opts.setDefaults()
	s.metrics = events.NewMetrics(s.opts.Registry)
	s.streams = make(streamSlots, 4)

	for _, bc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"verified", func(w http.ResponseWriter, r *http.Request) { s.serveBlob(w, r, dgst) }},
		{"unverified-distribution-reader", func(w http.ResponseWriter, r *http.Request) {
			rc, _, err := blobs.Open(r.Context(), dgst)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer rc.Close()
			http.ServeContent(w, r, "", time.Time{}, rc)
		}},
		{"unverified-file-sendfile", func(w http.ResponseWriter, r *http.Request) {
			rc, _, err := blobs.Reader(r.Context(), dgst)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer rc.Close()
			http.ServeContent(w, r, "", time.Time{}, rc.(io.ReadSeeker))
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ts := httptest.NewServer(bc.handler)
			defer ts.Close()
			b.SetBytes(size)
			for b.Loop() {
				resp, err := ts.Client().Get(ts.URL)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != size || resp.StatusCode != http.StatusOK {
					b.Fatalf("%d: %d bytes, %v", resp.StatusCode, n, err)
				}
			}
		})
	}
}
