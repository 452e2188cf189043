package proxy

import (
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/testsync"
	"github.com/pullgate/pullgate/proxy/events"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/storage"
)

// BenchmarkServeWarmBlob serves a warm 100 MB blob from the filesystem
// store over loopback HTTP: as pullgate does (verified once, then by
// sendfile while the file is unchanged), as it did before (every byte
// hashed on the way out, the tail held until the digest matched), and
// unverified for comparison, through distribution's blob reader (what
// distribution's own registry serves a blob with) and through the bare
// file with http.ServeContent, which uses sendfile.
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

	_, verdicts := testStores(b)
	s := &Server{opts: Options{Options: gate.Options{Blobs: blobs, Verdicts: verdicts, Scanner: testScanner(b)}}, log: slog.New(slog.DiscardHandler)}
	s.opts.setDefaults()
	if s.gate, err = gate.New(s.opts.Options); err != nil {
		b.Fatal(err)
	}
	s.metrics = events.NewMetrics(s.opts.Registry)
	s.streams = make(streamSlots, 4)
	// A verification counts only for a file whose last change is older
	// than the margin the filesystem's timestamps need.
	testsync.WaitFor(b, 10*time.Second, "the blob file to age past the verification margin", func() bool {
		rc, _, err := blobs.Reader(b.Context(), dgst)
		if err != nil {
			b.Fatal(err)
		}
		defer rc.Close()
		fi, err := rc.(*os.File).Stat()
		return err == nil && time.Since(fi.ModTime()) > 1200*time.Millisecond
	})

	for _, bc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		// What pullgate does: the first serve hashes the file, every later
		// one (the file unchanged) goes by sendfile.
		{"pullgate", func(w http.ResponseWriter, r *http.Request) { s.serveBlob(w, r, dgst) }},
		// What pullgate did before: every byte hashed, every serve.
		{"hashed-every-serve", func(w http.ResponseWriter, r *http.Request) {
			rc, size, err := blobs.Reader(r.Context(), dgst)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer rc.Close()
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			dw := &deadlineWriter{w: w, rc: http.NewResponseController(w), timeout: time.Minute, status: http.StatusOK}
			if err := verifiedCopy(r.Context(), dw, rc, dgst, size, 0, size); err != nil {
				panic(http.ErrAbortHandler)
			}
		}},
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
