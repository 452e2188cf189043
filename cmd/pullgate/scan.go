package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// Exit codes of pullgate scan.
const (
	exitClean   = 0 // every image would be served (warnings allowed)
	exitRefused = 1 // an image would be refused: a blocking finding, or content that cannot be scanned
	exitError   = 2 // the input could not be read or fetched, or the command line is wrong
)

// scanFlags are pullgate scan's command line.
type scanFlags struct {
	rulePaths, upstreams, upstreamAllow, actions listFlag
	workers                                      int
	asJSON, insecure                             bool
	knownBad, platform, config                   string
}

func (f *scanFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.rulePaths, "rules", "extra YARA rule file or folder, repeatable")
	fs.Var(&f.upstreams, "upstream", "REGISTRY=URL for image references, repeatable (default docker.io=https://registry-1.docker.io; env PULLGATE_UPSTREAM, comma-separated)")
	fs.Var(&f.upstreamAllow, "upstream-allow", "REGISTRY=CIDR, repeatable: a non-public network that registry's redirects and token realm may lead to (env PULLGATE_UPSTREAM_ALLOW, comma-separated)")
	fs.Var(&f.actions, "action", "CATEGORY=block|warn|ignore, repeatable: overrides the policy for a category")
	fs.IntVar(&f.workers, "workers", 0, "scanner workers (default: CPU count)")
	fs.BoolVar(&f.asJSON, "json", false, "print a JSON report")
	fs.StringVar(&f.knownBad, "known-bad", "", "file of sha256 digests (files or blobs) that always block")
	fs.StringVar(&f.platform, "platform", "linux/amd64", "platform to pick from a multi-platform image reference")
	fs.StringVar(&f.config, "config", "", "pullgate.yaml to take rules, known_bad, decision, policy and upstreams (with credentials) from, as serve does (env PULLGATE_CONFIG)")
	fs.BoolVar(&f.insecure, "insecure", false, "allow plain http to non-loopback upstreams")
}

// scan runs the gate's decision over content outside the gate: a root
// filesystem folder, a `docker save` tarball (or its folder), an OCI image
// layout, a single layer blob, or an image reference fetched through the
// configured upstreams. Each image is judged by gate.Decide, on the
// findings of all its blobs together, as a pull through the gate is.
func scan(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pullgate scan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f scanFlags
	f.register(fs)
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
	s, err := f.run()
	if err != nil {
		fmt.Fprintln(stderr, "pullgate:", err)
		return exitError
	}
	defer s.sc.Close()
	var reports []scanReport
	for _, p := range fs.Args() {
		r, err := s.input(context.Background(), p)
		if err != nil {
			fmt.Fprintf(stderr, "pullgate: %s: %v\n", p, err)
			return exitError
		}
		reports = append(reports, r...)
	}
	return writeReports(stdout, reports, f.asJSON)
}

// run builds what every input of one pullgate scan shares.
func (f *scanFlags) run() (*scanRun, error) {
	cfg, err := scanConfig(f.config, f.upstreams, f.upstreamAllow, f.insecure)
	if err != nil {
		return nil, err
	}
	policy := cfg.Decision.policy()
	for _, a := range f.actions {
		cat, act, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("--action %q is not CATEGORY=ACTION", a)
		}
		policy.Actions[cat] = scanner.Action(act)
	}
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	opts := scanner.Options{Workers: f.workers, RulePaths: append(append([]string{}, cfg.Rules...), f.rulePaths...)}
	if kb := firstNonEmpty(f.knownBad, cfg.KnownBad); kb != "" {
		if opts.KnownBadFiles, err = scanner.LoadKnownBad(kb); err != nil {
			return nil, err
		}
	}
	ups, err := newUpstreams(cfg)
	if err != nil {
		return nil, err
	}
	sc, err := scanner.New(opts)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return &scanRun{sc: sc, policy: policy, knownBad: opts.KnownBadFiles, platform: f.platform,
		upstreams: ups, repoPolicy: cfg.Policy, maxLayers: cfg.Gate.MaxLayers}, nil
}

func writeReports(stdout io.Writer, reports []scanReport, asJSON bool) int {
	code := exitClean
	for _, r := range reports {
		if r.refused {
			code = exitRefused
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return exitError
		}
		return code
	}
	for _, r := range reports {
		printReport(stdout, r)
	}
	return code
}

// scanRun is what every input of one pullgate scan shares.
type scanRun struct {
	sc         *scanner.Scanner
	policy     scanner.Policy
	knownBad   *scanner.KnownBad
	platform   string
	upstreams  map[string]*upstream.Registry
	repoPolicy map[string]gate.RepoPolicy
	maxLayers  int // layers an image manifest may have, as the gate allows
	// overrides are the operator's, when a store is at hand; nil for the
	// command line, which has none.
	overrides gate.OverrideLookup
}

// input scans one argument: a local path, else an image reference.
func (s *scanRun) input(ctx context.Context, p string) ([]scanReport, error) {
	if _, statErr := os.Stat(p); statErr == nil || !looksLikeReference(p) {
		return s.path(ctx, p)
	}
	return s.reference(ctx, p)
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
	Decision string            `json:"decision"` // gate.Decision.Word: clean, blocked, error
	Reason   string            `json:"reason,omitempty"`
	Blocking []verdict.Finding `json:"blocking,omitempty"`
	Warnings []verdict.Finding `json:"warnings,omitempty"`
	Blobs    []blobReport      `json:"blobs"`
	outcome  verdict.Outcome
	refused  bool
}

type blobReport struct {
	Kind     string            `json:"kind"` // config or layer
	Name     string            `json:"name"`
	Digest   string            `json:"digest,omitempty"`
	Findings []verdict.Finding `json:"findings,omitempty"`
	Error    string            `json:"error,omitempty"`
	Files    int64             `json:"files"`
	Bytes    int64             `json:"bytes"`
}

// facts are what gate.Decide judges an image on: each blob's scan as its
// verdict, the known-bad list, and the operator's overrides when there is
// a store to read them from.
func (s *scanRun) facts(r *scanReport, name string, dgst digest.Digest) gate.Facts {
	f := gate.Facts{Subject: gate.Image, Name: name, Digest: dgst}
	for i, b := range r.Blobs {
		c := storage.ContextLayer
		if b.Kind == "config" {
			c = storage.ContextConfig
		}
		// A blob that could not be read to its end has no digest: its
		// name says which it is.
		id := digest.Digest(firstNonEmpty(b.Digest, b.Name))
		v := storage.Verdict{Digest: id, Context: c, Status: storage.StatusClean, Bytes: b.Bytes, Files: b.Files}
		if b.Error != "" {
			v.Status, v.Reason = storage.StatusError, b.Error
		}
		for _, fd := range b.Findings {
			fd.Layer = id
			v.Findings = append(v.Findings, fd)
		}
		if i == 0 && c == storage.ContextConfig {
			f.Config = id
		}
		if b.Digest != "" && s.knownBad.Has(b.Digest) {
			f.KnownBad = append(f.KnownBad, id)
		}
		f.Blobs = append(f.Blobs, gate.BlobFact{Ref: gate.Ref{Digest: id, Size: b.Bytes, Context: c}, Verdict: v, State: gate.Judged})
	}
	if dgst != "" && s.knownBad.Has(dgst.String()) {
		f.KnownBad = append([]digest.Digest{dgst}, f.KnownBad...)
	}
	if s.overrides != nil && dgst != "" {
		switch o, err := s.overrides(dgst.String()); {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			f.OverrideErr = err
		default:
			f.Override = &o
		}
	}
	return f
}

// decide judges an image with the gate's one decision.
func (s *scanRun) decide(r *scanReport, f gate.Facts) {
	d := gate.Decide(s.policy, f)
	r.Decision, r.outcome, r.refused = d.Word(), d.Outcome, d.Refused()
	switch {
	case d.Refused():
		r.Reason = d.Message
		if d.Outcome == verdict.Blocked {
			r.Blocking = d.Findings
		}
	default:
		r.Warnings = d.Findings
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
		fs    []verdict.Finding
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
