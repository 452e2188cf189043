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

	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
)

// Exit codes of pullgate scan.
const (
	exitClean   = 0 // every image would be served (warnings allowed)
	exitRefused = 1 // an image would be refused: a blocking finding, or content that cannot be scanned
	exitError   = 2 // the input could not be read or fetched, or the command line is wrong
)

// scan runs the gate's engine over content outside the gate: a root
// filesystem folder, a `docker save` tarball (or its folder), an OCI image
// layout, a single layer blob, or an image reference fetched through the
// configured upstreams. Findings of all of an image's blobs are judged
// together by the default policy, as the gate does.
func scan(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pullgate scan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rulePaths, upstreams, upstreamAllow, actions listFlag
	fs.Var(&rulePaths, "rules", "extra YARA rule file or folder, repeatable")
	fs.Var(&upstreams, "upstream", "REGISTRY=URL for image references, repeatable (default docker.io=https://registry-1.docker.io; env PULLGATE_UPSTREAM, comma-separated)")
	fs.Var(&upstreamAllow, "upstream-allow", "REGISTRY=CIDR, repeatable: a non-public network that registry's redirects and token realm may lead to (env PULLGATE_UPSTREAM_ALLOW, comma-separated)")
	fs.Var(&actions, "action", "CATEGORY=block|warn|ignore, repeatable: overrides the policy for a category")
	workers := fs.Int("workers", 0, "scanner workers (default: CPU count)")
	asJSON := fs.Bool("json", false, "print a JSON report")
	knownBad := fs.String("known-bad", "", "file of sha256 digests (files or blobs) that always block")
	platform := fs.String("platform", "linux/amd64", "platform to pick from a multi-platform image reference")
	configPath := fs.String("config", "", "pullgate.yaml to take rules, known_bad, decision and upstreams (with credentials) from, as serve does (env PULLGATE_CONFIG)")
	insecure := fs.Bool("insecure", false, "allow plain http to non-loopback upstreams")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pullgate scan [flags] ROOTFS-DIR|IMAGE.tar|OCI-LAYOUT|LAYER|IMAGE-REF...")
		fmt.Fprintln(stderr, "exit code: 0 clean, 1 would be refused, 2 error")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitError
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitError
	}
	cfg, err := scanConfig(*configPath, upstreams, upstreamAllow, *insecure)
	if err != nil {
		fmt.Fprintln(stderr, "pullgate:", err)
		return exitError
	}
	policy := cfg.Decision.policy()
	for _, a := range actions {
		cat, act, ok := strings.Cut(a, "=")
		if !ok {
			fmt.Fprintf(stderr, "pullgate: --action %q is not CATEGORY=ACTION\n", a)
			return exitError
		}
		policy.Actions[cat] = scanner.Action(act)
	}
	if err := policy.Validate(); err != nil {
		fmt.Fprintln(stderr, "pullgate:", err)
		return exitError
	}
	opts := scanner.Options{Workers: *workers, RulePaths: append(append([]string{}, cfg.Rules...), rulePaths...)}
	if *knownBad == "" {
		*knownBad = cfg.KnownBad
	}
	if *knownBad != "" {
		kb, err := scanner.LoadKnownBad(*knownBad)
		if err != nil {
			fmt.Fprintln(stderr, "pullgate:", err)
			return exitError
		}
		opts.KnownBadFiles = kb
	}
	ups, err := newUpstreams(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "pullgate:", err)
		return exitError
	}
	sc, err := scanner.New(opts)
	if err != nil {
		fmt.Fprintln(stderr, "pullgate: rules:", err)
		return exitError
	}
	defer sc.Close()

	s := &scanRun{sc: sc, policy: policy, knownBad: opts.KnownBadFiles, platform: *platform, upstreams: ups}
	var reports []scanReport
	for _, p := range fs.Args() {
		var r []scanReport
		if _, statErr := os.Stat(p); statErr == nil || !looksLikeReference(p) {
			r, err = s.path(context.Background(), p)
		} else {
			r, err = s.reference(context.Background(), p)
		}
		if err != nil {
			fmt.Fprintf(stderr, "pullgate: %s: %v\n", p, err)
			return exitError
		}
		reports = append(reports, r...)
	}
	code := exitClean
	for _, r := range reports {
		if r.Decision != "clean" {
			code = exitRefused
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return exitError
		}
	} else {
		for _, r := range reports {
			printReport(stdout, r)
		}
	}
	return code
}

// scanRun is what every input of one pullgate scan shares.
type scanRun struct {
	sc        *scanner.Scanner
	policy    scanner.Policy
	knownBad  *scanner.KnownBad
	platform  string
	upstreams map[string]*upstream.Registry
}

// scanConfig is what scan shares with serve: the config file if any (rules,
// known_bad, decision, upstreams with their credentials), then
// PULLGATE_UPSTREAM, then --upstream flags, then the networks
// PULLGATE_UPSTREAM_ALLOW and --upstream-allow add.
func scanConfig(path string, upstreams, upstreamAllow []string, insecure bool) (Config, error) {
	cfg := defaultConfig()
	if path = firstNonEmpty(path, os.Getenv("PULLGATE_CONFIG")); path != "" {
		if err := cfg.loadFile(path); err != nil {
			return cfg, err
		}
	}
	if err := cfg.setUpstreams(splitNonEmpty(os.Getenv("PULLGATE_UPSTREAM"), ",")); err != nil {
		return cfg, fmt.Errorf("PULLGATE_UPSTREAM: %w", err)
	}
	if err := cfg.setUpstreams(upstreams); err != nil {
		return cfg, fmt.Errorf("--upstream: %w", err)
	}
	if err := cfg.allowUpstreamNetworks(splitNonEmpty(os.Getenv("PULLGATE_UPSTREAM_ALLOW"), ",")); err != nil {
		return cfg, fmt.Errorf("PULLGATE_UPSTREAM_ALLOW: %w", err)
	}
	if err := cfg.allowUpstreamNetworks(upstreamAllow); err != nil {
		return cfg, fmt.Errorf("--upstream-allow: %w", err)
	}
	for name, u := range cfg.Upstreams {
		u.Insecure = u.Insecure || insecure
		cfg.Upstreams[name] = u
	}
	if cfg.Decision.Actions == nil {
		cfg.Decision.Actions = map[string]string{}
	}
	return cfg, nil
}

// scanReport is what pullgate scan says about one image.
type scanReport struct {
	Source   string            `json:"source"`
	Image    string            `json:"image,omitempty"`
	Decision string            `json:"decision"` // clean, blocked, error
	Reason   string            `json:"reason,omitempty"`
	Blocking []scanner.Finding `json:"blocking,omitempty"`
	Warnings []scanner.Finding `json:"warnings,omitempty"`
	Blobs    []blobReport      `json:"blobs"`
}

type blobReport struct {
	Kind     string            `json:"kind"` // config or layer
	Name     string            `json:"name"`
	Digest   string            `json:"digest,omitempty"`
	Findings []scanner.Finding `json:"findings,omitempty"`
	Error    string            `json:"error,omitempty"`
	Files    int64             `json:"files"`
	Bytes    int64             `json:"bytes"`
}

// decide judges an image from all its blobs, as the gate does: a blob on
// the known-bad list or one that could not be scanned refuses it, else the
// policy decides over every finding together.
func (s *scanRun) decide(r *scanReport) {
	var all []scanner.Finding
	var failed []string
	for _, b := range r.Blobs {
		all = append(all, b.Findings...)
		if b.Error != "" {
			failed = append(failed, fmt.Sprintf("%s %s could not be scanned: %s", b.Kind, b.Name, b.Error))
		}
	}
	d := s.policy.Decide(all)
	r.Blocking, r.Warnings = d.Blocking, d.Warnings
	switch {
	case d.Blocked:
		r.Decision, r.Reason = "blocked", d.Reason
	case len(failed) > 0:
		r.Decision, r.Reason = "error", failed[0]
	default:
		r.Decision = "clean"
	}
}

func printReport(w io.Writer, r scanReport) {
	name := r.Source
	if r.Image != "" && r.Image != r.Source {
		name += " (" + r.Image + ")"
	}
	fmt.Fprintf(w, "%s: %s", name, r.Decision)
	if r.Reason != "" {
		fmt.Fprintf(w, ": %s", r.Reason)
	}
	fmt.Fprintln(w)
	for _, b := range r.Blobs {
		if b.Error != "" {
			fmt.Fprintf(w, "  %s %s: could not be scanned: %s\n", b.Kind, b.Name, b.Error)
		}
	}
	for _, group := range []struct {
		label string
		fs    []scanner.Finding
	}{{"BLOCK", r.Blocking}, {"warn ", r.Warnings}} {
		for _, f := range group.fs {
			where := "file " + f.Path
			if p, ok := strings.CutPrefix(f.Path, "config:"); ok {
				where = "config " + p
			}
			fmt.Fprintf(w, "  %s %s matched %s (%s) [%s, %s]\n", group.label, where, f.Rule, f.Description, f.Category, f.Severity)
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
			s.decide(&r)
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
			s.decide(&r)
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
		s.decide(&r)
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
		var m ociManifest
		if err := readJSON(a, name, &m); err != nil {
			return err
		}
		if m.Config.Digest != "" {
			img := localImage{name: name, config: blobPath(m.Config.Digest)}
			for _, l := range m.Layers {
				img.layers = append(img.layers, blobPath(l.Digest))
			}
			out = append(out, img)
			return nil
		}
		for _, d := range m.Manifests {
			if err := d.Digest.Validate(); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			n := len(out)
			if err := walk(blobPath(d.Digest), depth+1); err != nil {
				return err
			}
			if ref := d.Annotations["org.opencontainers.image.ref.name"]; ref != "" && len(out) > n {
				out[len(out)-1].name = ref
			}
		}
		return nil
	}
	return out, walk("index.json", 0)
}

// ociManifest is the part of an index or image manifest (OCI or Docker)
// that scan reads.
type ociManifest struct {
	MediaType string          `json:"mediaType"`
	Manifests []ociDescriptor `json:"manifests"`
	Config    ociDescriptor   `json:"config"`
	Layers    []ociDescriptor `json:"layers"`
}

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      digest.Digest     `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
	URLs        []string          `json:"urls"`
	Platform    *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	} `json:"platform"`
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

// maxConfigBytes caps an image config read into memory (as the gate does).
const maxConfigBytes = 8 << 20

// blob scans one config or layer. The bytes are hashed as they are read,
// so a blob on the known-bad list is refused whatever it contains, and a
// fetched blob whose digest (want, when known) does not match is an error.
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
	if s.knownBad.Has(got.String()) {
		note, _ := s.knownBad.Note(got.String())
		desc := "blob on the known-bad list"
		if note != "" {
			desc += ": " + note
		}
		b.Findings = append(b.Findings, scanner.Finding{Rule: "KnownBadBlob", Category: scanner.CategoryKnownBad, Severity: scanner.SeverityHigh, Description: desc, Path: "/"})
	}
	return b, nil
}
