package testregistry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/manifest/manifestlist"
	_ "github.com/distribution/distribution/v3/manifest/ocischema" // registers OCI manifests for UnmarshalManifest
	"github.com/distribution/distribution/v3/manifest/schema2"
	"github.com/distribution/reference"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one entry of a synthetic layer.
type File struct {
	Path string // inside the layer, e.g. "usr/bin/kworker"; a leading "/" is dropped
	Mode int64  // permission bits; 0 means 0644
	Data []byte
	// Link, if set, makes the entry a symlink to Link (Data is ignored).
	Link string
}

// epoch is the modification time of every entry, so that layers are
// reproducible byte for byte.
var epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// LayerTar returns an uncompressed tar layer holding files, with parent
// directories added.
func LayerTar(files ...File) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		name := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		var parents []string
		for d := path.Dir(name); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
			dirs[d] = true
		}
		for i := len(parents) - 1; i >= 0; i-- {
			must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: parents[i] + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}))
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(f.Data)), ModTime: epoch, Format: tar.FormatPAX}
		if f.Link != "" {
			hdr = &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: f.Link, Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX}
		}
		must(tw.WriteHeader(hdr))
		if f.Link == "" {
			_, err := tw.Write(f.Data)
			must(err)
		}
	}
	must(tw.Close())
	return buf.Bytes()
}

// Layer returns a gzip-compressed tar layer (tar+gzip) holding files.
func Layer(files ...File) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(LayerTar(files...))
	must(err)
	must(zw.Close())
	return buf.Bytes()
}

// LayerZstd returns a zstd-compressed tar layer (tar+zstd) holding files.
func LayerZstd(files ...File) []byte {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	must(err)
	_, err = zw.Write(LayerTar(files...))
	must(err)
	must(zw.Close())
	return buf.Bytes()
}

func must(err error) {
	if err != nil {
		panic("testregistry: " + err.Error())
	}
}

// Format is a manifest format.
type Format int

const (
	// Docker is the Docker image manifest v2, schema 2 (what Docker Hub
	// mostly serves).
	Docker Format = iota
	// OCI is the OCI image manifest.
	OCI
)

// Image is a synthetic image to push.
type Image struct {
	// Layers are the layer blobs as stored (tar+gzip, tar+zstd or tar; see
	// Layer, LayerZstd, LayerTar).
	Layers [][]byte
	// LayerMediaType, if set, is used for every layer; otherwise each layer's
	// type follows its compression (detected from its magic bytes) and Format.
	LayerMediaType string
	// Config is the image config. Zero fields get defaults: linux/amd64,
	// rootfs.diff_ids computed from the layers, one history entry per layer.
	Config ocispec.Image
	// RawConfig, if set, is pushed verbatim instead of Config.
	RawConfig []byte
	Format    Format
}

// Built is an Image rendered into the blobs and manifest a registry holds.
type Built struct {
	Manifest        []byte
	MediaType       string
	Digest          digest.Digest // of Manifest
	Config          []byte
	ConfigDigest    digest.Digest
	ConfigMediaType string
	Layers          []ocispec.Descriptor
	DiffIDs         []digest.Digest // diff_ids
}

// Build renders img into its config and manifest.
func (img Image) Build() (*Built, error) {
	b := &Built{}
	for i, l := range img.Layers {
		raw, compression, err := decompress(l)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		mt := img.LayerMediaType
		if mt == "" {
			mt = layerMediaType(img.Format, compression)
		}
		b.Layers = append(b.Layers, ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(l), Size: int64(len(l))})
		b.DiffIDs = append(b.DiffIDs, digest.FromBytes(raw))
	}

	b.Config = img.RawConfig
	if b.Config == nil {
		cfg := img.Config
		if cfg.Architecture == "" {
			cfg.Architecture = "amd64"
		}
		if cfg.OS == "" {
			cfg.OS = "linux"
		}
		if cfg.Created == nil {
			created := epoch
			cfg.Created = &created
		}
		if cfg.RootFS.Type == "" {
			cfg.RootFS.Type = "layers"
		}
		if cfg.RootFS.DiffIDs == nil {
			cfg.RootFS.DiffIDs = b.DiffIDs
		}
		if cfg.History == nil {
			for i := range img.Layers {
				cfg.History = append(cfg.History, ocispec.History{Created: cfg.Created, CreatedBy: fmt.Sprintf("testregistry: layer %d", i)})
			}
		}
		var err error
		if b.Config, err = json.Marshal(cfg); err != nil {
			return nil, err
		}
	}
	b.ConfigDigest = digest.FromBytes(b.Config)

	m := ocispec.Manifest{Layers: b.Layers}
	m.SchemaVersion = 2
	switch img.Format {
	case OCI:
		m.MediaType, b.ConfigMediaType = ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig
	default:
		m.MediaType, b.ConfigMediaType = schema2.MediaTypeManifest, schema2.MediaTypeImageConfig
	}
	m.Config = ocispec.Descriptor{MediaType: b.ConfigMediaType, Digest: b.ConfigDigest, Size: int64(len(b.Config))}
	var err error
	if b.Manifest, err = json.MarshalIndent(m, "", "   "); err != nil {
		return nil, err
	}
	b.MediaType = m.MediaType
	b.Digest = digest.FromBytes(b.Manifest)
	return b, nil
}

func decompress(blob []byte) (raw []byte, compression string, err error) {
	switch {
	case bytes.HasPrefix(blob, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			return nil, "", err
		}
		raw, err = io.ReadAll(zr)
		return raw, "gzip", err
	case bytes.HasPrefix(blob, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(blob))
		if err != nil {
			return nil, "", err
		}
		defer zr.Close()
		raw, err = io.ReadAll(zr)
		return raw, "zstd", err
	default:
		return blob, "", nil
	}
}

func layerMediaType(f Format, compression string) string {
	switch {
	case compression == "zstd":
		return ocispec.MediaTypeImageLayerZstd // Docker uses the OCI type for zstd too
	case f == OCI && compression == "gzip":
		return ocispec.MediaTypeImageLayerGzip
	case f == OCI:
		return ocispec.MediaTypeImageLayer
	case compression == "gzip":
		return schema2.MediaTypeLayer
	default:
		return schema2.MediaTypeUncompressedLayer
	}
}

func (r *Registry) repository(ctx context.Context, repo string) (distribution.Repository, error) {
	named, err := reference.WithName(repo)
	if err != nil {
		return nil, err
	}
	return r.ns.Repository(ctx, named)
}

// PushBlob stores data as a blob of repo and returns its digest.
func (r *Registry) PushBlob(t testing.TB, repo string, data []byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	rp, err := r.repository(ctx, repo)
	if err != nil {
		t.Fatalf("testregistry: push blob to %s: %v", repo, err)
	}
	desc, err := rp.Blobs(ctx).Put(ctx, "application/octet-stream", data)
	if err != nil {
		t.Fatalf("testregistry: push blob to %s: %v", repo, err)
	}
	return desc.Digest
}

// Push stores img's layers, config and manifest in repo (e.g.
// "library/alpine"), tags the manifest with tag (unless tag is "") and
// returns the manifest's digest.
func (r *Registry) Push(t testing.TB, repo, tag string, img Image) digest.Digest {
	t.Helper()
	b, err := img.Build()
	if err != nil {
		t.Fatalf("testregistry: build image for %s:%s: %v", repo, tag, err)
	}
	for _, l := range img.Layers {
		r.PushBlob(t, repo, l)
	}
	r.PushBlob(t, repo, b.Config)
	return r.PushManifest(t, repo, tag, b.MediaType, b.Manifest)
}

// PushManifest stores a raw manifest (image manifest or index) of the given
// media type, whose referenced blobs or manifests are already in repo, tags
// it with tag (unless tag is "") and returns its digest.
func (r *Registry) PushManifest(t testing.TB, repo, tag, mediaType string, raw []byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	rp, err := r.repository(ctx, repo)
	if err != nil {
		t.Fatalf("testregistry: push manifest to %s: %v", repo, err)
	}
	m, _, err := distribution.UnmarshalManifest(mediaType, raw)
	if err != nil {
		t.Fatalf("testregistry: parse %s manifest: %v", mediaType, err)
	}
	ms, err := rp.Manifests(ctx)
	if err != nil {
		t.Fatalf("testregistry: push manifest to %s: %v", repo, err)
	}
	dgst, err := ms.Put(ctx, m)
	if err != nil {
		t.Fatalf("testregistry: push manifest to %s: %v", repo, err)
	}
	if want := digest.FromBytes(raw); dgst != want {
		t.Fatalf("testregistry: pushed manifest to %s has digest %s, want %s", repo, dgst, want)
	}
	if tag != "" {
		desc := distribution.Descriptor{MediaType: mediaType, Digest: dgst, Size: int64(len(raw))}
		if err := rp.Tags(ctx).Tag(ctx, tag, desc); err != nil {
			t.Fatalf("testregistry: tag %s:%s: %v", repo, tag, err)
		}
	}
	return dgst
}

// PushIndex stores a multi-platform index in repo over manifests already
// pushed there, keyed by platform ("linux/amd64", "linux/arm64/v8"), tags it
// and returns its digest. It is a Docker manifest list when every entry is a
// Docker manifest, an OCI index otherwise.
func (r *Registry) PushIndex(t testing.TB, repo, tag string, platforms map[string]digest.Digest) digest.Digest {
	t.Helper()
	ctx := context.Background()
	rp, err := r.repository(ctx, repo)
	if err != nil {
		t.Fatalf("testregistry: push index to %s: %v", repo, err)
	}
	ms, err := rp.Manifests(ctx)
	if err != nil {
		t.Fatalf("testregistry: push index to %s: %v", repo, err)
	}
	keys := make([]string, 0, len(platforms))
	for k := range platforms {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	idx := ocispec.Index{Manifests: []ocispec.Descriptor{}}
	idx.SchemaVersion = 2
	allDocker := true
	for _, k := range keys {
		dgst := platforms[k]
		m, err := ms.Get(ctx, dgst)
		if err != nil {
			t.Fatalf("testregistry: index %s:%s entry %s: %v", repo, tag, dgst, err)
		}
		mt, payload, err := m.Payload()
		if err != nil {
			t.Fatalf("testregistry: index %s:%s entry %s: %v", repo, tag, dgst, err)
		}
		allDocker = allDocker && mt == schema2.MediaTypeManifest
		parts := strings.Split(k, "/")
		if len(parts) < 2 {
			t.Fatalf("testregistry: platform %q: want os/arch[/variant]", k)
		}
		p := &ocispec.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) > 2 {
			p.Variant = parts[2]
		}
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: mt, Digest: dgst, Size: int64(len(payload)), Platform: p})
	}
	idx.MediaType = ocispec.MediaTypeImageIndex
	if allDocker && len(keys) > 0 {
		idx.MediaType = manifestlist.MediaTypeManifestList
	}
	raw, err := json.MarshalIndent(idx, "", "   ")
	if err != nil {
		t.Fatal(err)
	}
	return r.PushManifest(t, repo, tag, idx.MediaType, raw)
}

// Manifest returns the media type and bytes of repo's manifest ref (a tag or
// a digest), read from storage without touching any counter or fault.
func (r *Registry) Manifest(t testing.TB, repo, ref string) (mediaType string, raw []byte) {
	t.Helper()
	ctx := context.Background()
	rp, err := r.repository(ctx, repo)
	if err != nil {
		t.Fatalf("testregistry: %s: %v", repo, err)
	}
	dgst, err := digest.Parse(ref)
	if err != nil {
		desc, err := rp.Tags(ctx).Get(ctx, ref)
		if err != nil {
			t.Fatalf("testregistry: tag %s:%s: %v", repo, ref, err)
		}
		dgst = desc.Digest
	}
	ms, err := rp.Manifests(ctx)
	if err != nil {
		t.Fatalf("testregistry: %s: %v", repo, err)
	}
	m, err := ms.Get(ctx, dgst)
	if err != nil {
		t.Fatalf("testregistry: manifest %s@%s: %v", repo, dgst, err)
	}
	mediaType, raw, err = m.Payload()
	if err != nil {
		t.Fatalf("testregistry: manifest %s@%s: %v", repo, dgst, err)
	}
	return mediaType, raw
}
