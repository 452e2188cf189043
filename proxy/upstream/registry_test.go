package upstream

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/testregistry"
)

func TestResolveUsesHEADOnly(t *testing.T) {
	hub := testregistry.Start(t)
	img := pushImage(t, hub, "library/alpine", "3.20", []byte("layer bytes"))
	r := hubClient(t, hub, "", "")

	desc, err := r.Resolve(context.Background(), "library/alpine", "3.20", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: img.desc.Digest, Size: img.desc.Size}
	if desc != want {
		t.Fatalf("Resolve = %+v, want %+v", desc, want)
	}
	requests := hub.Requests()
	heads := 0
	for _, req := range requests {
		if req.Method == "GET" && strings.Contains(req.Path, "/manifests/") {
			t.Errorf("Resolve sent GET %s; it must only HEAD", req.Path)
		}
		if req.Method == "HEAD" {
			heads++
		}
	}
	if heads == 0 {
		t.Fatalf("no HEAD reached the registry: %v", requests)
	}
}

func TestManifestByDigest(t *testing.T) {
	hub := testregistry.Start(t)
	img := pushImage(t, hub, "library/alpine", "3.20", []byte("layer bytes"))
	r := hubClient(t, hub, "", "")

	body, desc, err := r.Manifest(context.Background(), "library/alpine", img.desc.Digest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, img.manifest) {
		t.Fatalf("manifest bytes differ:\n got %s\nwant %s", body, img.manifest)
	}
	if desc.Digest != img.desc.Digest || desc.Size != img.desc.Size || desc.MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("descriptor %+v, want %+v", desc, img.desc)
	}
}

func TestBlobThroughCDNRedirect(t *testing.T) {
	hub := testregistry.Start(t)
	content := bytes.Repeat([]byte("miner-free layer "), 4096)
	img := pushImage(t, hub, "library/alpine", "3.20", content)
	r := hubClient(t, hub, "", "")

	rc, size, err := r.Blob(context.Background(), "library/alpine", img.layer.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) || size != int64(len(content)) {
		t.Fatalf("blob: %d bytes (declared %d), want %d", len(got), size, len(content))
	}
	if hub.CDNGets(img.layer.Digest) == 0 {
		t.Fatal("the CDN was never asked: no redirect followed")
	}
	if n := hub.CDNAuthorized(img.layer.Digest); n != 0 {
		t.Errorf("the CDN received an Authorization header %d times", n)
	}
	bearer := false
	for _, req := range hub.Requests() {
		if !req.CDN && req.Method == "GET" && strings.HasSuffix(req.Path, "/blobs/"+img.layer.Digest.String()) {
			bearer = bearer || req.AuthScheme == "Bearer"
		}
	}
	if !bearer {
		t.Fatalf("the registry never saw a Bearer token on the blob GET: %+v", hub.Requests())
	}
}

func TestNotFound(t *testing.T) {
	hub := testregistry.Start(t)
	pushImage(t, hub, "library/alpine", "3.20", []byte("layer"))
	r := hubClient(t, hub, "", "")
	ctx := context.Background()
	missing := digest.FromString("nothing here")

	_, err := r.Resolve(ctx, "library/alpine", "nope", nil)
	if !IsNotFound(err) {
		t.Errorf("Resolve unknown tag: %v, want not found", err)
	}
	_, _, err = r.Manifest(ctx, "library/alpine", missing, nil)
	if !IsNotFound(err) {
		t.Errorf("Manifest unknown digest: %v, want not found", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != "MANIFEST_UNKNOWN" || e.StatusCode != 404 {
		t.Errorf("Manifest error %#v, want 404 MANIFEST_UNKNOWN", e)
	}
	if want := "docker.io: GET library/alpine manifest " + missing.String() + ": 404 MANIFEST_UNKNOWN: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error string %q, want prefix %q", err, want)
	}
	if _, _, err = r.Blob(ctx, "library/alpine", missing); !IsNotFound(err) {
		t.Errorf("Blob unknown digest: %v, want not found", err)
	}
	if _, _, err = r.Tags(ctx, "library/nothing", 0, ""); !IsNotFound(err) {
		t.Errorf("Tags unknown repo: %v, want not found", err)
	}
}

func TestTagsPagination(t *testing.T) {
	hub := testregistry.Start(t)
	for _, tag := range []string{"a", "b", "c"} {
		pushImage(t, hub, "library/alpine", tag, []byte("layer"))
	}
	r := hubClient(t, hub, "", "")

	body, link, err := r.Tags(context.Background(), "library/alpine", 2, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"tags":["a","b"]`) || !strings.Contains(link, `rel="next"`) {
		t.Fatalf("page 1: body %s link %q", body, link)
	}
	body, link, err = r.Tags(context.Background(), "library/alpine", 2, "b")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"tags":["c"]`) || link != "" {
		t.Fatalf("page 2: body %s link %q", body, link)
	}
}

func TestCredentialsUsedForTokenAndNeverInErrors(t *testing.T) {
	const user, password = "pullgate-bot", "s3cret-Passw0rd!"
	hub := testregistry.Start(t, testregistry.WithCredentials(user, password), testregistry.WithEchoingTokenErrors())
	img := pushImage(t, hub, "private/app", "v1", []byte("layer"))
	ctx := context.Background()

	r := hubClient(t, hub, user, password)
	if _, _, err := r.Manifest(ctx, "private/app", img.desc.Digest, nil); err != nil {
		t.Fatalf("with credentials: %v", err)
	}
	tokenRequests := hub.TokenRequests()
	if len(tokenRequests) == 0 || tokenRequests[len(tokenRequests)-1].User != user {
		t.Fatalf("the token endpoint saw %+v, want a last request as %q", tokenRequests, user)
	}

	// Errors from a call that succeeds at auth but fails after it.
	_, _, err := r.Manifest(ctx, "private/app", digest.FromString("missing"), nil)
	if !IsNotFound(err) {
		t.Fatalf("missing manifest: %v", err)
	}
	errs := []error{err}

	// The token endpoint rejects a wrong password and echoes what it got.
	wrong := hubClient(t, hub, user, password+"x")
	_, err = wrong.Resolve(ctx, "private/app", "v1", nil)
	if !IsUnauthorized(err) {
		t.Fatalf("wrong password: %v, want unauthorized", err)
	}
	errs = append(errs, err)
	anon := hubClient(t, hub, "", "")
	if _, err = anon.Resolve(ctx, "private/app", "v1", nil); !IsUnauthorized(err) {
		t.Fatalf("anonymous: %v, want unauthorized", err)
	}

	secrets := []string{password, base64.StdEncoding.EncodeToString([]byte(user + ":" + password)),
		password + "x", base64.StdEncoding.EncodeToString([]byte(user + ":" + password + "x"))}
	for _, err := range errs {
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error %q contains a credential", err)
			}
		}
	}
	if !strings.Contains(errs[1].Error(), "[redacted]") {
		t.Errorf("the echoed credentials were not redacted, so this test proves nothing: %q", errs[1])
	}
}
