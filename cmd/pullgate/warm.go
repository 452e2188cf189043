package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/gate"
)

// WarmConfig lists images the server keeps fetched and scanned: it asks
// itself for each of them at start-up and then every interval, so a big
// image never makes a client wait, a moved tag is scanned before anyone
// pulls it, and new rules rescan them ahead of need.
type WarmConfig struct {
	Images   []string `yaml:"images"`
	Interval Duration `yaml:"interval"`
	// Timeout bounds one image's warm-up (fetch and scan of every platform).
	Timeout Duration `yaml:"timeout"`
}

func (c WarmConfig) validate() error {
	var errs []error
	for _, img := range c.Images {
		if _, err := reference.ParseNormalizedNamed(img); err != nil {
			errs = append(errs, fmt.Errorf("warm: image %q: %w", img, err))
		}
	}
	if len(c.Images) > 0 && time.Duration(c.Interval) <= 0 {
		errs = append(errs, errors.New("warm: interval must be positive"))
	}
	return errors.Join(errs...)
}

// validatePlatforms checks "os/arch[/variant]" entries.
func validatePlatforms(ps []string) error {
	for _, p := range ps {
		if _, err := gate.ParsePlatform(p); err != nil {
			return err
		}
	}
	return nil
}

// warm is `pullgate warm`: ask a running pullgate to fetch and scan images.
func warm(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pullgate warm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", `pullgate's URL (default "http://127.0.0.1:5000"; env PULLGATE_SERVER)`)
	config := fs.String("config", "", "YAML config whose platforms to use (env PULLGATE_CONFIG)")
	var platforms listFlag
	fs.Var(&platforms, "platform", "os/arch[/variant] of an index to warm, repeatable (default: the config's platforms)")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long to wait for one image's scans")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: pullgate warm [--server URL] [--platform OS/ARCH]... IMAGE...\n\n"+
			"Asks a running pullgate to fetch and scan each image (every listed platform of a\n"+
			"multi-platform image) and waits for the verdicts. Exit 0: all clean; 1: something\n"+
			"was refused or failed; 2: usage.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	cfg := defaultConfig()
	if path := firstNonEmpty(*config, os.Getenv("PULLGATE_CONFIG")); path != "" {
		if err := cfg.loadFile(path); err != nil {
			fmt.Fprintln(stderr, "pullgate warm:", err)
			return 2
		}
	}
	if len(platforms) > 0 {
		cfg.Platforms = platforms
	}
	w, err := newWarmer(firstNonEmpty(*server, os.Getenv("PULLGATE_SERVER"), "http://127.0.0.1:5000"), cfg.Platforms, "pullgate-warm/"+version)
	if err != nil {
		fmt.Fprintln(stderr, "pullgate warm:", err)
		return 2
	}
	code := 0
	for _, img := range fs.Args() {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		results, err := w.warm(ctx, img)
		cancel()
		for _, r := range results {
			fmt.Fprintln(stdout, r)
			if r.answer.Refused() {
				code = 1
			}
		}
		if err != nil {
			fmt.Fprintf(stdout, "%s\t%s\t%v\n", img, answered(0, "").Word(), err)
			code = 1
		}
	}
	return code
}

// warmResult is one manifest's outcome, as the running server answered.
type warmResult struct {
	Image    string // as given
	Platform string // "" for a single-platform image
	Digest   string
	answer   gate.Decision // read from the HTTP answer: its Word is clean, blocked or error
}

func (r warmResult) String() string {
	platform := r.Platform
	if platform == "" {
		platform = "-"
	}
	s := r.Image + "\t" + platform + "\t" + r.Digest + "\t" + r.answer.Word()
	if r.answer.Message != "" {
		s += "\t" + r.answer.Message
	}
	return s
}

// warmer asks pullgate for manifests the way a client does, so the gate
// fetches and scans everything they reference.
type warmer struct {
	base      *url.URL
	platforms []string
	agent     string
	client    *http.Client
}

func newWarmer(server string, platforms []string, agent string) (*warmer, error) {
	u, err := url.Parse(strings.TrimSuffix(server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q is not an http(s) URL", server)
	}
	w := &warmer{base: u, agent: agent, client: &http.Client{}}
	if err := validatePlatforms(platforms); err != nil {
		return nil, err
	}
	w.platforms = platforms
	return w, nil
}

// warm fetches image's manifest through pullgate and, for an index, the
// manifest of every wanted platform, each held until its scans are done.
func (w *warmer) warm(ctx context.Context, image string) ([]warmResult, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", image, err)
	}
	named = reference.TagNameOnly(named)
	ref := ""
	if d, ok := named.(reference.Digested); ok {
		ref = d.Digest().String()
	} else if t, ok := named.(reference.Tagged); ok {
		ref = t.Tag()
	}
	registry, repo := reference.Domain(named), reference.Path(named)

	status, mt, body, msg, err := w.getManifest(ctx, registry, repo, ref)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return []warmResult{{Image: image, Digest: ref, answer: answered(status, msg)}}, nil
	}
	if !gate.IsIndex(mt) {
		return []warmResult{{Image: image, Digest: ref, answer: answered(status, "")}}, nil
	}
	idx, err := gate.ParseIndex(body)
	if err != nil {
		return nil, fmt.Errorf("index of %s: %w", image, err)
	}
	var out []warmResult
	for _, p := range w.platforms {
		m, ok := gate.PickPlatform(idx, p)
		if !ok || slices.ContainsFunc(out, func(r warmResult) bool { return r.Digest == m.Digest.String() }) {
			continue
		}
		status, _, _, msg, err := w.getManifest(ctx, registry, repo, m.Digest.String())
		if err != nil {
			status, msg = 0, err.Error()
		}
		out = append(out, warmResult{Image: image, Platform: p, Digest: m.Digest.String(), answer: answered(status, msg)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("index of %s lists none of the platforms asked for", image)
	}
	return out, nil
}

// answered reads the server's answer: 200 served, 403 a refusal by a
// decision (DENIED), anything else (or no answer, 0) an error.
func answered(status int, msg string) gate.Decision {
	switch status {
	case http.StatusOK:
		return gate.Decision{Kind: gate.Serve, Outcome: verdict.Allowed}
	case http.StatusForbidden:
		return gate.Decision{Kind: gate.Denied, Outcome: verdict.Blocked, Message: msg}
	}
	return gate.Decision{Kind: gate.Upstream, Outcome: verdict.UpstreamFailed, Message: msg}
}

// getManifest GETs one manifest from pullgate (the registry named by ?ns=,
// as containerd does), retrying "still scanning" answers (429) after their
// Retry-After until ctx ends. It returns the final status, with the
// message of an error answer.
func (w *warmer) getManifest(ctx context.Context, registry, repo, ref string) (int, string, []byte, string, error) {
	u := *w.base
	u.Path += "/v2/" + repo + "/manifests/" + ref
	u.RawQuery = url.Values{"ns": {registry}}.Encode()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return 0, "", nil, "", err
		}
		req.Header.Set("Accept", strings.Join(gate.ManifestTypes, ", "))
		req.Header.Set("User-Agent", w.agent)
		resp, err := w.client.Do(req)
		if err != nil {
			return 0, "", nil, "", err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		if err != nil {
			return 0, "", nil, "", err
		}
		if resp.StatusCode == http.StatusOK {
			mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
			return resp.StatusCode, strings.TrimSpace(mt), body, "", nil
		}
		msg := errorMessage(body)
		if resp.StatusCode != http.StatusTooManyRequests {
			return resp.StatusCode, "", nil, msg, nil
		}
		wait := 5 * time.Second
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			wait = time.Duration(secs) * time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return resp.StatusCode, "", nil, msg, fmt.Errorf("gave up waiting: %w (last answer: %s)", context.Cause(ctx), msg)
		case <-t.C:
		}
	}
}

// errorMessage takes the first OCI error message from a body.
func errorMessage(body []byte) string {
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
		return e.Errors[0].Message
	}
	return strings.TrimSpace(string(body))
}
