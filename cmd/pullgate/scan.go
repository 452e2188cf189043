package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/scanner"
)

// scan runs the gate's engine over local content: a `docker save` tarball
// (or its extracted folder), an OCI image layout, or a single layer. Exit
// code 0: every image would pass; 1: one would be refused; 2: the input
// could not be read.
func scan(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pullgate scan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rulePaths listFlag
	fs.Var(&rulePaths, "rules", "extra YARA rule file or folder, repeatable")
	workers := fs.Int("workers", 0, "scanner workers (default: CPU count)")
	asJSON := fs.Bool("json", false, "print a JSON report")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pullgate scan [--json] [--rules PATH] IMAGE.tar|OCI-LAYOUT-DIR|LAYER...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	sc, err := scanner.New(scanner.Options{Workers: *workers, RulePaths: rulePaths})
	if err != nil {
		fmt.Fprintln(stderr, "pullgate: rules:", err)
		return 2
	}
	defer sc.Close()

	var reports []scanReport
	for _, p := range fs.Args() {
		r, err := scanPath(context.Background(), sc, p)
		if err != nil {
			fmt.Fprintf(stderr, "pullgate: %s: %v\n", p, err)
			return 2
		}
		reports = append(reports, r...)
	}
	refused := false
	for _, r := range reports {
		if r.Decision != "clean" {
			refused = true
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(reports)
	} else {
		for _, r := range reports {
			printReport(stdout, r)
		}
	}
	if refused {
		return 1
	}
	return 0
}

// scanReport is what pullgate scan says about one image or layer.
type scanReport struct {
	Source   string       `json:"source"`
	Image    string       `json:"image,omitempty"`
	Decision string       `json:"decision"` // clean, blocked, error
	Blobs    []blobReport `json:"blobs"`
}

type blobReport struct {
	Kind     string            `json:"kind"` // config or layer
	Name     string            `json:"name"`
	Findings []scanner.Finding `json:"findings,omitempty"`
	Blocking int               `json:"blocking"`
	Error    string            `json:"error,omitempty"`
	Files    int64             `json:"files"`
	Bytes    int64             `json:"bytes"`
}

func printReport(w io.Writer, r scanReport) {
	name := r.Source
	if r.Image != "" {
		name += " (" + r.Image + ")"
	}
	fmt.Fprintf(w, "%s: %s\n", name, r.Decision)
	for _, b := range r.Blobs {
		if b.Error != "" {
			fmt.Fprintf(w, "  %s %s: could not be scanned: %s\n", b.Kind, b.Name, b.Error)
		}
		for _, f := range b.Findings {
			where := "file " + f.Path
			if p, ok := strings.CutPrefix(f.Path, "config:"); ok {
				where = p
			}
			fmt.Fprintf(w, "  %s %s, %s matched %s (%s) [%s, %s]\n", b.Kind, b.Name, where, f.Rule, f.Description, f.Category, f.Severity)
		}
	}
}

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

func scanPath(ctx context.Context, sc *scanner.Scanner, p string) ([]scanReport, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	var a archive
	if st.IsDir() {
		a = dirArchive(p)
	} else {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if ta, err := openTarArchive(f); err == nil && (ta.has("manifest.json") || ta.has("index.json")) {
			a = ta
		} else {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return nil, err
			}
			b := scanBlob(ctx, sc, "layer", filepath.Base(p), f)
			return []scanReport{{Source: p, Decision: decisionOf([]blobReport{b}), Blobs: []blobReport{b}}}, nil
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
			r.Blobs = append(r.Blobs, scanBlob(ctx, sc, kind, name, rc))
			rc.Close()
		}
		r.Decision = decisionOf(r.Blobs)
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
		var idx struct {
			MediaType string `json:"mediaType"`
			Manifests []struct {
				MediaType   string            `json:"mediaType"`
				Digest      digest.Digest     `json:"digest"`
				Annotations map[string]string `json:"annotations"`
			} `json:"manifests"`
			Config struct {
				Digest digest.Digest `json:"digest"`
			} `json:"config"`
			Layers []struct {
				Digest digest.Digest `json:"digest"`
			} `json:"layers"`
		}
		if err := readJSON(a, name, &idx); err != nil {
			return err
		}
		if idx.Config.Digest != "" {
			img := localImage{name: name, config: blobPath(idx.Config.Digest)}
			for _, l := range idx.Layers {
				img.layers = append(img.layers, blobPath(l.Digest))
			}
			out = append(out, img)
			return nil
		}
		for _, m := range idx.Manifests {
			if err := m.Digest.Validate(); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := walk(blobPath(m.Digest), depth+1); err != nil {
				return err
			}
			if ref := m.Annotations["org.opencontainers.image.ref.name"]; ref != "" && len(out) > 0 {
				out[len(out)-1].name = ref
			}
		}
		return nil
	}
	return out, walk("index.json", 0)
}

func blobPath(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

func readJSON(a archive, name string, v any) error {
	rc, err := a.open(name)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, 8<<20)).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func scanBlob(ctx context.Context, sc *scanner.Scanner, kind, name string, r io.Reader) blobReport {
	b := blobReport{Kind: kind, Name: name}
	var (
		res scanner.Result
		err error
	)
	if kind == "config" {
		var buf []byte
		buf, err = io.ReadAll(io.LimitReader(r, 8<<20))
		if err == nil {
			res, err = sc.ScanConfig(ctx, buf, scanner.Interactive)
		}
	} else {
		res, err = sc.ScanLayer(ctx, r, scanner.Interactive)
	}
	if err != nil {
		b.Error = err.Error()
		return b
	}
	b.Findings, b.Blocking, b.Files, b.Bytes = res.Findings, len(res.Blocking()), res.Files, res.Bytes
	return b
}

func decisionOf(blobs []blobReport) string {
	d := "clean"
	for _, b := range blobs {
		switch {
		case b.Blocking > 0:
			return "blocked"
		case b.Error != "":
			d = "error"
		}
	}
	return d
}
