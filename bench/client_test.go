package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// The benchmarks' client: what a daemon does to pull an image, the same
// requests to every registry and mirror it is pointed at.

func clientTransport() *http.Transport {
	return &http.Transport{
		MaxIdleConnsPerHost: 2 * concurrency,
		DisableCompression:  true, // layers are compressed already; dockerd sends no Accept-Encoding either
	}
}

type doer interface {
	Do(*http.Request) (*http.Response, error)
}

var manifestAccept = strings.Join([]string{
	"application/vnd.docker.distribution.manifest.v2+json",
	ocispec.MediaTypeImageManifest,
	"application/vnd.docker.distribution.manifest.list.v2+json",
	ocispec.MediaTypeImageIndex,
}, ", ")

// pull is what a client does: GET the manifest by tag, then GET the config
// and, at the same time, every layer, concurrency at a time, reading each
// body fully and verifying its size and digest. It returns the bytes
// received.
func pull(ctx context.Context, c doer, base, repo, tag string) (int64, error) {
	return pullObserved(ctx, c, base, repo, tag, nil)
}

// pullObserved is pull that calls firstByte (if not nil) when the first
// byte of each blob's body arrives.
func pullObserved(ctx context.Context, c doer, base, repo, tag string, firstByte func(ocispec.Descriptor)) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("manifest %s:%s: %w", repo, tag, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("manifest %s:%s: %w", repo, tag, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("manifest %s:%s: %s: %s", repo, tag, resp.Status, body)
	}
	if want := resp.Header.Get("Docker-Content-Digest"); want != "" && digest.FromBytes(body).String() != want {
		return 0, fmt.Errorf("manifest %s:%s: digest %s, header says %s", repo, tag, digest.FromBytes(body), want)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return 0, fmt.Errorf("manifest %s:%s: %w", repo, tag, err)
	}
	if len(m.Layers) == 0 {
		return 0, fmt.Errorf("manifest %s:%s: no layers (media type %s)", repo, tag, m.MediaType)
	}

	// As dockerd's puller does it (moby's pullSchema2): the config in a
	// goroutine of its own, the layers through the download manager,
	// concurrency at a time; the config takes none of the layers' slots.
	total := atomic.Int64{}
	total.Add(int64(len(body)))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		n, err := fetchBlob(gctx, c, base, repo, m.Config, firstByte)
		total.Add(n)
		return err
	})
	layers, lctx := errgroup.WithContext(gctx)
	layers.SetLimit(concurrency)
	for _, d := range m.Layers {
		layers.Go(func() error {
			n, err := fetchBlob(lctx, c, base, repo, d, firstByte)
			total.Add(n)
			return err
		})
	}
	g.Go(layers.Wait)
	err = g.Wait() // before the count: the operands of a return are evaluated left to right
	return total.Load(), err
}

func fetchBlob(ctx context.Context, c doer, base, repo string, d ocispec.Descriptor, firstByte func(ocispec.Descriptor)) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/blobs/"+d.Digest.String(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("blob %s: %s: %s", d.Digest, resp.Status, msg)
	}
	v := d.Digest.Verifier()
	var body io.Reader = resp.Body
	if firstByte != nil {
		body = &firstByteReader{r: resp.Body, first: func() { firstByte(d) }}
	}
	n, err := io.Copy(v, body)
	switch {
	case err != nil:
		return n, fmt.Errorf("blob %s: %w", d.Digest, err)
	case n != d.Size:
		return n, fmt.Errorf("blob %s: got %d bytes, want %d", d.Digest, n, d.Size)
	case !v.Verified():
		return n, fmt.Errorf("blob %s: content does not match its digest", d.Digest)
	}
	return n, nil
}

// firstByteReader calls first once, when the first bytes are read.
type firstByteReader struct {
	r     io.Reader
	first func()
	seen  bool
}

func (f *firstByteReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 && !f.seen {
		f.seen = true
		f.first()
	}
	return n, err
}
