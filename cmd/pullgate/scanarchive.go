package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/scanner"
)

// Local inputs of pullgate scan: a root filesystem folder, an image archive
// (docker save or an OCI layout, as a folder or a tar), or a layer blob.

// archive is a folder or an uncompressed tar whose members can be opened by name.
type archive interface {
	open(name string) (io.ReadCloser, error)
	has(name string) bool
}

type dirArchive string

func (d dirArchive) open(name string) (io.ReadCloser, error) {
	return os.Open(filepath.Join(string(d), filepath.FromSlash(path.Clean("/"+name))))
}

func (d dirArchive) has(name string) bool {
	_, err := os.Stat(filepath.Join(string(d), filepath.FromSlash(path.Clean("/"+name))))
	return err == nil
}

// tarArchive indexes a tar's members by offset, so each is read in place.
type tarArchive struct {
	f       *os.File
	members map[string]*io.SectionReader
}

func openTarArchive(f *os.File) (*tarArchive, error) {
	cr := &countingReader{r: f}
	tr := tar.NewReader(cr)
	a := &tarArchive{f: f, members: map[string]*io.SectionReader{}}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return a, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			a.members[path.Clean(h.Name)] = io.NewSectionReader(f, cr.n, h.Size)
		}
	}
}

func (a *tarArchive) open(name string) (io.ReadCloser, error) {
	s, ok := a.members[path.Clean(name)]
	if !ok {
		return nil, fmt.Errorf("%s: not in the archive", name)
	}
	return io.NopCloser(io.NewSectionReader(s, 0, s.Size())), nil
}

func (a *tarArchive) has(name string) bool { _, ok := a.members[path.Clean(name)]; return ok }

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// isImageArchive says whether a folder or tar holds a docker save or OCI
// layout rather than a root filesystem.
func isImageArchive(a archive) bool {
	return a.has("manifest.json") || a.has("index.json")
}

// path scans a local input: a root filesystem folder, an image archive
// (folder or tar), or a layer blob.
func (s *scanRun) path(ctx context.Context, p string) ([]scanReport, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	var a archive
	if st.IsDir() {
		if !isImageArchive(dirArchive(p)) {
			r := scanReport{Source: p, Image: "rootfs"}
			rc := scanner.DirLayer(p, false)
			b, err := s.blob(ctx, "layer", p, "", rc)
			rc.Close()
			if err != nil {
				return nil, err
			}
			r.Blobs = append(r.Blobs, b)
			s.decide(&r, s.facts(&r, r.Image, ""))
			return []scanReport{r}, nil
		}
		a = dirArchive(p)
	} else {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if ta, err := openTarArchive(f); err == nil && isImageArchive(ta) {
			a = ta
		} else {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return nil, err
			}
			r := scanReport{Source: p, Image: "layer"}
			b, err := s.blob(ctx, "layer", filepath.Base(p), "", f)
			if err != nil {
				return nil, err
			}
			r.Blobs = append(r.Blobs, b)
			s.decide(&r, s.facts(&r, r.Image, ""))
			return []scanReport{r}, nil
		}
	}
	images, err := imagesIn(a)
	if err != nil {
		return nil, err
	}
	var out []scanReport
	for _, img := range images {
		r := scanReport{Source: p, Image: img.name}
		for i, name := range append([]string{img.config}, img.layers...) {
			kind := "layer"
			if i == 0 {
				kind = "config"
			}
			rc, err := a.open(name)
			if err != nil {
				return nil, err
			}
			b, err := s.blob(ctx, kind, name, "", rc)
			rc.Close()
			if err != nil {
				return nil, err
			}
			r.Blobs = append(r.Blobs, b)
		}
		s.decide(&r, s.facts(&r, r.Image, ""))
		out = append(out, r)
	}
	return out, nil
}

// localImage names an image's config and layers inside an archive.
type localImage struct {
	name   string
	config string
	layers []string
}

// imagesIn reads `docker save`'s manifest.json, or else an OCI layout's
// index.json (following nested indexes).
func imagesIn(a archive) ([]localImage, error) {
	if a.has("manifest.json") {
		var entries []struct {
			Config   string
			RepoTags []string
			Layers   []string
		}
		if err := readJSON(a, "manifest.json", &entries); err != nil {
			return nil, err
		}
		var out []localImage
		for _, e := range entries {
			out = append(out, localImage{name: strings.Join(e.RepoTags, ","), config: e.Config, layers: e.Layers})
		}
		return out, nil
	}
	if !a.has("index.json") {
		return nil, errors.New("neither manifest.json (docker save) nor index.json (OCI layout) found")
	}
	var out []localImage
	var walk func(name string, depth int) error
	walk = func(name string, depth int) error {
		if depth > 4 {
			return errors.New("indexes nested too deep")
		}
		body, err := readAll(a, name)
		if err != nil {
			return err
		}
		if kind, err := gate.ManifestKind(body); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		} else if !gate.IsIndex(kind) {
			var m ocispec.Manifest
			if err := json.Unmarshal(body, &m); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			img := localImage{name: name, config: blobPath(m.Config.Digest)}
			for _, l := range m.Layers {
				img.layers = append(img.layers, blobPath(l.Digest))
			}
			out = append(out, img)
			return nil
		}
		idx, err := gate.ParseIndex(body)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for _, d := range idx.Manifests {
			if err := d.Digest.Validate(); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			n := len(out)
			if err := walk(blobPath(d.Digest), depth+1); err != nil {
				return err
			}
			if ref := d.Annotations[ocispec.AnnotationRefName]; ref != "" && len(out) > n {
				out[len(out)-1].name = ref
			}
		}
		return nil
	}
	return out, walk("index.json", 0)
}

func blobPath(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

func readJSON(a archive, name string, v any) error {
	body, err := readAll(a, name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// readAll reads a manifest or index from an archive, up to 8 MiB.
func readAll(a archive, name string) ([]byte, error) {
	rc, err := a.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 8<<20))
}

// maxConfigBytes caps an image config read into memory (as the gate does).
const maxConfigBytes = 8 << 20

// blob scans one config or layer. The bytes are hashed as they are read,
// so a blob on the known-bad list is refused whatever it contains (see
// facts), and a fetched blob whose digest (want, when known) does not match is an error.
//
// Content the scanner refuses (a limit, a corrupt stream) is reported in
// the blob; an error reading the input is returned.
func (s *scanRun) blob(ctx context.Context, kind, name string, want digest.Digest, r io.Reader) (blobReport, error) {
	b := blobReport{Kind: kind, Name: name}
	digester := digest.Canonical.Digester()
	src := io.TeeReader(r, digester.Hash())
	var (
		res scanner.Result
		err error
	)
	if kind == "config" {
		var buf []byte
		buf, err = io.ReadAll(io.LimitReader(src, maxConfigBytes+1))
		switch {
		case err != nil:
		case len(buf) > maxConfigBytes:
			err = fmt.Errorf("%w: image config over %d bytes", scanner.ErrLimit, maxConfigBytes)
		default:
			res, err = s.sc.ScanConfig(ctx, buf, scanner.Interactive)
		}
	} else if kind == "artifact" {
		res, err = s.sc.ScanArtifact(ctx, src, scanner.Interactive)
	} else {
		res, err = s.sc.ScanLayer(ctx, src, scanner.Interactive)
	}
	b.Findings, b.Files, b.Bytes = res.Findings, res.Files, res.Bytes
	if err != nil {
		if !errors.Is(err, scanner.ErrLimit) && !errors.Is(err, scanner.ErrCorrupt) {
			return b, fmt.Errorf("%s %s: %w", kind, name, err)
		}
		b.Error = err.Error()
		return b, nil
	}
	// A clean scan read the blob to its end, so the digest is whole.
	got := digester.Digest()
	b.Digest = got.String()
	if want != "" && got != want {
		b.Error = fmt.Sprintf("content does not match its digest %s (got %s)", want, got)
	}
	return b, nil
}
