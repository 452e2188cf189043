package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/s3server"
	"github.com/pullgate/pullgate/storage"
)

// Where distribution keeps blob data and in-progress uploads; nothing may
// linger in either after a failed or cancelled write.
const (
	blobDataRoot = "/docker/registry/v2/blobs"
	uploadsRoot  = "/docker/registry/v2/repositories/pullgate/blobs/_uploads"
)

// eachBlobs runs fn against an in-memory store and a filesystem one.
func eachBlobs(t *testing.T, fn func(t *testing.T, b *storage.Blobs)) {
	t.Run("inmemory", func(t *testing.T) {
		t.Parallel()
		b, err := storage.NewInMemoryBlobs(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		fn(t, b)
	})
	t.Run("filesystem", func(t *testing.T) {
		t.Parallel()
		b, err := storage.NewFilesystemBlobs(t.Context(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		fn(t, b)
	})
	t.Run("s3", func(t *testing.T) {
		t.Parallel()
		fn(t, newS3Blobs(t))
	})
}

// newS3Blobs opens a store under a root of its own in the shared s3rver.
func newS3Blobs(t *testing.T) *storage.Blobs {
	t.Helper()
	srv := s3server.Shared(t)
	b, err := storage.NewS3Blobs(t.Context(), storage.S3Config{
		Bucket: s3server.Bucket, Region: "us-east-1", Endpoint: srv.Endpoint,
		AccessKey: s3server.AccessKey, SecretKey: s3server.SecretKey,
		RootDirectory: "/" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + hex.EncodeToString(randomBytes(t, 4)),
		Insecure:      true, PathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func commit(t *testing.T, b *storage.Blobs, p []byte) digest.Digest {
	t.Helper()
	dgst := digest.FromBytes(p)
	w, err := b.Create(t.Context())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer w.Cancel(t.Context())
	if _, err := w.Write(p); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Commit(t.Context(), dgst, int64(len(p))); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return dgst
}

// files lists every file under root in b's driver.
func files(t *testing.T, b *storage.Blobs, root string) []string {
	t.Helper()
	var out []string
	err := b.Driver().Walk(t.Context(), root, func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			out = append(out, fi.Path())
		}
		return nil
	})
	var pnf storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &pnf) {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

func assertNothingLeft(t *testing.T, b *storage.Blobs, content []byte) {
	t.Helper()
	if _, err := b.Stat(t.Context(), digest.FromBytes(content)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat of the content's real digest: %v, want ErrNotFound", err)
	}
	if left := files(t, b, uploadsRoot); len(left) != 0 {
		t.Errorf("upload files left behind: %q", left)
	}
	if left := files(t, b, blobDataRoot); len(left) != 0 {
		t.Errorf("blob data left behind: %q", left)
	}
}

func TestBlobsRoundTrip(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		for _, n := range []int{0, 1, 4096, 3<<20 + 17} {
			p := randomBytes(t, n)
			dgst := commit(t, b, p)

			size, err := b.Stat(t.Context(), dgst)
			if err != nil || size != int64(n) {
				t.Fatalf("Stat(%d bytes) = %d, %v", n, size, err)
			}
			rc, size, err := b.Open(t.Context(), dgst)
			if err != nil || size != int64(n) {
				t.Fatalf("Open(%d bytes) = %d, %v", n, size, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, p) {
				t.Fatalf("read back %d bytes: %d bytes, equal=%v, err=%v", n, len(got), bytes.Equal(got, p), err)
			}
		}
		if left := files(t, b, uploadsRoot); len(left) != 0 {
			t.Errorf("upload files left after commits: %q", left)
		}
	})
}

// TestBlobsServeRange serves a blob with http.ServeContent, the way the
// proxy does, and asks for a range.
func TestBlobsServeRange(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		p := randomBytes(t, 100000)
		dgst := commit(t, b, p)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc, _, err := b.Open(r.Context(), dgst)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer rc.Close()
			http.ServeContent(w, r, "", time.Time{}, rc)
		}))
		defer srv.Close()

		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		req.Header.Set("Range", "bytes=50000-50099")
		// Not http.DefaultClient: the AWS SDK replaces its transport when
		// AWS_CA_BUNDLE is set, while another test opens an S3 store.
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, p[50000:50100]) {
			t.Fatalf("range request: status %d, %d bytes, equal=%v", resp.StatusCode, len(got), bytes.Equal(got, p[50000:50100]))
		}
	})
}

func TestBlobsCommitRefusesWrongContent(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		p := randomBytes(t, 1<<20)
		right := digest.FromBytes(p)
		wrong := digest.FromBytes(append([]byte("x"), p...))
		cases := []struct {
			name  string
			write []byte
			dgst  digest.Digest
			size  int64
			want  error
		}{
			{"wrong digest", p, wrong, int64(len(p)), storage.ErrDigestMismatch},
			{"size too large", p, right, int64(len(p)) + 1, storage.ErrSizeMismatch},
			{"size too small", p, right, int64(len(p)) - 1, storage.ErrSizeMismatch},
			{"truncated content", p[:len(p)/2], right, int64(len(p)), storage.ErrSizeMismatch},
			{"truncated content, matching size", p[:len(p)/2], right, int64(len(p) / 2), storage.ErrDigestMismatch},
			{"negative size", p, right, -1, storage.ErrSizeMismatch},
			{"malformed digest", p, "sha256:abc", int64(len(p)), storage.ErrInvalid},
			{"empty digest", p, "", int64(len(p)), storage.ErrInvalid},
		}
		for _, tc := range cases {
			w, err := b.Create(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(tc.write); err != nil {
				t.Fatal(err)
			}
			err = w.Commit(t.Context(), tc.dgst, tc.size)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: Commit: %v, want an error wrapping %v", tc.name, err, tc.want)
			}
			if _, err := b.Stat(t.Context(), right); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s: Stat after failed Commit: %v, want ErrNotFound", tc.name, err)
			}
			if tc.dgst.Validate() == nil {
				if _, err := b.Stat(t.Context(), tc.dgst); !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("%s: Stat(committed digest) after failed Commit: %v, want ErrNotFound", tc.name, err)
				}
			}
			if err := w.Cancel(t.Context()); err != nil {
				t.Errorf("%s: Cancel after failed Commit: %v", tc.name, err)
			}
			assertNothingLeft(t, b, tc.write)
		}
	})
}

func TestBlobsCancel(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		p := randomBytes(t, 70000)
		w, err := b.Create(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
		if err := w.Cancel(t.Context()); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		assertNothingLeft(t, b, p)
		if err := w.Commit(t.Context(), digest.FromBytes(p), int64(len(p))); err == nil {
			t.Fatal("Commit after Cancel succeeded")
		}
		if _, err := w.Write(p); err == nil {
			t.Fatal("Write after Cancel succeeded")
		}
		assertNothingLeft(t, b, p)
	})
}

// TestBlobsCancelWithDoneContext: a client that went away must not leave
// its half-written upload behind.
func TestBlobsCancelWithDoneContext(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		p := randomBytes(t, 1000)
		ctx, cancel := context.WithCancel(t.Context())
		w, err := b.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := w.Cancel(ctx); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		assertNothingLeft(t, b, p)
	})
}

func TestBlobsCancelAfterCommitKeepsBlob(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		p := randomBytes(t, 1000)
		w, err := b.Create(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(t.Context(), digest.FromBytes(p), int64(len(p))); err != nil {
			t.Fatal(err)
		}
		if err := w.Cancel(t.Context()); err != nil {
			t.Fatalf("Cancel after Commit: %v", err)
		}
		if _, err := b.Stat(t.Context(), digest.FromBytes(p)); err != nil {
			t.Fatalf("Stat after Commit and Cancel: %v", err)
		}
		if err := w.Commit(t.Context(), digest.FromBytes(p), int64(len(p))); err == nil {
			t.Fatal("second Commit succeeded")
		}
	})
}

// TestBlobsConcurrentSameDigest: two pulls of one layer on two replicas
// both commit it; both must succeed and the blob must be whole.
func TestBlobsConcurrentSameDigest(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		p := randomBytes(t, 512<<10)
		dgst := digest.FromBytes(p)
		const writers = 8
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		start := make(chan struct{})
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w, err := b.Create(t.Context())
				if err != nil {
					errs <- err
					return
				}
				defer w.Cancel(t.Context())
				<-start
				for chunk := range slices.Chunk(p, 32<<10) {
					if _, err := w.Write(chunk); err != nil {
						errs <- err
						return
					}
				}
				if err := w.Commit(t.Context(), dgst, int64(len(p))); err != nil {
					errs <- fmt.Errorf("Commit: %w", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		rc, size, err := b.Open(t.Context(), dgst)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got, err := io.ReadAll(rc)
		if err != nil || size != int64(len(p)) || !bytes.Equal(got, p) {
			t.Fatalf("after concurrent commits: size %d, equal=%v, err=%v", size, bytes.Equal(got, p), err)
		}
		if left := files(t, b, uploadsRoot); len(left) != 0 {
			t.Errorf("upload files left behind: %q", left)
		}
	})
}

func TestBlobsDelete(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		p := randomBytes(t, 5000)
		keep := commit(t, b, randomBytes(t, 10))
		dgst := commit(t, b, p)
		if err := b.Delete(t.Context(), dgst); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := b.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Stat after Delete: %v", err)
		}
		if _, _, err := b.Open(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Open after Delete: %v", err)
		}
		if err := b.Delete(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("second Delete: %v, want ErrNotFound", err)
		}
		if left := files(t, b, blobDataRoot); len(left) != 1 {
			t.Fatalf("blob data after Delete: %q, want only the other blob", left)
		}
		if _, err := b.Stat(t.Context(), keep); err != nil {
			t.Fatalf("Stat of another blob after Delete: %v", err)
		}
		commit(t, b, p) // and it can come back
	})
}

func TestBlobsNotFoundAndInvalid(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		absent := digest.FromString("absent")
		if _, err := b.Stat(t.Context(), absent); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat: %v", err)
		}
		if _, _, err := b.Open(t.Context(), absent); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open: %v", err)
		}
		if _, _, err := b.Manifest(t.Context(), absent); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Manifest: %v", err)
		}
		for _, bad := range []digest.Digest{"", "sha256:zz", "md5:d41d8cd98f00b204e9800998ecf8427e"} {
			if _, err := b.Stat(t.Context(), bad); !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("Stat(%q): %v, want ErrInvalid", bad, err)
			}
			if _, _, err := b.Open(t.Context(), bad); !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("Open(%q): %v, want ErrInvalid", bad, err)
			}
			if _, _, err := b.Manifest(t.Context(), bad); !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("Manifest(%q): %v, want ErrInvalid", bad, err)
			}
		}
	})
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func TestManifests(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		// Odd whitespace on purpose: the bytes must come back exactly.
		body := []byte("{\n   \"schemaVersion\": 2,\t\"mediaType\": \"" + ociManifest + "\" }\n")
		dgst := digest.FromBytes(body)
		if err := b.PutManifest(t.Context(), dgst, ociManifest, body); err != nil {
			t.Fatalf("PutManifest: %v", err)
		}
		got, mt, err := b.Manifest(t.Context(), dgst)
		if err != nil || !bytes.Equal(got, body) || mt != ociManifest {
			t.Fatalf("Manifest = %q, %q, %v", got, mt, err)
		}
		// A manifest is not a layer: it must not be served as a blob.
		if _, err := b.Stat(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat of a manifest digest: %v, want ErrNotFound", err)
		}
		// Storing it again is fine.
		if err := b.PutManifest(t.Context(), dgst, ociManifest, body); err != nil {
			t.Fatalf("PutManifest again: %v", err)
		}

		other := []byte(`{"schemaVersion":2}`)
		if err := b.PutManifest(t.Context(), dgst, ociManifest, other); !errors.Is(err, storage.ErrDigestMismatch) {
			t.Fatalf("PutManifest with a mismatched body: %v, want ErrDigestMismatch", err)
		}
		if _, _, err := b.Manifest(t.Context(), digest.FromBytes(other)); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Manifest of the refused body: %v, want ErrNotFound", err)
		}
		got, _, err = b.Manifest(t.Context(), dgst)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("Manifest after refused put = %q, %v", got, err)
		}
		if err := b.PutManifest(t.Context(), digest.FromBytes(other), "", other); !errors.Is(err, storage.ErrInvalid) {
			t.Fatalf("PutManifest without media type: %v, want ErrInvalid", err)
		}

		if err := b.DeleteManifest(t.Context(), dgst); err != nil {
			t.Fatalf("DeleteManifest: %v", err)
		}
		if _, _, err := b.Manifest(t.Context(), dgst); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Manifest after delete: %v", err)
		}
		if left := files(t, b, uploadsRoot); len(left) != 0 {
			t.Errorf("upload files left behind: %q", left)
		}
	})
}

func TestBlobsPing(t *testing.T) {
	eachBlobs(t, func(t *testing.T, b *storage.Blobs) {
		if err := b.Ping(t.Context()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
}

func TestFilesystemBlobsPersistAndPingFails(t *testing.T) {
	root := t.TempDir()
	b, err := storage.NewFilesystemBlobs(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	p := randomBytes(t, 1234)
	dgst := commit(t, b, p)
	body := []byte(`{"schemaVersion":2}`)
	if err := b.PutManifest(t.Context(), digest.FromBytes(body), ociManifest, body); err != nil {
		t.Fatal(err)
	}

	again, err := storage.NewFilesystemBlobs(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	if size, err := again.Stat(t.Context(), dgst); err != nil || size != int64(len(p)) {
		t.Fatalf("Stat after reopen = %d, %v", size, err)
	}
	if got, mt, err := again.Manifest(t.Context(), digest.FromBytes(body)); err != nil || !bytes.Equal(got, body) || mt != ociManifest {
		t.Fatalf("Manifest after reopen = %q, %q, %v", got, mt, err)
	}

	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := again.Ping(t.Context()); err == nil {
		t.Fatal("Ping succeeded with the storage directory gone")
	}
}

func TestNewFilesystemBlobsRefusesEmptyRoot(t *testing.T) {
	if _, err := storage.NewFilesystemBlobs(t.Context(), ""); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("NewFilesystemBlobs(\"\"): %v, want ErrInvalid", err)
	}
}
